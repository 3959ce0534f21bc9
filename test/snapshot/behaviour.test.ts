import test, { type ExecutionContext } from 'ava';
import { chmodSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Digest } from '../../src/core/index.js';
import { makeNode } from '../../src/sys/index.js';
import type { Snapshotter, SnapshotterKind } from '../../src/snapshot/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { describeDir, describeTar, makeDirs, makeSnapshotter, openRoot, overlayMissing, packDir, type TestLayer } from './helpers.js';

/** The base image: two layers, the second deleting a file of the first and adding one. */
async function makeBaseLayers(t: ExecutionContext): Promise<[TestLayer, TestLayer]> {
  const work = await tempDir(t);
  const l1 = join(work, 'l1');
  for (const d of ['etc', 'bin', 'd/sub', 'rd']) mkdirSync(join(l1, d), { recursive: true });
  writeFileSync(join(l1, 'etc/a'), 'alpha');
  writeFileSync(join(l1, 'etc/b'), 'beta');
  writeFileSync(join(l1, 'etc/keep'), 'keep');
  writeFileSync(join(l1, 'bin/busybox'), 'binary', { mode: 0o755 });
  symlinkSync('busybox', join(l1, 'bin/sh'));
  writeFileSync(join(l1, 'd/x'), 'x');
  writeFileSync(join(l1, 'd/y'), 'y');
  writeFileSync(join(l1, 'd/sub/z'), 'z');
  writeFileSync(join(l1, 'rep'), 'rep');
  writeFileSync(join(l1, 'rd/inner'), 'inner');
  writeFileSync(join(l1, 'h1'), 'hard');
  linkSync(join(l1, 'h1'), join(l1, 'h2'));
  writeFileSync(join(l1, 'mode.txt'), 'mode');
  mkdirSync(join(l1, 'usr/lib'), { recursive: true });
  writeFileSync(join(l1, 'usr/lib/libc.so'), 'libc');
  symlinkSync('usr/lib', join(l1, 'lib'));
  symlinkSync('../../../../../etc', join(l1, 'escape'));
  const l2 = join(work, 'l2');
  mkdirSync(join(l2, 'etc'), { recursive: true });
  makeNode(join(l2, 'etc/b'), 'char', 0, 0, 0);
  writeFileSync(join(l2, 'etc/c'), 'gamma');
  return [await packDir(l1, 'tree'), await packDir(l2, 'changeset')];
}

interface Case {
  readonly title: string;
  readonly op: (root: string) => void;
  /** The diff as `describeTar` prints it. */
  readonly expect: readonly string[];
}


