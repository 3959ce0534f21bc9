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
import { checkStore, collectGarbage, loadArchive, openStore, saveArchive } from '../../src/store/index.js';
import { createReadStream } from 'node:fs';
import { tempDir } from '../helpers/tmp.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ITERATIONS = 20;

/** An image of three incompressible layers (~56 MB) saved as a docker archive. */
async function makeArchive(dir: string): Promise<string> {
  const store = await openStore(join(dir, 'src'));
  let config = createEmptyConfig({ os: 'linux', architecture: 'amd64' }, '2024-01-01T00:00:00Z');
  const layers: Descriptor[] = [];
  for (const mb of [32, 16, 8]) {
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

/** Spawns `tsbuild load`, kills it with SIGKILL after `killAfterMs` (if still running); resolves to how it ended. */
function loadAndKill(root: string, archive: string, killAfterMs: number | undefined): Promise<{ code: number | null; signal: string | null; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--root', root, 'load', '-i', archive], { cwd: REPO, stdio: 'ignore' });
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => p.kill('SIGKILL'), killAfterMs);
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      resolve({ code, signal, ms: Date.now() - started });
    });
  });
}

test('reliability: the store stays consistent and the load succeeds after SIGKILLing tsbuild load at random moments', async (t) => {
  t.timeout(240_000);
  const dir = await tempDir(t);
  const archive = await makeArchive(dir);
  const root = join(dir, 'root');
  // One uninterrupted run to learn how long a load takes (node + tsx startup included).
  const full = await loadAndKill(root, archive, undefined);
  t.is(full.code, 0);
  // Startup (node + tsx + module loading) takes most of a short run: aim the kills past it.
  const startup = await new Promise<number>((resolve) => {
    const started = Date.now();
    spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--version'], { cwd: REPO, stdio: 'ignore' }).on('exit', () => resolve(Date.now() - started));
  });
  let midLoad = 0;
  const store = await openStore(root);
  let killedMidway = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    await store.refs.remove(() => true);
    await collectGarbage(store);
    const killAt = Math.floor(i % 4 === 0 ? Math.random() * full.ms : startup * 0.8 + Math.random() * Math.max(50, full.ms - startup * 0.8));
    const r = await loadAndKill(root, archive, killAt);
    if (r.signal === 'SIGKILL') killedMidway++;
    const report = await checkStore(store);
    t.deepEqual(report.problems, [], `iteration ${i}, killed after ${killAt} ms`);
    if (report.unreferenced > 0 || report.tmpLeftovers > 0) midLoad++;
    const names = (await store.refs.list()).map((e) => e.name);
    t.true(names.length === 0 || (names.length === 1 && names[0] === 'docker.io/library/big:1'), `iteration ${i}: ${names.join(',')}`);
    // The same load now succeeds (breaking a stale lock the killed process may have left).
    const res = await loadArchive(store, createReadStream(archive), archive);
    t.deepEqual(res.images.map((x) => x.names), [['docker.io/library/big:1']]);
    const after = await checkStore(store);
    t.deepEqual(after.problems, []);
    t.is(after.references, 1);
  }
  t.log(`${killedMidway}/${ITERATIONS} loads were killed before finishing, ${midLoad} with blobs written but not yet named; a full load took ${full.ms} ms, startup ${startup} ms`);
  t.true(killedMidway >= ITERATIONS / 2);
  t.true(midLoad >= 3, 'too few kills landed while blobs were being written');
  await collectGarbage(store);
  t.deepEqual(await readdir(store.paths.tmp), []);
});
