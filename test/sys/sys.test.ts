import test from 'ava';
import { spawn } from 'node:child_process';
import { lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import {
  SysCallError, compareBytewise, getXattr, isPidRunning, readProcStat, listXattrNames, makeDev, makeNode, readXattrs, removeXattr, setXattr, splitDev,
} from '../../src/sys/index.js';

const isRoot = process.getuid?.() === 0;

test('xattr: set, list, get and remove round-trip when the file system supports user xattrs', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'f');
  writeFileSync(file, 'x');
  t.deepEqual(listXattrNames(file), []);
  setXattr(file, 'user.b', Buffer.from('two'));
  setXattr(file, 'user.a', Buffer.from([0, 1, 2, 255]));
  t.deepEqual(listXattrNames(file).sort(), ['user.a', 'user.b']);
  t.deepEqual(getXattr(file, 'user.a'), Buffer.from([0, 1, 2, 255]));
  t.is(getXattr(file, 'user.missing'), undefined);
  t.deepEqual(readXattrs(file).map((x) => x.name), ['user.a', 'user.b']);
  removeXattr(file, 'user.a');
  removeXattr(file, 'user.a');
  t.deepEqual(listXattrNames(file), ['user.b']);
});

test('xattr: large values are read completely when they exceed the first buffer', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'f');
  writeFileSync(file, '');
  const big = Buffer.alloc(2000, 7);
  setXattr(file, 'user.big', big);
  for (let i = 0; i < 12; i++) setXattr(file, `user.${'n'.repeat(100)}${i}`, Buffer.from('v'));
  t.deepEqual(getXattr(file, 'user.big'), big);
  t.is(listXattrNames(file).length, 13);
});

test('xattr: errors carry the errno name and the path when the call fails', async (t) => {
  const dir = await tempDir(t);
  const err = t.throws(() => setXattr(join(dir, 'nope'), 'user.a', Buffer.from('x')), { instanceOf: SysCallError });
  t.is(err?.errnoName, 'ENOENT');
  t.is(err?.code, 'CORE_SYSCALL');
  t.regex(err?.message ?? '', /nope.*ENOENT/);
});

test('xattr: calls do not follow a final symlink when the path is a symlink', async (t) => {
  const dir = await tempDir(t);
  writeFileSync(join(dir, 'target'), '');
  setXattr(join(dir, 'target'), 'user.t', Buffer.from('1'));
  symlinkSync('target', join(dir, 'link'));
  t.deepEqual(listXattrNames(join(dir, 'link')), []);
  t.is(getXattr(join(dir, 'link'), 'user.t'), undefined);
});

test('device: makeDev and splitDev are inverse when numbers are large', (t) => {
  for (const [ma, mi] of [[0, 0], [1, 3], [4095, 255], [259, 1048575], [70000, 300]] as const) {
    t.deepEqual(splitDev(makeDev(ma, mi)), { major: ma, minor: mi });
  }
});

test('device: makeNode creates a fifo when asked for one', async (t) => {
  const dir = await tempDir(t);
  makeNode(join(dir, 'p'), 'fifo', 0o640);
  t.true(lstatSync(join(dir, 'p')).isFIFO());
  const err = t.throws(() => makeNode(join(dir, 'p'), 'fifo', 0o640), { instanceOf: SysCallError });
  t.is(err?.errnoName, 'EEXIST');
});

testIf(isRoot ? undefined : 'needs root for mknod of devices', 'device: makeNode creates char and block devices when root', async (t) => {
  const dir = await tempDir(t);
  makeNode(join(dir, 'null'), 'char', 0o666, 1, 3);
  makeNode(join(dir, 'blk'), 'block', 0o600, 259, 1048575);
  const c = lstatSync(join(dir, 'null'));
  t.true(c.isCharacterDevice());
  t.deepEqual(splitDev(c.rdev), { major: 1, minor: 3 });
  const b = lstatSync(join(dir, 'blk'));
  t.true(b.isBlockDevice());
  t.deepEqual(splitDev(b.rdev), { major: 259, minor: 1048575 });
});

test('compareBytewise: orders by UTF-8 bytes when UTF-16 order differs', (t) => {
  const names = ['\u{10000}', '\uffff', 'a', 'B'];
  t.deepEqual([...names].sort(compareBytewise), ['B', 'a', '\uffff', '\u{10000}']);
});

test('isPidRunning: true for a running process, false for a zombie, a gone pid and a reused pid (other start time)', async (t) => {
  t.true(isPidRunning(process.pid));
  const self = readProcStat(process.pid);
  t.truthy(self);
  t.true(isPidRunning(process.pid, self?.startTime));
  t.false(isPidRunning(process.pid, `${Number(self?.startTime) + 1}`), 'same pid, other start time: a reused pid');
  t.false(isPidRunning(0));
  t.false(isPidRunning(2 ** 22 + 1), 'above pid_max');
  // `sleep` is the parent of an exited, never-reaped child: that child stays a zombie.
  const parent = spawn('/bin/sh', ['-c', '/bin/true & exec /bin/sleep 60']);
  t.teardown(() => parent.kill('SIGKILL'));
  let zombie = 0;
  for (let i = 0; i < 200 && zombie === 0; i++) {
    const children = readFileSync(`/proc/${parent.pid as number}/task/${parent.pid as number}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '');
    const c = Number(children[0] ?? 0);
    if (c > 0 && readProcStat(c)?.state === 'Z') zombie = c;
    else await new Promise((r) => setTimeout(r, 25));
  }
  t.not(zombie, 0, 'the child became a zombie');
  t.false(isPidRunning(zombie), 'a zombie waiting to be reaped is not running');
  t.true(isPidRunning(parent.pid as number));
});
