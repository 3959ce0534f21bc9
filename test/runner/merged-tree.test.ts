import test from 'ava';
import { existsSync, lstatSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { materializeMerged, mergedRoot, resolveMerged, type MergedLayers } from '../../src/runner/merged-tree.js';
import { formatCpuTime, formatTty } from '../../src/runner/top.js';
import { parseNetDev } from '../../src/runner/stats.js';
import { makeNode, setXattr } from '../../src/sys/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

const notRoot = process.getuid?.() === 0 ? undefined : 'whiteout devices and trusted.* xattrs need root';

/** upper over lower: /keep (lower), /gone (whited out), /opaque (opaque in upper), /dir (merged), /link -> /dir, /esc -> ../../.. */
async function makeLayers(t: import('ava').ExecutionContext): Promise<{ m: MergedLayers; dir: string }> {
  const dir = await tempDir(t);
  const upper = join(dir, 'upper');
  const lower = join(dir, 'lower');
  for (const d of [join(lower, 'dir'), join(lower, 'opaque'), join(upper, 'dir'), join(upper, 'opaque')]) await mkdir(d, { recursive: true });
  await writeFile(join(lower, 'keep'), 'lower keep\n');
  await writeFile(join(lower, 'gone'), 'deleted\n');
  await writeFile(join(lower, 'dir', 'from-lower'), 'l\n');
  await writeFile(join(lower, 'dir', 'shadowed'), 'old\n');
  await writeFile(join(lower, 'opaque', 'hidden'), 'hidden\n');
  await writeFile(join(upper, 'dir', 'from-upper'), 'u\n');
  await writeFile(join(upper, 'dir', 'shadowed'), 'new\n');
  await writeFile(join(upper, 'opaque', 'only'), 'only\n');
  makeNode(join(upper, 'gone'), 'char', 0, 0, 0);
  setXattr(join(upper, 'opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
  await symlink('/dir', join(upper, 'link'));
  await symlink('../../../../..', join(upper, 'esc'));
  return { m: { layers: [upper, lower], xattrPrefix: 'trusted' }, dir };
}

testIf(notRoot, 'resolveMerged: follows overlay rules and keeps links inside the layers when resolving paths', async (t) => {
  const { m } = await makeLayers(t);
  t.is(resolveMerged(m, '/keep', false).entry?.host, join(m.layers[1] as string, 'keep'));
  t.is(resolveMerged(m, '/gone', false).entry, undefined, 'a whiteout hides the lower file');
  t.is(resolveMerged(m, '/opaque/hidden', false).entry, undefined, 'an opaque directory hides lower content');
  t.is(resolveMerged(m, '/dir/shadowed', false).entry?.host, join(m.layers[0] as string, 'dir', 'shadowed'));
  t.deepEqual(resolveMerged(m, '/link/from-lower', false).entry?.parts, ['dir', 'from-lower'], 'an intermediate link is followed in the merged view');
  t.true(resolveMerged(m, '/link', false).entry?.stat.isSymbolicLink(), 'a final link is kept unless asked');
  t.deepEqual(resolveMerged(m, '/link', true).entry?.parts, ['dir']);
  t.deepEqual(resolveMerged(m, '/esc/keep', false).entry?.parts, ['keep'], '.. stops at the container root');
  t.deepEqual(resolveMerged(m, '/../../keep', false).entry?.parts, ['keep']);
  const missing = resolveMerged(m, '/dir/new-name', true);
  t.is(missing.entry, undefined);
  t.deepEqual(missing.parent?.parts, ['dir']);
  t.is(missing.name, 'new-name');
  t.is(resolveMerged(m, '/nodir/new-name', true).parent, undefined);
});

testIf(notRoot, 'materializeMerged: recreates the merged tree with hard links when materializing a container root', async (t) => {
  const { m, dir } = await makeLayers(t);
  const out = join(dir, 'out');
  materializeMerged(m, mergedRoot(m), out, true);
  t.deepEqual((await readdir(out)).sort(), ['dir', 'esc', 'keep', 'link', 'opaque']);
  t.deepEqual((await readdir(join(out, 'dir'))).sort(), ['from-lower', 'from-upper', 'shadowed']);
  t.is(await readFile(join(out, 'dir', 'shadowed'), 'utf8'), 'new\n');
  t.deepEqual(await readdir(join(out, 'opaque')), ['only']);
  t.is(readlinkSync(join(out, 'link')), '/dir');
  t.is(lstatSync(join(out, 'keep')).ino, lstatSync(join(m.layers[1] as string, 'keep')).ino, 'files are hard links, not copies');
});

testIf(notRoot ?? (existsSync('/dev/shm') ? undefined : 'no /dev/shm'), 'materializeMerged: copies files without following links when hard links cross file systems', async (t) => {
  const { m } = await makeLayers(t);
  const shm = await mkdtemp('/dev/shm/tsbuild-merged-');
  t.teardown(() => rm(shm, { recursive: true, force: true }));
  const out = join(shm, 'out');
  materializeMerged(m, mergedRoot(m), out, true);
  t.is(await readFile(join(out, 'dir', 'from-lower'), 'utf8'), 'l\n');
  t.not(lstatSync(join(out, 'keep')).ino, lstatSync(join(m.layers[1] as string, 'keep')).ino, 'a copy on another file system');
  t.is(lstatSync(join(out, 'keep')).mode & 0o777, lstatSync(join(m.layers[1] as string, 'keep')).mode & 0o777);
});

test('parseNetDev: sums every interface but lo when reading /proc/PID/net/dev', (t) => {
  const text = 'Inter-|   Receive                                                |  Transmit\n'
    + ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n'
    + '    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n'
    + '  eth0:   200       2    0    0    0     0          0         0       30       1    0    0    0     0       0          0\n'
    + '  tap0:     5       1    0    0    0     0          0         0        7       1    0    0    0     0       0          0\n';
  t.deepEqual(parseNetDev(text), { rx: 205, tx: 37 });
  t.deepEqual(parseNetDev(''), { rx: 0, tx: 0 });
});

test('formatCpuTime and formatTty: ps columns when formatting /proc/PID/stat fields', (t) => {
  t.is(formatCpuTime(0), '00:00:00');
  t.is(formatCpuTime(100 * 3723), '01:02:03');
  t.is(formatCpuTime(100 * (86400 * 2 + 5)), '2-00:00:05');
  t.is(formatTty(0), '?');
  t.is(formatTty((136 << 8) | 3), 'pts/3');
  t.is(formatTty((4 << 8) | 1), 'tty1');
});
