import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packLayer, readTar, type TarHeader } from '../../src/layer/index.js';
import { makeNode, setXattr } from '../../src/sys/index.js';
import { tempDir } from '../helpers/tmp.js';
import { collect, describeTree, streamOf } from './helpers.js';
import { isRoot, makeFixtureTree } from './fixture-tree.js';

async function packToBuffer(dir: string, options: Parameters<typeof packLayer>[1]) {
  const packed = packLayer(dir, options);
  const tar = await collect(packed.stream);
  return { tar, result: await packed.done };
}

async function headersOf(tar: Buffer): Promise<TarHeader[]> {
  const out: TarHeader[] = [];
  for await (const e of readTar(streamOf(tar, 4096))) out.push(e.header);
  return out;
}

test('packLayer: the diffID is the sha256 and size of the stream when packing a tree', async (t) => {
  const dir = await tempDir(t);
  makeFixtureTree(dir);
  const { tar, result } = await packToBuffer(dir, { mode: 'tree' });
  t.is(result.diffId as string, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
  t.is(result.size, tar.length);
  t.is(tar.length % 512, 0);
  t.true(tar.subarray(-1024).equals(Buffer.alloc(1024)));
});

test('packLayer: the same tree gives the same diffID when packed twice and after copying it elsewhere', async (t) => {
  const tmp = await tempDir(t);
  const a = join(tmp, 'a');
  mkdirSync(a);
  makeFixtureTree(a);
  const first = await packToBuffer(a, { mode: 'tree' });
  readFileSync(join(a, 'big.bin')); // an atime change must not matter
  const second = await packToBuffer(a, { mode: 'tree' });
  t.is(second.result.diffId, first.result.diffId);
  const b = join(tmp, 'copy-with-another-name');
  execFileSync('cp', ['-a', a, b]);
  const third = await packToBuffer(b, { mode: 'tree' });
  t.is(third.result.diffId, first.result.diffId);
  t.deepEqual(describeTree(b), describeTree(a));
});

test('packLayer: entries are in bytewise order with numeric owners and no names when listed', async (t) => {
  const dir = await tempDir(t);
  makeFixtureTree(dir);
  const { tar } = await packToBuffer(dir, { mode: 'tree' });
  const names = (await headersOf(tar)).map((h) => h.name);
  const keys = names.map((n) => Buffer.from(n.replace(/\/$/, '')));
  // Depth-first with siblings sorted bytewise: each directory precedes its content.
  t.is(names[0], 'Zcase');
  t.true(names.indexOf('a-b') < names.indexOf('big.bin'));
  t.true(names.indexOf('etc/') < names.indexOf('etc/hosts'));
  t.true(names.indexOf('etc/sub/') < names.indexOf('etc/sub/rel'));
  t.is(new Set(keys.map(String)).size, keys.length);
  for (const h of await headersOf(tar)) t.false(h.name.startsWith('./') || h.name.startsWith('/'));
  // Raw header fields: uname/gname empty, magic ustar.
  t.is(tar.toString('latin1', 257, 263), 'ustar\0');
  t.true(tar.subarray(265, 329).equals(Buffer.alloc(64)));
});

test('packLayer: tar -tvf lists the expected entries when GNU tar reads our output', async (t) => {
  const dir = await tempDir(t);
  makeFixtureTree(dir);
  const { tar } = await packToBuffer(dir, { mode: 'tree' });
  const file = join(await tempDir(t), 'layer.tar');
  writeFileSync(file, tar);
  const listing = execFileSync('tar', ['--numeric-owner', '-tvf', file], { env: { LC_ALL: 'C', TZ: 'UTC' } }).toString();
  const lines = listing.trim().split('\n');
  const byName = (suffix: string): string => lines.find((l) => l.endsWith(suffix)) ?? '';
  t.regex(byName(' etc/'), /^drwxr-xr-x /);
  t.regex(byName(' suid'), /^-rwsr-xr-x /);
  t.regex(byName(' sgid'), /^-rwx--s--x /);
  t.regex(byName(' tmp/'), /^drwxrwxrwt /);
  t.regex(byName(' fifo'), /^prw-r----- /);
  t.regex(byName('etc/sub/rel -> ../etc/hosts'), /^lrwxrwxrwx /);
  t.truthy(lines.find((l) => / etc\/sub\/hosts-link2 link to etc\/hosts$/.test(l)) ?? lines.find((l) => / hosts-link link to etc\/hosts$/.test(l)));
  t.truthy(byName(`${'n'.repeat(90)}/${'m'.repeat(90)}`));
  t.truthy(byName(`long-target -> /${'t'.repeat(60)}/${'u'.repeat(60)}`));
  if (isRoot) {
    t.regex(byName(' null'), /^crw-rw-rw- 0\/0 +1,3 /);
    t.regex(byName(' etc/hosts'), /^-rw-r--r-- 1234\/5678 /);
    t.regex(byName(' tmp/'), / 3000000\/3000001 /);
  }
  t.is(lines.length, (await headersOf(tar)).length);
});

test('packLayer: GNU tar extracts our tar into the same tree when it restores xattrs', async (t) => {
  const tmp = await tempDir(t);
  const src = join(tmp, 'src');
  const out = join(tmp, 'out');
  mkdirSync(src);
  mkdirSync(out);
  makeFixtureTree(src);
  const { tar } = await packToBuffer(src, { mode: 'tree' });
  writeFileSync(join(tmp, 'l.tar'), tar);
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', join(tmp, 'l.tar'), '-C', out]);
  utimesSync(out, 1_600_000_000, 1_600_000_000);
  t.deepEqual(describeTree(out), describeTree(src));
});

test('packLayer: hardlinks become links to the first path in entry order', async (t) => {
  const dir = await tempDir(t);
  makeFixtureTree(dir);
  const headers = await headersOf((await packToBuffer(dir, { mode: 'tree' })).tar);
  const hosts = headers.filter((h) => ['etc/hosts', 'hosts-link', 'etc/sub/hosts-link2'].includes(h.name));
  t.deepEqual(hosts.map((h) => [h.name, h.type, h.linkname]), [
    ['etc/hosts', 'file', ''],
    ['etc/sub/hosts-link2', 'link', 'etc/hosts'],
    ['hosts-link', 'link', 'etc/hosts'],
  ]);
});

test('packLayer: mtimes are clamped to sourceDateEpoch and later touches do not change the diffID', async (t) => {
  const dir = await tempDir(t);
  makeFixtureTree(dir);
  const epoch = 1_600_000_000;
  utimesSync(join(dir, 'etc/empty'), epoch - 100, epoch - 100);
  const before = await packToBuffer(dir, { mode: 'tree', sourceDateEpoch: epoch });
  const headers = await headersOf(before.tar);
  t.true(headers.every((h) => h.mtime <= epoch));
  t.true(headers.some((h) => h.mtime < epoch), 'older mtimes are kept');
  const now = Date.now() / 1000;
  utimesSync(join(dir, 'etc/hosts'), now, now);
  utimesSync(join(dir, 'big.bin'), now, now);
  const after = await packToBuffer(dir, { mode: 'tree', sourceDateEpoch: epoch });
  t.is(after.result.diffId, before.result.diffId);
  const unclamped = await packToBuffer(dir, { mode: 'tree' });
  t.not(unclamped.result.diffId, before.result.diffId);
});

test('packLayer: xattrs are carried in PAX records when files have user xattrs', async (t) => {
  const dir = await tempDir(t);
  makeFixtureTree(dir);
  const headers = await headersOf((await packToBuffer(dir, { mode: 'tree' })).tar);
  const x = headers.find((h) => h.name === 'xattrs');
  t.deepEqual(x?.xattrs.map((a) => [a.name, a.value.toString('hex')]), [['user.binary', '00ff0a3d'], ['user.comment', Buffer.from('hello').toString('hex')]]);
  t.deepEqual(headers.find((h) => h.name === 'etc/')?.xattrs.map((a) => a.name), ['user.dir-attr']);
  if (isRoot) t.deepEqual(headers.find((h) => h.name === 'cap')?.xattrs.map((a) => a.name), ['security.capability']);
});

test('packLayer: changeset mode turns 0/0 char devices and opaque dirs into whiteouts when given an upperdir', async (t) => {
  if (!isRoot) return t.pass('needs root for mknod of a whiteout device');
  const dir = await tempDir(t);
  makeNode(join(dir, 'gone'), 'char', 0, 0, 0);
  mkdirSync(join(dir, 'opq'));
  setXattr(join(dir, 'opq'), 'trusted.overlay.opaque', Buffer.from('y'));
  writeFileSync(join(dir, 'opq', '-first'), '1');
  writeFileSync(join(dir, 'opq', 'kept'), '2');
  mkdirSync(join(dir, 'uopq'));
  setXattr(join(dir, 'uopq'), 'user.overlay.opaque', Buffer.from('y'));
  writeFileSync(join(dir, 'origin'), 'o');
  setXattr(join(dir, 'origin'), 'trusted.overlay.origin', Buffer.from('whatever'));
  setXattr(join(dir, 'origin'), 'user.overlay.impure', Buffer.from('y'));
  const headers = await headersOf((await packToBuffer(dir, { mode: 'changeset' })).tar);
  t.deepEqual(headers.map((h) => h.name), ['.wh.gone', 'opq/', 'opq/-first', 'opq/.wh..wh..opq', 'opq/kept', 'origin', 'uopq/', 'uopq/.wh..wh..opq']);
  t.true(headers.every((h) => h.xattrs.every((x) => !x.name.includes('overlay'))));
  const tree = await headersOf((await packToBuffer(dir, { mode: 'tree' })).tar);
  t.deepEqual(tree.map((h) => `${h.name}:${h.type}`), ['gone:char', 'opq/:directory', 'opq/-first:file', 'opq/kept:file', 'origin:file', 'uopq/:directory']);
});

test('packLayer: the stream errors and done rejects with LAYER_READ_FAILED when the directory is missing', async (t) => {
  const dir = await tempDir(t);
  const packed = packLayer(join(dir, 'missing'), { mode: 'tree' });
  await t.throwsAsync(collect(packed.stream), { code: 'LAYER_READ_FAILED' } as never);
  await t.throwsAsync(packed.done, { code: 'LAYER_READ_FAILED' } as never);
});

test('packLayer: done rejects and files are closed when the consumer destroys the stream early', async (t) => {
  const dir = await tempDir(t);
  for (let i = 0; i < 40; i++) writeFileSync(join(dir, `f${i}`), Buffer.alloc(200_000, i));
  const packed = packLayer(dir, { mode: 'tree' });
  for await (const _ of packed.stream) break;
  await t.throwsAsync(packed.done, { code: 'LAYER_PACK_ABORTED' } as never);
  rmSync(dir, { recursive: true });
  t.pass();
});

test('packLayer: the diffID is still the sha256 of the stream when the layer spans many output buffers (40 MB)', async (t) => {
  const dir = await tempDir(t);
  const big = Buffer.alloc(40 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  writeFileSync(join(dir, 'big'), big);
  writeFileSync(join(dir, 'small'), 'tail');
  const packed = packLayer(dir, { mode: 'tree' });
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of packed.stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  const result = await packed.done;
  t.is(result.diffId as string, `sha256:${hash.digest('hex')}`);
  t.is(result.size, size);
  t.is(result.entries, 2);
});

test('packLayer: fails with LAYER_UNSUPPORTED_OVERLAY when the upperdir uses redirect_dir', async (t) => {
  if (!isRoot) return t.pass('needs root for trusted.* xattrs');
  const dir = await tempDir(t);
  mkdirSync(join(dir, 'moved'));
  setXattr(join(dir, 'moved'), 'trusted.overlay.redirect', Buffer.from('/orig'));
  const packed = packLayer(dir, { mode: 'changeset' });
  await t.throwsAsync(collect(packed.stream), { code: 'LAYER_UNSUPPORTED_OVERLAY' } as never);
});

/** The read offset of this process's open descriptor of `path` (from /proc/self/fdinfo), or undefined. */
function readOffsetOf(path: string): number | undefined {
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the descriptor readdir itself used
    }
    if (target === path) return Number(/^pos:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1]);
  }
  return undefined;
}

test('packLayer: reading a big file stays a few MiB ahead of the consumer when the consumer pauses', async (t) => {
  const dir = await tempDir(t);
  const big = join(dir, 'big');
  writeFileSync(big, '');
  truncateSync(big, 256 * 1024 * 1024); // sparse: no disk space, but 256 MiB of content to stream
  const packed = packLayer(dir, { mode: 'tree' });
  t.teardown(() => packed.stream.destroy());
  const it = packed.stream[Symbol.asyncIterator]();
  let consumed = 0;
  for (let i = 0; i < 3; i++) consumed += ((await it.next()).value as Buffer).length;
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  const offset = readOffsetOf(realpathSync(big));
  t.not(offset, undefined, 'the big file is open while it is being streamed');
  // Bytes read from the file but not yet consumed: the stream buffer, the batcher and the hash backlog.
  t.true((offset as number) - consumed < 32 * 1024 * 1024, `read ${offset} bytes of the file, consumer took ${consumed}`);
  await it.return?.();
});
