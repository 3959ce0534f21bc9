import test from 'ava';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { Digest } from '../../src/core/index.js';
import { isTsbuildError } from '../../src/core/index.js';
import { getXattr, makeNode, setXattr } from '../../src/sys/index.js';
import { OverlaySnapshotter, formatOverlayData, mountSnapshot, openSnapshotter, probeOverlay, unmountSnapshot } from '../../src/snapshot/index.js';
import { testIf, testSerialIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { describeTar, makeDirs, overlayMissing, packDir } from './helpers.js';

const run = promisify(execFile);
const overlayReason = await overlayMissing();
const usernsReason = overlayReason ?? (await probeOverlay('/tmp', true).then((p) => (p.ok ? undefined : `no overlay in a user namespace: ${p.reason}`)));

testIf(usernsReason, 'overlay snapshotter: whiteouts and opaque dirs use user.overlay xattrs when mounted rootless with userxattr', async (t) => {
  const dirs = await makeDirs(t);
  const work = await tempDir(t);
  const s = new OverlaySnapshotter(dirs, { userxattr: true });
  const l1 = join(work, 'l1');
  mkdirSync(join(l1, 'd'), { recursive: true });
  writeFileSync(join(l1, 'd/old'), 'old');
  writeFileSync(join(l1, 'keep'), 'keep');
  writeFileSync(join(l1, 'gone'), 'gone');
  mkdirSync(join(l1, 'o'));
  writeFileSync(join(l1, 'o/hidden'), 'hidden');
  const l2 = join(work, 'l2');
  mkdirSync(l2);
  makeNode(join(l2, 'gone'), 'char', 0, 0, 0);
  mkdirSync(join(l2, 'o'));
  setXattr(join(l2, 'o'), 'trusted.overlay.opaque', Buffer.from('y')); // an opaque directory in the layer tar
  writeFileSync(join(l2, 'o/shown'), 'shown');
  let chain: Digest | undefined;
  for (const l of [await packDir(l1, 'tree'), await packDir(l2, 'changeset')]) {
    chain = (await s.unpack(chain, l.diffId, () => Readable.from([l.tar]))).name as Digest;
  }
  const active = await s.prepare('rootless', chain);
  const m = active.mounts();
  if (m.type !== 'overlay') throw new Error('expected an overlay mount');
  t.true(m.options.includes('userxattr'));
  const mnt = join(work, 'mnt');
  mkdirSync(mnt);
  // As the sandbox does rootless: mount inside a new user + mount namespace, from baseDir.
  const script = 'mount -t overlay overlay -o "$0" "$1" && cd "$1" && test ! -e gone && test ! -e o/hidden && test -f o/shown'
    + ' && rm keep && rm -rf d && mkdir d && echo n > d/new';
  await run('unshare', ['-U', '-r', '-m', 'sh', '-c', script, formatOverlayData(m, { relative: true }), mnt], { cwd: m.baseDir });
  const diff = await s.diff('rootless');
  t.deepEqual(await describeTar((await packDir(diff.dir, diff.mode)).tar), ['.wh.keep', 'd/ directory 755', 'd/.wh..wh..opq', 'd/new file 644 a4fb6214']);
  t.is(getXattr(join(diff.dir, 'd'), 'user.overlay.opaque')?.toString(), 'y');
  t.is(getXattr(join(diff.dir, 'd'), 'trusted.overlay.opaque'), undefined);
});

testIf(overlayReason, 'openSnapshotter: auto falls back to naive with the probe reason when overlay cannot be mounted there', async (t) => {
  // overlayfs is not supported as an upperdir: a store inside an overlay mount cannot use overlay snapshots.
  const work = await tempDir(t);
  for (const d of ['lower', 'upper', 'work', 'mnt']) mkdirSync(join(work, d));
  await mountSnapshot({ type: 'overlay', lowerdirs: [join(work, 'lower')], relativeLowerdirs: ['lower'], upperdir: join(work, 'upper'), workdir: join(work, 'work'), options: [], baseDir: work }, join(work, 'mnt'));
  t.teardown(() => unmountSnapshot(join(work, 'mnt')));
  const dirs = { snapshots: join(work, 'mnt', 'snapshots'), tmp: join(work, 'mnt', 'tmp') };
  const auto = await openSnapshotter(dirs, { choice: 'auto', userxattr: false });
  t.is(auto.snapshotter.kind, 'naive');
  t.regex(auto.fallbackReason ?? '', /overlay cannot be mounted here/);
  const forced = await t.throwsAsync(openSnapshotter(dirs, { choice: 'overlay', userxattr: false }));
  t.true(isTsbuildError(forced, 'SNAPSHOT_OVERLAY_UNAVAILABLE'));
  const active = await auto.snapshotter.prepare('works');
  t.is(active.mounts().type, 'bind');
});

testIf(overlayReason, 'openSnapshotter: overlay is chosen with redirect_dir and metacopy off when the probe mount works', async (t) => {
  const dirs = await makeDirs(t);
  const { snapshotter, fallbackReason } = await openSnapshotter(dirs, { userxattr: false });
  t.is(snapshotter.kind, 'overlay');
  t.is(fallbackReason, undefined);
  const probe = await (snapshotter as OverlaySnapshotter).probe();
  t.true(probe.ok && probe.options.includes('redirect_dir=off') && probe.options.includes('metacopy=off'));
});

testIf(overlayReason, 'overlay snapshotter: a successful probe is kept in overlay/probe.json and reused until its key (boot, user, file system) changes', async (t) => {
  const dirs = await makeDirs(t);
  const first = await new OverlaySnapshotter(dirs, { userxattr: false }).probe();
  t.true(first.ok);
  const file = join(dirs.snapshots, 'overlay', 'probe.json');
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { key: string; options: string[] };
  t.deepEqual(saved.options, first.ok ? first.options : []);
  t.true(saved.key.includes(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()), saved.key);
  // A matching key with one of the candidate option sets is trusted as is (no probe mount): the recorded options come back.
  const other = ['redirect_dir=off', 'metacopy=off'];
  writeFileSync(file, JSON.stringify({ key: saved.key, options: other }));
  t.deepEqual(await new OverlaySnapshotter(dirs, { userxattr: false }).probe(), { ok: true, options: other });
  // Options that are no candidate are not trusted (a damaged or planted file cannot choose mount options).
  writeFileSync(file, JSON.stringify({ key: saved.key, options: ['lowerdir=/etc'] }));
  t.deepEqual(await new OverlaySnapshotter(dirs, { userxattr: false }).probe(), first);
  // Another boot (or user, user namespace, file system, userxattr) probes again (or takes the machine's copy) and records the result.
  writeFileSync(file, JSON.stringify({ key: saved.key.replace(/"boot":"[^"]*"/, '"boot":"another-boot"'), options: other }));
  t.deepEqual(await new OverlaySnapshotter(dirs, { userxattr: false }).probe(), first);
  t.deepEqual(JSON.parse(readFileSync(file, 'utf8')), saved);
});

// Serial: ava runs it before this file's concurrent tests, which must not see the run directory it sets.
testSerialIf(overlayReason, 'overlay snapshotter: a new store on the same file system takes the probe result of the machine-wide copy in the run directory, without probing', async (t) => {
  const runDir = join(await tempDir(t), 'run');
  const old = process.env.TSBUILD_RUN_DIR;
  process.env.TSBUILD_RUN_DIR = runDir;
  try {
    const dirs = await makeDirs(t);
    const first = await new OverlaySnapshotter(dirs, { userxattr: false }).probe();
    t.true(first.ok);
    const saved = JSON.parse(readFileSync(join(dirs.snapshots, 'overlay', 'probe.json'), 'utf8')) as { key: string; options: string[] };
    const copies = readdirSync(runDir).filter((n) => n.startsWith('overlay-probe-') && n.endsWith('.json')).map((n) => join(runDir, n));
    t.is(copies.length, 1);
    const shared = copies[0] as string;
    t.deepEqual(JSON.parse(readFileSync(shared, 'utf8')), saved);
    // The machine's copy says another candidate set: a second, new store takes it as is (no probe), and records it as its own.
    const other = ['redirect_dir=off', 'metacopy=off'];
    writeFileSync(shared, JSON.stringify({ key: saved.key, options: other }));
    const second = await makeDirs(t);
    t.deepEqual(await new OverlaySnapshotter(second, { userxattr: false }).probe(), { ok: true, options: other });
    t.deepEqual((JSON.parse(readFileSync(join(second.snapshots, 'overlay', 'probe.json'), 'utf8')) as { options: string[] }).options, other);
    // A run directory others may write to is not trusted: the next new store probes for itself.
    chmodSync(runDir, 0o777);
    const third = await makeDirs(t);
    t.deepEqual(await new OverlaySnapshotter(third, { userxattr: false }).probe(), first);
  } finally {
    if (old === undefined) delete process.env.TSBUILD_RUN_DIR;
    else process.env.TSBUILD_RUN_DIR = old;
  }
});

test('openSnapshotter: naive is used without probing when asked for', async (t) => {
  const dirs = await makeDirs(t);
  const { snapshotter, fallbackReason } = await openSnapshotter(dirs, { choice: 'naive' });
  t.is(snapshotter.kind, 'naive');
  t.is(fallbackReason, undefined);
});

test('snapshotters: an invalid active key is refused when preparing', async (t) => {
  const dirs = await makeDirs(t);
  const { snapshotter } = await openSnapshotter(dirs, { choice: 'naive' });
  for (const key of ['', '../escape', 'a/b', '.hidden', 'x'.repeat(129)]) {
    const err = await t.throwsAsync(snapshotter.prepare(key));
    t.true(isTsbuildError(err, 'SNAPSHOT_BAD_KEY'), key);
  }
});
