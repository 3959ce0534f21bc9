import { execFileSync } from 'node:child_process';
import { chmodSync, linkSync, lchownSync, lutimesSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeNode, setXattr } from '../../src/sys/index.js';

/** True when running as root (owners, devices, security.capability). */
export const isRoot = process.getuid?.() === 0;

/** A file-capability value (cap_net_bind_service+ep, VFS_CAP_REVISION_2). */
export const CAPABILITY = Buffer.from('0100000200040000000000000000000000000000', 'hex');

/**
 * Fills `dir` with every kind of entry a layer must carry: nested dirs, empty and >1 MiB files,
 * hardlinks, symlinks (one with a >100-byte target), a fifo, devices (root), xattrs, special
 * mode bits, a >100-byte name, non-ASCII names, odd owners (root) and fixed mtimes.
 */
export function makeFixtureTree(dir: string): void {
  mkdirSync(join(dir, 'etc/sub'), { recursive: true });
  mkdirSync(join(dir, 'tmp'));
  writeFileSync(join(dir, 'etc/hosts'), '127.0.0.1 localhost\n');
  writeFileSync(join(dir, 'etc/empty'), '');
  const big = Buffer.alloc(1024 * 1024 + 4097);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  writeFileSync(join(dir, 'big.bin'), big);
  writeFileSync(join(dir, 'suid'), '#!/bin/sh\n');
  chmodSync(join(dir, 'suid'), 0o4755);
  writeFileSync(join(dir, 'sgid'), 'g');
  chmodSync(join(dir, 'sgid'), 0o2711);
  chmodSync(join(dir, 'tmp'), 0o1777);
  linkSync(join(dir, 'etc/hosts'), join(dir, 'hosts-link'));
  linkSync(join(dir, 'etc/hosts'), join(dir, 'etc/sub/hosts-link2'));
  symlinkSync('../etc/hosts', join(dir, 'etc/sub/rel'));
  symlinkSync('/nonexistent/absolute', join(dir, 'dangling'));
  const longTarget = `/${'t'.repeat(60)}/${'u'.repeat(60)}`;
  symlinkSync(longTarget, join(dir, 'long-target'));
  const longName = `${'n'.repeat(90)}/${'m'.repeat(90)}`;
  mkdirSync(join(dir, 'n'.repeat(90)));
  writeFileSync(join(dir, longName), 'long name');
  writeFileSync(join(dir, 'héllo wörld ✓'), 'utf8');
  writeFileSync(join(dir, 'Zcase'), 'upper');
  writeFileSync(join(dir, 'a-b'), 'dash sorts before slash');
  makeNode(join(dir, 'fifo'), 'fifo', 0o640);
  chmodSync(join(dir, 'fifo'), 0o640);
  writeFileSync(join(dir, 'xattrs'), 'x');
  setXattr(join(dir, 'xattrs'), 'user.comment', Buffer.from('hello'));
  setXattr(join(dir, 'xattrs'), 'user.binary', Buffer.from([0, 255, 10, 61]));
  setXattr(join(dir, 'etc'), 'user.dir-attr', Buffer.from('d'));
  if (isRoot) {
    makeNode(join(dir, 'null'), 'char', 0o666, 1, 3);
    makeNode(join(dir, 'blk'), 'block', 0o660, 7, 0);
    chmodSync(join(dir, 'null'), 0o666);
    chmodSync(join(dir, 'blk'), 0o660);
    writeFileSync(join(dir, 'cap'), 'cap');
    setXattr(join(dir, 'cap'), 'security.capability', CAPABILITY);
    lchownSync(join(dir, 'etc/hosts'), 1234, 5678);
    lchownSync(join(dir, 'etc/sub/rel'), 42, 43);
    lchownSync(join(dir, 'tmp'), 3_000_000, 3_000_001);
  }
  // Fixed mtimes, deepest first so that parents keep theirs.
  const t = 1_600_000_000;
  const entries = execFileSync('find', [dir, '-depth', '-print0']).toString().split('\0').filter((p) => p !== '');
  for (const [i, p] of entries.entries()) {
    lutimesSync(p, t + i, t + i);
  }
  utimesSync(dir, t, t);
}
