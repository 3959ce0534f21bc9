import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyLayer, packLayer } from '../../src/layer/index.js';
import { getXattr } from '../../src/sys/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { buildTar, collect, describeTree, streamOf } from './helpers.js';
import { isRoot, makeFixtureTree } from './fixture-tree.js';

async function roundTrip(src: string, dest: string, options: Parameters<typeof applyLayer>[2] = {}) {
  const packed = packLayer(src, { mode: 'tree' });
  const report = await applyLayer(packed.stream, dest, options);
  await packed.done;
  return report;
}

test('applyLayer: tree -> tar -> apply gives the same tree when every entry kind is present', async (t) => {
  const tmp = await tempDir(t);
  const src = join(tmp, 'src');
  const dest = join(tmp, 'dest');
  mkdirSync(src);
  makeFixtureTree(src);
  const report = await roundTrip(src, dest);
  t.deepEqual(report.warnings, []);
  t.deepEqual(describeTree(dest, { owners: isRoot }), describeTree(src, { owners: isRoot }));
  const uniqueFileBytes = execFileSync('find', [src, '-type', 'f', '-printf', '%i %s\\n']).toString().trim().split('\n')
    .reduce((acc, line) => acc.set(line.split(' ')[0] as string, Number(line.split(' ')[1])), new Map<string, number>());
  t.is(report.bytes, [...uniqueFileBytes.values()].reduce((a, b) => a + b, 0));
});

test('applyLayer: large files are byte-exact with their modes and mtimes when their chunks are written in the background', async (t) => {
  const tmp = await tempDir(t);
  const dest = join(tmp, 'dest');
  const big = randomBytes(5 * 1024 * 1024 + 123);
  const other = randomBytes(300_000);
  const tar = buildTar([
    { name: 'a', content: big, mode: 0o4755, mtime: 444 },
    { name: 'b', content: other, mtime: 555 },
    { name: 'c', content: 'small', mtime: 666 },
  ]);
  // Odd chunk sizes: a file's body spans many chunks and chunk edges fall inside headers.
  await applyLayer(streamOf(tar, 65_537), dest);
  t.true(readFileSync(join(dest, 'a')).equals(big));
  t.true(readFileSync(join(dest, 'b')).equals(other));
  t.is(readFileSync(join(dest, 'c'), 'utf8'), 'small');
  t.is(lstatSync(join(dest, 'a')).mode & 0o7777, 0o4755);
  t.is(lstatSync(join(dest, 'a')).mtimeMs, 444_000);
  t.is(lstatSync(join(dest, 'b')).mtimeMs, 555_000);
});

test('applyLayer: symlink and directory mtimes are restored when entries are written in order', async (t) => {
  const tmp = await tempDir(t);
  const dest = join(tmp, 'dest');
  const tar = buildTar([
    { name: 'd/', type: 'directory', mtime: 111 },
    { name: 'd/f', content: 'x', mtime: 222 },
    { name: 'd/s', type: 'symlink', linkname: 'f', mtime: 333 },
  ]);
  await applyLayer(streamOf(tar), dest);
  t.is(lstatSync(join(dest, 'd')).mtimeMs, 111_000);
  t.is(lstatSync(join(dest, 'd/f')).mtimeMs, 222_000);
  t.is(lstatSync(join(dest, 'd/s')).mtimeMs, 333_000);
});