const CASES: readonly Case[] = [
  { title: 'a new file is in the diff when added', op: (r) => writeFileSync(join(r, 'new.txt'), 'new'), expect: ['new.txt file 644 11507a0e'] },
  {
    title: 'a modified lower file is in the diff with its directory when rewritten',
    op: (r) => writeFileSync(join(r, 'etc/a'), 'alpha2'),
    expect: ['etc/ directory 755', 'etc/a file 644 0b87d006'],
  },
  { title: 'a deleted lower file becomes a whiteout when removed', op: (r) => unlinkSync(join(r, 'etc/keep')), expect: ['etc/ directory 755', 'etc/.wh.keep'] },
  { title: 'a file of the second layer becomes a whiteout when removed', op: (r) => unlinkSync(join(r, 'etc/c')), expect: ['etc/ directory 755', 'etc/.wh.c'] },
  { title: 'a deleted lower directory is one whiteout when removed recursively', op: (r) => rmSync(join(r, 'd'), { recursive: true }), expect: ['.wh.d'] },
  {
    title: 'a recreated directory is opaque when removed and made again',
    op: (r) => {
      rmSync(join(r, 'd'), { recursive: true });
      mkdirSync(join(r, 'd'));
      writeFileSync(join(r, 'd/new'), 'n');
    },
    expect: ['d/ directory 755', 'd/.wh..wh..opq', 'd/new file 644 1b16b1df'],
  },
  {
    title: 'a file replaced by a directory is an opaque directory when replaced',
    op: (r) => {
      unlinkSync(join(r, 'rep'));
      mkdirSync(join(r, 'rep'));
    },
    expect: ['rep/ directory 755', 'rep/.wh..wh..opq'],
  },
  {
    title: 'a directory replaced by a file is a file when replaced',
    op: (r) => {
      rmSync(join(r, 'rd'), { recursive: true });
      writeFileSync(join(r, 'rd'), 'file now');
    },
    expect: ['rd file 644 c2f60632'],
  },
  { title: 'a mode change is in the diff when chmod-ed', op: (r) => chmodSync(join(r, 'mode.txt'), 0o600), expect: ['mode.txt file 600 e642b129'] },
  { title: 'a new symlink is in the diff when created', op: (r) => symlinkSync('/etc/a', join(r, 'link')), expect: ['link symlink 777 /etc/a'] },
  {
    title: 'a hardlink to a lower file is a tar link when linked',
    op: (r) => linkSync(join(r, 'etc/a'), join(r, 'etc/a2')),
    expect: ['etc/ directory 755', 'etc/a file 644 8ed3f6ad', 'etc/a2 link 644 etc/a'],
  },
  {
    title: 'a renamed lower file is a whiteout plus the new name when renamed',
    op: (r) => renameSync(join(r, 'etc/a'), join(r, 'etc/z')),
    expect: ['etc/ directory 755', 'etc/.wh.a', 'etc/z file 644 8ed3f6ad'],
  },
  {
    title: 'new nested directories are in the diff when created',
    op: (r) => {
      mkdirSync(join(r, 'x/y'), { recursive: true });
      writeFileSync(join(r, 'x/y/f'), 'f');
    },
    expect: ['x/ directory 755', 'x/y/ directory 755', 'x/y/f file 644 252f10c8'],
  },
  { title: 'the diff is empty when nothing changed', op: () => undefined, expect: [] },
];

/** Unpacks the base layers; returns the chain ID of the top one. */
async function unpackBase(s: Snapshotter, layers: readonly TestLayer[]): Promise<Digest> {
  let chain: Digest | undefined;
  for (const l of layers) chain = (await s.unpack(chain, l.diffId, () => Readable.from([l.tar]))).name as Digest;
  return chain as Digest;
}

const overlayReason = await overlayMissing();
const rootReason = process.getuid?.() === 0 ? undefined : 'the behaviour table creates root-owned trees';

for (const kind of ['overlay', 'naive'] as const satisfies readonly SnapshotterKind[]) {
  const reason = kind === 'overlay' ? overlayReason : rootReason;
  for (const c of CASES) {
    testIf(reason, `${kind} snapshotter: ${c.title}`, async (t) => {
      const dirs = await makeDirs(t);
      const s = makeSnapshotter(kind, dirs);
      const base = await unpackBase(s, await makeBaseLayers(t));
      const active = await s.prepare('step-1', base);
      const { root, close } = await openRoot(t, active, dirs);
      c.op(root);
      const view = describeDir(root);
      await close();
      const diff = await s.diff('step-1');
      const layer = await packDir(diff.dir, diff.mode);
      t.deepEqual(await describeTar(layer.tar), [...c.expect]);
      // Committing and preparing on top shows the same file system the step saw.
      const committed = await s.commit('step-1', layer.diffId);
      await diff.release();
      t.is(committed.parent, base);
      t.is(await s.stat('step-1'), undefined);
      const next = await s.prepare('step-2', committed.name as Digest);
      const reopened = await openRoot(t, next, dirs);
      t.deepEqual(describeDir(reopened.root), view);
      await reopened.close();
    });
  }
}

