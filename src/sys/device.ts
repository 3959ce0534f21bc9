import { constants } from 'node:fs';
import { LIBC, SysCallError, lastErrno } from './libc.js';

/** Kinds of special files that {@link makeNode} creates. */
export type NodeKind = 'char' | 'block' | 'fifo';

/** Encodes a device number the way glibc's makedev() does. */
export function makeDev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & 0xfffff000n) << 32n) | (mi & 0xffn) | ((mi & 0xffffff00n) << 12n);
}

/** Splits a `stat.rdev` value into major and minor numbers (glibc major()/minor()). */
export function splitDev(rdev: number | bigint): { major: number; minor: number } {
  const d = BigInt(rdev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n));
  const minor = Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n));
  return { major, minor };
}

/**
 * Creates a device node or fifo at `path` with permission bits `mode` (mknod; the umask applies).
 * Never follows a symlink (mknod fails with EEXIST on any existing name); throws {@link SysCallError}
 * (EPERM for devices when not privileged).
 */
export function makeNode(path: string, kind: NodeKind, mode: number, major = 0, minor = 0): void {
  const type = kind === 'char' ? constants.S_IFCHR : kind === 'block' ? constants.S_IFBLK : constants.S_IFIFO;
  const dev = kind === 'fifo' ? 0n : makeDev(major, minor);
  if (LIBC.mknod(path, type | (mode & 0o7777), dev) !== 0) throw new SysCallError(`mknod(${kind} ${major}:${minor})`, path, lastErrno());
}