test('applyLayer: modes, mtimes and contents are exact when many small files go through the helper thread', async (t) => {
  const tmp = await tempDir(t);
  const dest = join(tmp, 'dest');
  const modes = [0o644, 0o600, 0o755, 0o444, 0o666, 0o4755, 0o2750, 0o1777, 0o000, 0o640];
  const entries = Array.from({ length: 1200 }, (_, i) => ({
    name: `d${i % 7}/f${i}`, content: Buffer.alloc(i * 97 % 20_000, i % 251), mode: modes[i % modes.length] as number, mtime: 1_000_000 + i,
  }));
  const report = await applyLayer(streamOf(buildTar(entries), 64 * 1024), dest);
  t.is(report.entries, entries.length);
  t.is(report.bytes, entries.reduce((n, e) => n + e.content.length, 0));
  for (const e of entries) {
    const st = lstatSync(join(dest, e.name));
    if ((st.mode & 0o7777) !== e.mode || st.mtimeMs !== e.mtime * 1000 || !readFileSync(join(dest, e.name)).equals(e.content)) {
      t.fail(`${e.name}: mode ${(st.mode & 0o7777).toString(8)} (want ${e.mode.toString(8)}), mtime ${st.mtimeMs}, size ${st.size}`);
      return;
    }
  }
  t.pass();
});

test('applyLayer: a layer held in memory at once unpacks as it does chunk by chunk when names repeat, are replaced, linked and whited out', async (t) => {
  // In one chunk every entry is in memory and most are applied without waiting; whatever replaces,
  // links or removes a name goes the waiting way. The trees must be the same either way.
  const tmp = await tempDir(t);
  const entries: Parameters<typeof buildTar>[0][number][] = [];
  for (let d = 0; d < 5; d++) entries.push({ name: `d${d}/`, type: 'directory', mtime: 1_500_000 + d });
  for (let i = 0; i < 1500; i++) entries.push({ name: `d${i % 5}/f${i}`, content: Buffer.alloc(i * 131 % 9000, i % 253), mode: i % 3 === 0 ? 0o755 : 0o644, mtime: 2_000_000 + i });
  entries.push(
    { name: 'd1/f1', content: 'replaced in the same layer' },
    { name: 'd2/f7', type: 'directory' },
    { name: 'd2/f7/inside', content: 'a file below a file turned directory' },
    { name: 'd3/hard', type: 'link', linkname: 'd3/f3' },
    { name: 'd4/.wh.f4' },
    { name: 'd0/sym', type: 'symlink', linkname: '../d1/f1' },
    { name: 'd0/sym', content: 'a file replacing a symlink' },
  );
  for (let i = 1500; i < 1800; i++) entries.push({ name: `d${i % 5}/g${i}`, content: `late ${i}`, mtime: 3_000_000 + i });
  const tar = buildTar(entries);
  const whole = join(tmp, 'whole');
  const chunked = join(tmp, 'chunked');
  const a = await applyLayer(streamOf(tar, tar.length), whole);
  const b = await applyLayer(streamOf(tar, 700), chunked);
  t.is(a.entries, entries.length);
  t.deepEqual(a, b);
  const tree = describeTree(whole);
  t.deepEqual(tree, describeTree(chunked));
  t.is(readFileSync(join(whole, 'd1/f1'), 'utf8'), 'replaced in the same layer');
  t.is(readFileSync(join(whole, 'd2/f7/inside'), 'utf8'), 'a file below a file turned directory');
  t.is(readFileSync(join(whole, 'd0/sym'), 'utf8'), 'a file replacing a symlink');
  t.is(lstatSync(join(whole, 'd3/hard')).ino, lstatSync(join(whole, 'd3/f3')).ino);
  t.false(readdirSync(join(whole, 'd4')).includes('f4'));
  t.is(Object.keys(tree).filter((k) => /\/[fg]\d+$/.test(k)).length, 1800 - 1); // f4 whited out (f7 is a directory now)
});

testIf(isRoot ? undefined : 'needs root', 'applyLayer: devices are skipped with a warning when not privileged', async (t) => {
  const tmp = await tempDir(t);
  const tar = buildTar([{ name: 'null', type: 'char', mode: 0o666 }, { name: 'f', content: 'x' }]);
  const report = await applyLayer(streamOf(tar), join(tmp, 'd'), { privileged: false });
  t.is(report.warnings.length, 1);
  t.regex(report.warnings[0] ?? '', /skipped device node null/);
  t.deepEqual(readdirSync(join(tmp, 'd')), ['f']);
});

