import type { ExecutionContext } from 'ava';
import { lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Digest } from '../../src/core/index.js';
import { mountSnapshot, unmountSnapshot, type SnapshotDirs, type Snapshotter, type SnapshotterKind } from '../../src/snapshot/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { makeDirs, makeSnapshotter, overlayMissing, packDir } from './helpers.js';

const overlayReason = await overlayMissing();

/** A committed base snapshot holding /etc/hostname. */
async function base(t: ExecutionContext, s: Snapshotter): Promise<Digest> {
  const dir = join(await tempDir(t), 'base');
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'hostname'), 'base\n');
  const layer = await packDir(dir, 'tree');
  return (await s.unpack(undefined, layer.diffId, () => Readable.from([layer.tar]))).name as Digest;
}

/** Writes /f in the active snapshot `key` the way a RUN does: overlay through a `volatile` mount (the kernel fills work/), naive in its copy. */
async function writeF(dirs: SnapshotDirs, s: Snapshotter, key: string): Promise<void> {
  const m = (await s.open(key)).mounts();
  if (m.type === 'bind') {
    writeFileSync(join(m.source, 'f'), 'f\n');
    return;
  }
  const target = join(dirs.tmp, '..', `mnt-${key}`);
  mkdirSync(target);
  await mountSnapshot({ ...m, options: [...m.options, 'volatile'] }, target);
  try {
    writeFileSync(join(target, 'f'), 'f\n');
  } finally {
    await unmountSnapshot(target);
  }
}

function ino(path: string): number {
  return lstatSync(path).ino;
}

for (const kind of ['overlay', 'naive'] as const satisfies readonly SnapshotterKind[]) {
  testIf(kind === 'overlay' ? overlayReason : undefined, `${kind} snapshotter: commit turns the active directory itself into the committed one, its scratch removed by settle()`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const parent = await base(t, s);
    await s.prepare('run-1', parent);
    await writeF(dirs, s, 'run-1');
    const activeDir = join(dirs.snapshots, kind, 'active', 'run-1');
    const before = { dir: ino(activeDir), content: ino(join(activeDir, kind === 'overlay' ? 'upper' : 'fs')), meta: ino(join(activeDir, 'meta.json')) };
    const diff = await s.diff('run-1');
    const layer = await packDir(diff.dir, 'changeset');
    // The solver's order (commitActiveSnapshot): commit, then release the diff.
    const info = await s.commit('run-1', layer.diffId);
    await diff.release();
    const committed = join(dirs.snapshots, kind, info.name.slice('sha256:'.length));
    // No new directory or metadata file: the same inodes, renamed (one mkdir and one file less per step).
    t.deepEqual({ dir: ino(committed), content: ino(join(committed, 'fs')), meta: ino(join(committed, 'meta.json')) }, before);
    t.deepEqual(readdirSync(committed).sort(), ['fs', 'meta.json'], 'the scratch entries (overlay work/, naive record and diff/) left the snapshot');
    t.is(readFileSync(join(committed, 'fs', 'f'), 'utf8'), 'f\n');
    t.like(JSON.parse(readFileSync(join(committed, 'meta.json'), 'utf8')) as object, { kind: 'committed', name: info.name, parent, diffId: layer.diffId });
    t.deepEqual(readdirSync(join(dirs.snapshots, kind, 'active')), []);
    await s.settle();
    t.deepEqual(readdirSync(dirs.tmp), [], 'settle() waited for the background removals');
    // A second step making the same layer finds it committed: its active snapshot goes, the first one stays.
    await s.prepare('run-2', parent);
    await writeF(dirs, s, 'run-2');
    t.is((await s.commit('run-2', layer.diffId)).name, info.name);
    t.is(ino(committed), before.dir);
    await s.settle();
    t.deepEqual(readdirSync(join(dirs.snapshots, kind, 'active')), []);
    t.deepEqual(readdirSync(dirs.tmp), []);
    t.is((await s.stat(info.name))?.kind, 'committed');
  });
}
