import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { isTsbuildError, sha256Of } from '../../src/core/index.js';
import { collectGarbage, openStore } from '../../src/store/index.js';
import { chainIdOf, type SnapshotterKind } from '../../src/snapshot/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { makeDirs, makeSnapshotter, overlayMissing, packDir, type TestLayer } from './helpers.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const overlayReason = await overlayMissing();

async function makeLayer(dir: string, files: number, size = 16): Promise<TestLayer> {
  mkdirSync(join(dir, 'data'), { recursive: true });
  for (let i = 0; i < files; i++) writeFileSync(join(dir, 'data', `f${i}`), Buffer.alloc(size, i % 251));
  return packDir(dir, 'tree');
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function spawnChild(args: readonly string[]) {
  return spawn(process.execPath, ['--import=tsx', CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

for (const kind of ['overlay', 'naive'] as const satisfies readonly SnapshotterKind[]) {
  const reason = kind === 'overlay' ? overlayReason : undefined;

  testIf(reason, `${kind} snapshotter: unpack is idempotent and does not open the tar when the snapshot exists`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const layer = await makeLayer(await tempDir(t), 3);
    const first = await s.unpack(undefined, layer.diffId, () => Readable.from([layer.tar]));
    t.is(first.name, layer.diffId); // the chain ID of a base layer is its diffID
    t.is(first.kind, 'committed');
    const second = await s.unpack(undefined, layer.diffId, () => {
      throw new Error('must not be opened');
    });
    t.deepEqual(second, first);
    t.deepEqual((await s.list()).map((i) => i.name), [layer.diffId]);
    t.deepEqual(readdirSync(dirs.tmp), []);
  });

  testIf(reason, `${kind} snapshotter: unpack fails and publishes nothing when the tar does not match the diffID`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const layer = await makeLayer(await tempDir(t), 2);
    const wrong = sha256Of('something else');
    const err = await t.throwsAsync(s.unpack(undefined, wrong, () => Readable.from([layer.tar])));
    t.true(isTsbuildError(err, 'SNAPSHOT_DIGEST_MISMATCH'));
    t.is(await s.stat(wrong), undefined);
    t.deepEqual(readdirSync(dirs.tmp), []);
  });

  testIf(reason, `${kind} snapshotter: an interrupted unpack leaves nothing visible and can be retried when the stream fails`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const layer = await makeLayer(await tempDir(t), 50, 4096);
    const broken = (): Readable => {
      const p = new PassThrough();
      p.write(layer.tar.subarray(0, 100_000));
      setImmediate(() => p.destroy(new Error('connection reset')));
      return p;
    };
    await t.throwsAsync(s.unpack(undefined, layer.diffId, broken));
    t.is(await s.stat(layer.diffId), undefined);
    t.deepEqual(await s.list(), []);
    t.deepEqual(readdirSync(dirs.tmp), []);
    const info = await s.unpack(undefined, layer.diffId, () => Readable.from([layer.tar]));
    t.is(info.name, layer.diffId);
  });

  testIf(reason, `${kind} snapshotter: concurrent unpacks of one layer give one snapshot when started together`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const other = makeSnapshotter(kind, dirs); // another instance, as in another build
    const layer = await makeLayer(await tempDir(t), 20);
    const results = await Promise.all([
      s.unpack(undefined, layer.diffId, () => Readable.from([layer.tar])),
      other.unpack(undefined, layer.diffId, () => Readable.from([layer.tar])),
      s.unpack(undefined, layer.diffId, () => Readable.from([layer.tar])),
    ]);
    t.true(results.every((r) => r.name === layer.diffId));
    t.deepEqual((await s.list()).map((i) => i.name), [layer.diffId]);
    t.deepEqual(readdirSync(dirs.tmp), []);
  });

  testIf(reason, `${kind} snapshotter: a parent in use cannot be removed and removal of a leaf is atomic when removing`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const work = await tempDir(t);
    const base = await makeLayer(join(work, 'a'), 1);
    const top = await makeLayer(join(work, 'b'), 2);
    await s.unpack(undefined, base.diffId, () => Readable.from([base.tar]));
    const child = await s.unpack(base.diffId, top.diffId, () => Readable.from([top.tar]));
    t.is(child.name, chainIdOf(base.diffId, top.diffId));
    t.is(child.parent, base.diffId);
    const err = await t.throwsAsync(s.remove(base.diffId));
    t.true(isTsbuildError(err, 'SNAPSHOT_IN_USE'));
    await s.remove(child.name);
    await s.remove(base.diffId);
    t.deepEqual(await s.list(), []);
    await s.remove(base.diffId); // absent: no-op
  });

  testIf(reason, `${kind} snapshotter: removeStale removes active snapshots of dead processes only when called`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    await s.prepare('mine');
    const { stdout } = await run(process.execPath, ['--import=tsx', CHILD, 'prepare', dirs.snapshots, dirs.tmp, kind, 'orphan']);
    t.is(stdout, 'prepared\n');
    t.deepEqual((await s.list()).map((i) => i.name).sort(), ['mine', 'orphan']);
    t.deepEqual(await s.removeStale(), ['orphan']);
    t.deepEqual((await s.list()).map((i) => i.name), ['mine']);
    const again = await t.throwsAsync(s.prepare('mine'));
    t.true(isTsbuildError(again, 'SNAPSHOT_EXISTS'));
  });

  testIf(reason, `${kind} snapshotter: removeStale keeps a persistent active snapshot when its creator is gone`, async (t) => {
    // A container's writable layer outlives the CLI that created it (run -d); only rm removes it.
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    await run(process.execPath, ['--import=tsx', CHILD, 'prepare', dirs.snapshots, dirs.tmp, kind, 'ctr-kept', 'persistent']);
    await run(process.execPath, ['--import=tsx', CHILD, 'prepare', dirs.snapshots, dirs.tmp, kind, 'build-step']);
    t.deepEqual(await s.removeStale(), ['build-step']);
    t.deepEqual((await s.list()).map((i) => i.name), ['ctr-kept']);
    t.is((await s.list())[0]?.pid, undefined);
  });
}

