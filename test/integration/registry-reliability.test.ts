import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { MediaType, parseReference, type Descriptor, type Digest } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { compressGzip, packLayer } from '../../src/layer/index.js';
import { HttpRegistryClient, pullImage } from '../../src/registry/index.js';
import { chainIdOfStack, openSnapshotter } from '../../src/snapshot/index.js';
import { checkStore, openStore } from '../../src/store/index.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ITERATIONS = 10;
const missing = await registryMissing();

/** A store holding `big:1`: three gzip tar layers of incompressible files (24 MiB), so that a pull unpacks them. */
async function makeBigImage(root: string): Promise<Digest[]> {
  const store = await openStore(root);
  let config = createEmptyConfig({ os: 'linux', architecture: 'amd64' }, '2024-01-01T00:00:00Z');
  const layers: Descriptor[] = [];
  const diffIds: Digest[] = [];
  for (const mb of [12, 8, 4]) {
    const dir = join(root, `layer-${mb}`);
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < mb; i++) await writeFile(join(dir, `f${i}`), randomBytes(1 << 20));
    const packed = packLayer(dir, { mode: 'tree', sourceDateEpoch: 0 });
    const info = await store.blobs.put(compressGzip(packed.stream, { level: 1 }));
    const { diffId } = await packed.done;
    await rm(dir, { recursive: true });
    layers.push({ mediaType: MediaType.ociLayerGzip, digest: info.digest, size: info.size });
    diffIds.push(diffId);
    config = addLayer(config, diffId);
  }
  const c = await store.blobs.putBytes(serializeDocument(config));
  const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, layers)));
  await store.refs.set('docker.io/library/big:1', { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size });
  return diffIds;
}

/** Every committed snapshot of the store sits on a committed parent and the tmp dirs of snapshots are private (never listed). */
async function checkSnapshots(t: ExecutionContext, root: string): Promise<string[]> {
  const store = await openStore(root);
  const { snapshotter } = await openSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp });
  const list = await snapshotter.list();
  const committed = new Set(list.filter((s) => s.kind === 'committed').map((s) => s.name));
  for (const s of list) if (s.parent !== undefined) t.true(committed.has(s.parent), `${s.name} has no parent ${s.parent}`);
  return [...committed];
}

/** Runs the CLI as a process, SIGKILLed after `killAfterMs` when given. */
function runAndKill(args: readonly string[], killAfterMs: number | undefined): Promise<{ code: number | null; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: REPO, stdio: 'ignore', env: { ...process.env, DOCKER_CONFIG: '/nonexistent' } });
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => p.kill('SIGKILL'), killAfterMs);
    p.on('error', reject);
    p.on('exit', (code) => {
      if (timer !== undefined) clearTimeout(timer);
      resolve({ code, ms: Date.now() - started });
    });
  });
}

async function killLoop(t: ExecutionContext, args: readonly string[], check: () => Promise<void>): Promise<void> {
  const full = await runAndKill(args, undefined);
  t.is(full.code, 0);
  for (let i = 0; i < ITERATIONS; i++) {
    await check();
    await runAndKill(args, Math.floor(Math.random() * full.ms));
  }
  await check();
  t.is((await runAndKill(args, undefined)).code, 0);
  await check();
}

testIf(missing, 'reliability: the store stays consistent and pull completes after SIGKILLing tsbuild pull at random moments', async (t) => {
  t.timeout(180_000);
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const diffIds = await makeBigImage(join(dir, 'src'));
  const ref = `${reg.host}/rel/big:1`;
  t.is((await runAndKill(['--root', join(dir, 'src'), 'push', 'big:1', ref], undefined)).code, 0);
  const root = join(dir, 'dst');
  await killLoop(t, ['--root', root, 'pull', ref], async () => {
    const report = await checkStore(await openStore(root));
    t.deepEqual(report.problems, []);
    await checkSnapshots(t, root);
  });
  const store = await openStore(root);
  t.truthy(await store.refs.get(ref));
  // The pull that completed unpacked every layer.
  t.deepEqual((await checkSnapshots(t, root)).sort(), diffIds.map((_, i) => chainIdOfStack(diffIds.slice(0, i + 1)) as string).sort());
});

testIf(missing, 'reliability: the registry holds only intact blobs and push completes after SIGKILLing tsbuild push at random moments', async (t) => {
  t.timeout(180_000);
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const root = join(dir, 'src');
  await makeBigImage(root);
  let n = 0;
  await killLoop(t, ['--root', root, 'push', 'big:1', `${reg.host}/rel/push:1`], async () => {
    // Whatever the registry has must verify: pulling re-hashes every blob.
    const client = new HttpRegistryClient();
    try {
      const check = await openStore(join(dir, `check-${n++}`));
      await pullImage(client, check, parseReference(`${reg.host}/rel/push:1`), { platform: { os: 'linux', architecture: 'amd64' } }).catch((err: { code?: string }) => {
        if (err.code !== 'REG_MANIFEST_UNKNOWN') throw err;
      });
      t.deepEqual((await checkStore(check)).problems, []);
    } finally {
      await client.close();
    }
  });
});