testIf(overlayReason ?? rootReason, 'snapshotters: overlay and naive give the same diff and view when the same steps run', async (t) => {
  const results: { tar: string[]; view: string[] }[] = [];
  for (const kind of ['overlay', 'naive'] as const) {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const base = await unpackBase(s, await makeBaseLayers(t));
    await s.prepare('all', base);
    const { root, close } = await openRoot(t, await s.open('all'), dirs);
    for (const c of CASES.slice(0, 10)) if (c !== CASES[4]) c.op(root); // cases that do not overlap
    const view = describeDir(root);
    await close();
    const diff = await s.diff('all');
    results.push({ tar: await describeTar((await packDir(diff.dir, diff.mode)).tar), view });
  }
  t.deepEqual(results[1], results[0]);
  t.true((results[0]?.tar.length ?? 0) > 10);
});

for (const kind of ['overlay', 'naive'] as const satisfies readonly SnapshotterKind[]) {
  testIf(kind === 'overlay' ? overlayReason : rootReason, `${kind} snapshotter: a step without a parent is a plain directory that commits into a usable parent when starting from scratch`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const first = await s.prepare('scratch');
    t.is(first.parent, undefined);
    const m = first.mounts();
    if (m.type !== 'bind') throw new Error('expected a plain directory without a parent');
    mkdirSync(join(m.source, 'etc'));
    writeFileSync(join(m.source, 'etc/hostname'), 'box');
    const diff = await s.diff('scratch');
    const layer = await packDir(diff.dir, diff.mode);
    t.deepEqual(await describeTar(layer.tar), ['etc/ directory 755', 'etc/hostname file 644 26f8567f']);
    const committed = await s.commit('scratch', layer.diffId);
    await diff.release();
    t.is(committed.name, layer.diffId);
    const next = await s.prepare('on-top', committed.name as Digest);
    const { root, close } = await openRoot(t, next, dirs);
    t.deepEqual(describeDir(root), ['etc/ dir 755', 'etc/hostname file 644 26f8567f']);
    await close();
    t.deepEqual((await s.list()).map((i) => `${i.kind} ${i.name}`).sort(), [`active on-top`, `committed ${layer.diffId}`]);
  });
}

for (const kind of ['overlay', 'naive'] as const satisfies readonly SnapshotterKind[]) {
  testIf(kind === 'overlay' ? overlayReason : rootReason, `${kind} snapshotter: lookup finds what the merged view shows without mounting when reading files`, async (t) => {
    const dirs = await makeDirs(t);
    const s = makeSnapshotter(kind, dirs);
    const base = await unpackBase(s, await makeBaseLayers(t));
    const read = async (name: string, path: string): Promise<string | undefined> => {
      const host = await s.lookup(name, path);
      return host === undefined ? undefined : readFileSync(host, 'utf8');
    };
    t.is(await read(base, '/etc/a'), 'alpha');
    t.is(await read(base, 'etc/c'), 'gamma'); // from the second layer
    t.is(await read(base, '/etc/b'), undefined); // whited out by the second layer
    t.is(await read(base, '/lib/libc.so'), 'libc'); // through a relative directory symlink
    t.is(await read(base, '/etc/../lib/./libc.so'), 'libc');
    t.true((await s.lookup(base, '/bin/sh'))?.endsWith('/bin/sh')); // a final symlink is itself
    t.is(await read(base, '/escape/passwd'), undefined); // SECURITY: never the host's /etc/passwd
    t.is(await s.lookup(base, '/bin/sh/x'), undefined);
    const active = await s.prepare('look', base);
    const { root, close } = await openRoot(t, active, dirs);
    rmSync(join(root, 'd'), { recursive: true });
    mkdirSync(join(root, 'd'));
    writeFileSync(join(root, 'd/new'), 'n');
    writeFileSync(join(root, 'etc/a'), 'changed');
    unlinkSync(join(root, 'etc/keep'));
    await close();
    t.is(await read('look', '/etc/a'), 'changed');
    t.is(await read('look', '/etc/keep'), undefined);
    t.is(await read('look', '/d/x'), undefined); // hidden by the opaque directory
    t.is(await read('look', '/d/new'), 'n');
    t.is(await read('look', '/d/sub/z'), undefined);
    t.is(await read(base, '/d/x'), 'x'); // the committed parent is unchanged
  });
}
