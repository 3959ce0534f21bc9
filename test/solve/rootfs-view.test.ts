import { lstat, mkdir, readFile, readlink, symlink, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { RootfsView } from '../../src/solve/index.js';
import { getXattr, makeNode, setXattr } from '../../src/sys/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

const notRoot = process.getuid?.() === 0 ? undefined : 'whiteouts (mknod) and trusted.* xattrs need root';

/** upper (writable), mid, low: low has /etc/passwd, /data/{a,b}, /opaque/old; mid deletes /data/a and makes /opaque opaque. */
async function layered(t: Parameters<typeof tempDir>[0]): Promise<{ upper: string; mid: string; low: string; view: RootfsView }> {
  const dir = await tempDir(t);
  const [upper, mid, low] = ['upper', 'mid', 'low'].map((n) => join(dir, n)) as [string, string, string];
  for (const d of [upper, mid, join(low, 'etc'), join(low, 'data'), join(low, 'opaque'), join(mid, 'data'), join(mid, 'opaque')]) await mkdir(d, { recursive: true });
  await writeFile(join(low, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
  await writeFile(join(low, 'data/a'), 'a');
  await writeFile(join(low, 'data/b'), 'b');
  await writeFile(join(low, 'opaque/old'), 'old');
  await writeFile(join(mid, 'opaque/new'), 'new');
  await chmod(join(mid, 'data'), 0o750); // the top-most copy of a directory gives its metadata
  await symlink('/data', join(mid, 'link'));
  await symlink('../../../../..', join(mid, 'escape'));
  makeNode(join(mid, 'data/a'), 'char', 0, 0, 0);
  setXattr(join(mid, 'opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
  return { upper, mid, low, view: new RootfsView([upper, mid, low], 'trusted') };
}

const title = (s: string): string => `RootfsView: ${s}`;

testIf(notRoot, title('hides whiteouts and the contents below opaque directories when merging layers'), async (t) => {
  const { view } = await layered(t);
  t.deepEqual(view.readdirParts(['data']), ['b']);
  t.is(view.lookup('/data/a'), undefined);
  t.deepEqual(view.readdirParts(['opaque']), ['new']);
  t.is(view.lookup('/opaque/old'), undefined);
  t.deepEqual(view.readdirParts([]), ['data', 'escape', 'etc', 'link', 'opaque']);
  t.is(view.readSmallFile('/etc/passwd', 1000)?.split('\n')[1], 'app:x:1000:1001::/home/app:/bin/sh');
});

testIf(notRoot, title('follows symlinks inside the root and never above it when resolving paths'), async (t) => {
  const { view } = await layered(t);
  t.deepEqual(view.resolve('/link/b', true), ['data', 'b']);
  t.deepEqual(view.resolve('/link', false), ['link']);
  t.deepEqual(view.resolve('/escape/etc/passwd', true), ['etc', 'passwd']);
  t.deepEqual(view.resolve('/../../etc', true), ['etc']);
  t.throws(() => view.resolve('/etc/passwd/x', true), { code: 'SOLVE_NOT_DIR' } as never);
});

testIf(notRoot, title('copies lower directories up with their metadata when writing into the top layer'), async (t) => {
  const { upper, view } = await layered(t);
  view.ensureDirParts(['data', 'new', 'deep'], { uid: 7, gid: 8, mode: 0o700 });
  const data = await lstat(join(upper, 'data'));
  t.is(data.mode & 0o7777, 0o750);
  const created = await lstat(join(upper, 'data/new/deep'));
  t.is(created.mode & 0o7777, 0o700);
  t.is(created.uid, 7);
  const src = join(upper, '..', 'src.txt');
  await writeFile(src, 'content');
  await view.writeFile(['data', 'a'], src, { uid: 0, gid: 0, mode: 0o640, mtime: 1000 });
  t.is(await readFile(join(upper, 'data/a'), 'utf8'), 'content');
  t.is((await lstat(join(upper, 'data/a'))).mtimeMs, 1_000_000);
  t.deepEqual(view.readdirParts(['data']), ['a', 'b', 'new']);
  view.writeSymlink(['data', 'l'], 'b', { uid: 0, gid: 0 });
  t.is(await readlink(join(upper, 'data/l')), 'b');
  t.throws(() => view.ensureDirParts(['etc', 'passwd', 'x'], { uid: 0, gid: 0, mode: 0o755 }), { code: 'SOLVE_NOT_DIR' } as never);
});

testIf(notRoot, title('replaces a whiteout with an opaque directory when a deleted path is created again'), async (t) => {
  const { upper, view } = await layered(t);
  makeNode(join(upper, 'etc'), 'char', 0, 0, 0);
  t.is(view.lookup('/etc'), undefined);
  view.ensureDirParts(['etc'], { uid: 0, gid: 0, mode: 0o755 });
  t.true((await lstat(join(upper, 'etc'))).isDirectory());
  t.deepEqual(view.readdirParts(['etc']), []);
  t.is(getXattr(join(upper, 'etc'), 'trusted.overlay.opaque')?.toString(), 'y');
  t.is(view.lookup('/etc/passwd'), undefined);
});

testIf(notRoot, title('copies small and large files with owner, mode and mtime, replacing what the top layer holds, when writing a batch'), async (t) => {
  const { upper, view } = await layered(t);
  const src = join(upper, '..', 'src');
  await mkdir(src);
  const big = Buffer.alloc(300 * 1024 + 7, 'x');
  await writeFile(join(src, 'small'), 'small content');
  await writeFile(join(src, 'big'), big);
  await writeFile(join(src, 'grown'), 'was reported smaller than it is');
  view.ensureDirParts(['data'], { uid: 0, gid: 0, mode: 0o755 });
  await mkdir(join(upper, 'data/b/sub'), { recursive: true }); // a directory where a file goes
  makeNode(join(upper, 'data/gone'), 'char', 0, 0, 0); // a whiteout where a file goes
  await view.writeFiles([
    { parts: ['data', 'b'], source: join(src, 'small'), meta: { uid: 7, gid: 8, mode: 0o4750, mtime: 1000 }, size: 13 },
    { parts: ['data', 'big'], source: join(src, 'big'), meta: { uid: 9, gid: 9, mode: 0o600, mtime: 2000 }, size: big.length },
    { parts: ['data', 'gone'], source: join(src, 'grown'), meta: { uid: 0, gid: 0, mode: 0o644, mtime: 3000 }, size: 1 },
  ]);
  const b = await lstat(join(upper, 'data/b'));
  t.true(b.isFile());
  t.is(await readFile(join(upper, 'data/b'), 'utf8'), 'small content');
  t.deepEqual([b.uid, b.gid, b.mode & 0o7777, b.mtimeMs], [7, 8, 0o4750, 1_000_000]);
  const bigSt = await lstat(join(upper, 'data/big'));
  t.deepEqual([bigSt.uid, bigSt.mode & 0o7777, bigSt.mtimeMs, bigSt.size], [9, 0o600, 2_000_000, big.length]);
  t.true((await readFile(join(upper, 'data/big'))).equals(big));
  t.is(await readFile(join(upper, 'data/gone'), 'utf8'), 'was reported smaller than it is');
  t.deepEqual(view.readdirParts(['data']), ['b', 'big', 'gone']);
});

testIf(notRoot, title('refuses a source file swapped for a symlink when writing a batch'), async (t) => {
  const { upper, view } = await layered(t);
  const src = join(upper, '..', 'src');
  await mkdir(src);
  await symlink('/etc/hostname', join(src, 'link'));
  view.ensureDirParts(['data'], { uid: 0, gid: 0, mode: 0o755 });
  await t.throwsAsync(view.writeFiles([{ parts: ['data', 'x'], source: join(src, 'link'), meta: { uid: 0, gid: 0, mode: 0o644 }, size: 10 }]), { code: 'SOLVE_IO' } as never);
});

testIf(notRoot, title('caches what the committed lower layers hold at a path, and always asks the top layer'), async (t) => {
  const { upper, mid, low } = await layered(t);
  const committed = (): RootfsView => new RootfsView([upper, mid, low], 'trusted', { immutableLowers: true });
  t.is(committed().readSmallFile('/etc/passwd', 1000)?.split('\n')[0], 'root:x:0:0:root:/root:/bin/sh');
  t.is(committed().lookup('/etc/group'), undefined);
  t.deepEqual(committed().readdirParts(['opaque']), ['new']);
  // Committed layers never change: a later view over them does not look again.
  await writeFile(join(low, 'etc/group'), 'root:x:0:\n');
  setXattr(join(mid, 'opaque'), 'trusted.overlay.opaque', Buffer.from('n'));
  t.is(committed().lookup('/etc/group'), undefined);
  t.deepEqual(committed().readdirParts(['opaque']), ['new']);
  // Without the promise the layers are read; the top layer always is.
  t.is(new RootfsView([upper, mid, low], 'trusted').readSmallFile('/etc/group', 1000), 'root:x:0:\n');
  t.deepEqual(new RootfsView([upper, mid, low], 'trusted').readdirParts(['opaque']), ['new', 'old']);
  await mkdir(join(upper, 'etc'));
  await writeFile(join(upper, 'etc/group'), 'top:x:1:\n');
  t.is(committed().readSmallFile('/etc/group', 1000), 'top:x:1:\n');
  t.is(committed().lookup('/etc/group')?.layer, 0);
});