test('applyLayer: .wh. entries delete lower files and directories when whiteouts are applied', async (t) => {
  const tmp = await tempDir(t);
  const dest = join(tmp, 'dest');
  await applyLayer(streamOf(buildTar([
    { name: 'a', content: 'a' }, { name: 'd/', type: 'directory' }, { name: 'd/x', content: 'x' }, { name: 'd/sub/', type: 'directory' }, { name: 'd/sub/y', content: 'y' },
  ])), dest);
  const report = await applyLayer(streamOf(buildTar([{ name: '.wh.a' }, { name: 'd/.wh.sub' }, { name: '.wh.never-existed' }])), dest);
  t.is(report.whiteouts, 3);
  t.deepEqual(readdirSync(dest), ['d']);
  t.deepEqual(readdirSync(join(dest, 'd')), ['x']);
});

test('applyLayer: an opaque marker clears lower content but keeps entries of the same layer', async (t) => {
  const tmp = await tempDir(t);
  const dest = join(tmp, 'dest');
  await applyLayer(streamOf(buildTar([
    { name: 'd/', type: 'directory' }, { name: 'd/lower', content: 'l' }, { name: 'd/keep/', type: 'directory' }, { name: 'd/keep/lower-nested', content: 'n' }, { name: 'other', content: 'o' },
  ])), dest);
  await applyLayer(streamOf(buildTar([
    { name: 'd/', type: 'directory' }, { name: 'd/-early', content: 'e' }, { name: 'd/.wh..wh..opq' }, { name: 'd/keep/', type: 'directory' }, { name: 'd/keep/new', content: 'n' }, { name: 'd/late', content: 'l' },
  ])), dest);
  t.deepEqual(readdirSync(join(dest, 'd')).sort(), ['-early', 'keep', 'late']);
  t.deepEqual(readdirSync(join(dest, 'd/keep')), ['new']);
  t.deepEqual(readdirSync(dest).sort(), ['d', 'other']);
});

testIf(isRoot ? undefined : 'needs root for whiteout devices', 'applyLayer: overlay mode records whiteouts as 0/0 devices and opaque xattrs', async (t) => {
  const tmp = await tempDir(t);
  const dest = join(tmp, 'dest');
  await applyLayer(streamOf(buildTar([{ name: '.wh.a' }, { name: 'd/', type: 'directory' }, { name: 'd/.wh..wh..opq' }, { name: 'd/new', content: 'n' }])), dest, { whiteouts: 'overlay' });
  const wh = lstatSync(join(dest, 'a'));
  t.true(wh.isCharacterDevice());
  t.is(wh.rdev, 0);
  t.is(getXattr(join(dest, 'd'), 'trusted.overlay.opaque')?.toString(), 'y');
  t.is(readFileSync(join(dest, 'd/new'), 'utf8'), 'n');
});

test('applyLayer: overlay xattrs in a tar are never restored when a hostile layer carries them', async (t) => {
  const tmp = await tempDir(t);
  const dest = join(tmp, 'dest');
  const report = await applyLayer(streamOf(buildTar([{ name: 'd/', type: 'directory', xattrs: [{ name: 'user.overlay.redirect', value: Buffer.from('/etc') }, { name: 'user.ok', value: Buffer.from('1') }] }])), dest);
  t.is(getXattr(join(dest, 'd'), 'user.overlay.redirect'), undefined);
  t.is(getXattr(join(dest, 'd'), 'user.ok')?.toString(), '1');
  t.regex(report.warnings.join('\n'), /ignored xattr user\.overlay\.redirect/);
});

