import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { MediaType, type Descriptor } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { checkStore, collectGarbage, openStore, saveArchive } from '../../src/store/index.js';
import { cli } from '../cli/run-cli.js';
import { tempDir } from '../helpers/tmp.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ITERATIONS = 20;

/** An image of three incompressible layers (~30 MB) saved as a docker archive. */
async function makeArchive(dir: string): Promise<string> {
  const store = await openStore(join(dir, 'src'));
  let config = createEmptyConfig({ os: 'linux', architecture: 'amd64' }, '2024-01-01T00:00:00Z');
  const layers: Descriptor[] = [];
  for (const mb of [16, 10, 4]) {
    // Random bytes are not a valid tar, but the store does not look inside layers.
    const chunks = Array.from({ length: mb }, () => randomBytes(1 << 20));
    const info = await store.blobs.put(Readable.from(chunks));
    layers.push({ mediaType: MediaType.ociLayer, digest: info.digest, size: info.size });
    config = addLayer(config, info.digest, { created_by: `layer ${mb}` });
  }
  const c = await store.blobs.putBytes(serializeDocument(config));
  const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, layers)));
  const descriptor = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
  const file = join(dir, 'big.tar');
  await saveArchive(store, [{ descriptor, names: ['docker.io/library/big:1'] }], createWriteStream(file), { format: 'docker' });
  return file;
}

/** When to kill: a delay after spawning, or after the load's lease file appears in tmp/ (it is writing blobs then). */
type KillPlan = { readonly afterSpawnMs: number } | { readonly afterLeaseMs: number } | undefined;

/**
 * Spawns `tsbuild load` and SIGKILLs it per `plan` (if still running). Resolves to how it ended
 * and how long after its lease appeared it exited (undefined when no lease was seen).
 */
function loadAndKill(root: string, archive: string, plan: KillPlan): Promise<{ code: number | null; signal: string | null; loadMs: number | undefined }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--root', root, 'load', '-i', archive], { cwd: REPO, stdio: 'ignore' });
    let leaseAt: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    if (plan !== undefined && 'afterSpawnMs' in plan) timer = setTimeout(() => p.kill('SIGKILL'), plan.afterSpawnMs);
    const poll = setInterval(() => {
      if (leaseAt !== undefined) return;
      readdir(join(root, 'tmp')).then((names) => {
        if (leaseAt !== undefined || !names.some((n) => n.startsWith(`lease-${p.pid}-`))) return;
        leaseAt = Date.now();
        if (plan !== undefined && 'afterLeaseMs' in plan) timer = setTimeout(() => p.kill('SIGKILL'), plan.afterLeaseMs);
      }, () => undefined);
    }, 3);
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearInterval(poll);
      if (timer !== undefined) clearTimeout(timer);
      resolve({ code, signal, loadMs: leaseAt === undefined ? undefined : Date.now() - leaseAt });
    });
  });
}

test('reliability: the store stays consistent and the load succeeds after SIGKILLing tsbuild load at random moments', async (t) => {
  t.timeout(240_000);
  const dir = await tempDir(t);
  const archive = await makeArchive(dir);
  const root = join(dir, 'root');
  // One uninterrupted run to learn how long the load itself takes (from its lease to its exit).
  const full = await loadAndKill(root, archive, undefined);
  t.is(full.code, 0);
  t.not(full.loadMs, undefined, 'the load\'s lease file was never seen');
  const loadMs = full.loadMs ?? 500;
  const store = await openStore(root);
  let killedMidway = 0;
  let midLoad = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    await store.refs.remove(() => true);
    await collectGarbage(store);
    // Mostly while blobs are being written; every fourth at any moment from the spawn on.
    const plan: KillPlan = i % 4 === 3 ? { afterSpawnMs: Math.floor(Math.random() * 3000) } : { afterLeaseMs: Math.floor(Math.random() * loadMs) };
    const r = await loadAndKill(root, archive, plan);
    if (r.signal === 'SIGKILL') killedMidway++;
    const killAt = JSON.stringify(plan);
    const fsck = await cli(['--root', root, 'fsck', '--json']);
    t.is(fsck.code, 0, `iteration ${i}, kill ${killAt}: ${fsck.stdout}`);
    const report = JSON.parse(fsck.stdout) as { consistent: boolean; unreferenced: number; tmpLeftovers: number };
    t.true(report.consistent);
    if (report.unreferenced > 0 || report.tmpLeftovers > 0) midLoad++;
    const names = (await store.refs.list()).map((e) => e.name);
    t.true(names.length === 0 || (names.length === 1 && names[0] === 'docker.io/library/big:1'), `iteration ${i}: ${names.join(',')}`);
    // The same load now succeeds (breaking a stale lock the killed process may have left).
    const res = await cli(['--root', root, 'load', '-i', archive]);
    t.is(res.code, 0, res.stderr);
    t.is(res.stdout, 'Loaded image: big:1\n');
    const after = await checkStore(store);
    t.deepEqual(after.problems, []);
    t.is(after.references, 1);
  }
  t.log(`${killedMidway}/${ITERATIONS} loads were killed before finishing, ${midLoad} with blobs written but not yet named; a full load took ${loadMs} ms after startup`);
  t.true(killedMidway >= ITERATIONS / 2);
  t.true(midLoad >= 3, 'too few kills landed while blobs were being written');
  await collectGarbage(store);
  t.deepEqual(await readdir(store.paths.tmp), []);
});
