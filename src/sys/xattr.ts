import { ERRNO, LIBC, SysCallError, lastErrno } from './libc.js';
const INITIAL_BUFFER = 1024;
const MAX_XATTR = 64 * 1024 * 1024;

/** One extended attribute: its full name (`user.foo`) and raw value. */
export interface Xattr {
  readonly name: string;
  readonly value: Buffer;
}

/**
 * Lists the xattr names of `path` without following a final symlink (llistxattr).
 * Returns [] when the file system does not support xattrs; throws {@link SysCallError} otherwise.
 */
export function listXattrNames(path: string): string[] {
  let size = INITIAL_BUFFER;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    const n = LIBC.llistxattr(path, buf, size);
    if (n >= 0) return n === 0 ? [] : buf.toString('utf8', 0, n - 1).split('\0');
    const errno = lastErrno();
    if (errno === ERRNO.ENOTSUP) return [];
    if (errno !== ERRNO.ERANGE || size >= MAX_XATTR) throw new SysCallError('llistxattr', path, errno);
    size = Math.max(size * 4, LIBC.llistxattr(path, null, 0));
  }
}

/** Reads one xattr of `path` (lgetxattr); returns undefined when it is absent or unsupported. */
export function getXattr(path: string, name: string): Buffer | undefined {
  let size = INITIAL_BUFFER;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    const n = LIBC.lgetxattr(path, name, buf, size);
    if (n >= 0) return buf.subarray(0, n);
    const errno = lastErrno();
    if (errno === ERRNO.ENODATA || errno === ERRNO.ENOTSUP) return undefined;
    if (errno !== ERRNO.ERANGE || size >= MAX_XATTR) throw new SysCallError(`lgetxattr(${name})`, path, errno);
    size = Math.max(size * 4, LIBC.lgetxattr(path, name, null, 0));
  }
}

/** Reads every xattr of `path` (not following a final symlink), names sorted bytewise. */
export function readXattrs(path: string): Xattr[] {
  const out: Xattr[] = [];
  for (const name of listXattrNames(path).sort(compareBytewise)) {
    const value = getXattr(path, name);
    if (value !== undefined) out.push({ name, value });
  }
  return out;
}

/** Sets an xattr on `path` without following a final symlink (lsetxattr); throws {@link SysCallError}. */
export function setXattr(path: string, name: string, value: Buffer): void {
  if (LIBC.lsetxattr(path, name, value, value.length, 0) !== 0) throw new SysCallError(`lsetxattr(${name})`, path, lastErrno());
}

/** Removes an xattr from `path` (lremovexattr); absent attributes are not an error. */
export function removeXattr(path: string, name: string): void {
  if (LIBC.lremovexattr(path, name) === 0) return;
  const errno = lastErrno();
  if (errno !== ERRNO.ENODATA) throw new SysCallError(`lremovexattr(${name})`, path, errno);
}

/** Orders strings by their UTF-8 bytes (what a deterministic tar needs), not by UTF-16 code units. */
export function compareBytewise(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