test('applyLayer: a tar written by GNU tar unpacks to the same tree when it uses ./ names and GNU long names', async (t) => {
  const tmp = await tempDir(t);
  const src = join(tmp, 'src');
  mkdirSync(src);
  makeFixtureTree(src);
  const gnu = execFileSync('tar', ['--format=gnu', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', '-', '-C', src, '.'], { maxBuffer: 64 * 1024 * 1024 });
  const dest = join(tmp, 'dest');
  await applyLayer(streamOf(gnu, 65536), dest);
  t.deepEqual(describeTree(dest, { owners: isRoot }), describeTree(src, { owners: isRoot }));
  const pax = execFileSync('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', '-', '-C', src, '.'], { maxBuffer: 64 * 1024 * 1024 });
  const dest2 = join(tmp, 'dest2');
  await applyLayer(streamOf(pax, 65536), dest2);
  t.deepEqual(describeTree(dest2, { owners: isRoot }), describeTree(src, { owners: isRoot }));
});

test('applyLayer: fails with LAYER_ABORTED when the signal is aborted', async (t) => {
  const tmp = await tempDir(t);
  const ac = new AbortController();
  ac.abort();
  await t.throwsAsync(applyLayer(streamOf(buildTar([{ name: 'a', content: 'a' }])), join(tmp, 'd'), { signal: ac.signal }), { code: 'LAYER_ABORTED' } as never);
});

// A real overlay mount: the upperdir after a delete and a directory replacement is packed as a changeset.
function canMountOverlay(): string | undefined {
  if (!isRoot) return 'needs root to mount overlayfs';
  return readFileSync('/proc/filesystems', 'utf8').includes('overlay') ? undefined : 'overlayfs not available';
}

testIf(canMountOverlay(), 'packLayer: an overlay upperdir packs into whiteouts that reproduce the merged view when applied', async (t) => {
  const tmp = await tempDir(t);
  const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((n) => join(tmp, n)) as [string, string, string, string];
  for (const d of [lower, upper, work, merged]) mkdirSync(d);
  writeFileSync(join(lower, 'deleted'), 'gone soon');
  writeFileSync(join(lower, 'kept'), 'kept');
  mkdirSync(join(lower, 'replaced/deep'), { recursive: true });
  writeFileSync(join(lower, 'replaced/old'), 'old');
  writeFileSync(join(lower, 'replaced/deep/older'), 'older');
  mkdirSync(join(lower, 'dir'));
  writeFileSync(join(lower, 'dir/a'), 'a');
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work},redirect_dir=off,metacopy=off`, merged]);
  let mounted = true;
  t.teardown(() => {
    if (mounted) execFileSync('umount', [merged]);
  });
  execFileSync('sh', ['-c', 'rm deleted && rm -r replaced && mkdir replaced && echo new > replaced/new && echo b > dir/b && rm dir/a && echo added > added', ], { cwd: merged });
  const expected = describeTree(merged, { mtimes: false });
  execFileSync('umount', [merged]);
  mounted = false;

  const packed = packLayer(upper, { mode: 'changeset' });
  const tarFile = join(tmp, 'layer.tar');
  writeFileSync(tarFile, await collect(packed.stream));
  await packed.done;
  const listing = execFileSync('tar', ['-tf', tarFile]).toString().trim().split('\n');
  t.deepEqual(listing, ['.wh.deleted', 'added', 'dir/', 'dir/.wh.a', 'dir/b', 'replaced/', 'replaced/.wh..wh..opq', 'replaced/new']);

  // Delete mode: apply onto a copy of the lower dir.
  const rootfs = join(tmp, 'rootfs');
  cpSync(lower, rootfs, { recursive: true });
  await applyLayer(streamOf(readFileSync(tarFile), 8192), rootfs);
  t.deepEqual(describeTree(rootfs, { mtimes: false }), expected);

  // Overlay mode: unpack the layer alone and stack it on the lower dir.
  const layerDir = join(tmp, 'layer');
  await applyLayer(streamOf(readFileSync(tarFile), 8192), layerDir, { whiteouts: 'overlay' });
  const view = join(tmp, 'view');
  mkdirSync(view);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${layerDir}:${lower}`, view]);
  try {
    t.deepEqual(describeTree(view, { mtimes: false }), expected);
  } finally {
    execFileSync('umount', [view]);
  }
});