testIf(overlayReason, 'overlay snapshotter: two processes unpacking one layer at once agree on one snapshot when racing', async (t) => {
  const dirs = await makeDirs(t);
  const work = await tempDir(t);
  const layer = await makeLayer(join(work, 'l'), 200, 2048);
  const tarFile = join(work, 'layer.tar');
  writeFileSync(tarFile, layer.tar);
  const outputs = await Promise.all([1, 2].map(() => run(process.execPath, ['--import=tsx', CHILD, 'unpack', dirs.snapshots, dirs.tmp, 'overlay', tarFile, layer.diffId, '20'])));
  const infos = outputs.map((o) => JSON.parse(o.stdout) as { name: string });
  t.deepEqual(infos.map((i) => i.name), [layer.diffId, layer.diffId]);
  t.deepEqual(readdirSync(join(dirs.snapshots, 'overlay')).filter((n) => /^[0-9a-f]{64}$/.test(n)), [layer.diffId.slice(7)]);
  t.deepEqual(readdirSync(dirs.tmp), []);
});

testIf(overlayReason, 'overlay snapshotter: a process killed mid-unpack leaves garbage only in tmp/ when SIGKILLed', async (t) => {
  const root = await tempDir(t);
  const store = await openStore(join(root, 'store'));
  const dirs = { snapshots: store.paths.snapshots, tmp: store.paths.tmp };
  const layer = await makeLayer(join(root, 'l'), 400, 4096);
  const tarFile = join(root, 'layer.tar');
  writeFileSync(tarFile, layer.tar);
  const child = spawnChild(['unpack', dirs.snapshots, dirs.tmp, 'overlay', tarFile, layer.diffId, '50']);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Wait until the child is writing files into its tmp directory, then kill it.
  const mine = `snap-${child.pid}-`;
  for (let i = 0; ; i++) {
    const dir = readdirSync(dirs.tmp).find((n) => n.startsWith(mine));
    const written = dir === undefined ? [] : readdirSafe(join(dirs.tmp, dir, 'fs', 'data'));
    if (written.length > 5) break;
    if (i > 600) throw new Error('the child never started unpacking');
    await sleep(20);
  }
  child.kill('SIGKILL');
  await exited;
  const s = makeSnapshotter('overlay', dirs);
  t.is(await s.stat(layer.diffId), undefined);
  t.deepEqual(await s.list(), []);
  t.true(readdirSync(dirs.tmp).some((n) => n.startsWith(mine)));
  const gc = await collectGarbage(store);
  t.true(gc.tmpEntries >= 1);
  t.false(readdirSync(dirs.tmp).some((n) => n.startsWith(mine)));
  // The dead process's lock is broken and the unpack succeeds.
  const info = await s.unpack(undefined, layer.diffId, () => Readable.from([layer.tar]));
  t.is(info.name, layer.diffId);
});

