import { ERRNO, LIBC, SysCallError, lastErrno } from './libc.js';
const INITIAL_BUFFER = 1024;
const MAX_XATTR = 64 * 1024 * 1024;

/** One extended attribute: its full name (`user.foo`) and raw value. */
export interface Xattr {
  readonly name: string;
  readonly value: Buffer;
}

type Target = string | number;

function list(target: Target, buf: Buffer | null, size: number): number {
  return typeof target === 'number' ? LIBC.flistxattr(target, buf, size) : LIBC.llistxattr(target, buf, size);
}

function get(target: Target, name: string, buf: Buffer | null, size: number): number {
  return typeof target === 'number' ? LIBC.fgetxattr(target, name, buf, size) : LIBC.lgetxattr(target, name, buf, size);
}

function describeTarget(target: Target): string {
  return typeof target === 'number' ? `fd ${target}` : target;
}

/**
 * Lists the xattr names of a path (llistxattr: a final symlink is not followed) or of an open fd
 * (flistxattr). Returns [] when the file system does not support xattrs; throws {@link SysCallError} otherwise.
 */
export function listXattrNames(target: string | number): string[] {
  let size = INITIAL_BUFFER;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    const n = list(target, buf, size);
    if (n >= 0) return n === 0 ? [] : buf.toString('utf8', 0, n - 1).split('\0');
    const errno = lastErrno();
    if (errno === ERRNO.ENOTSUP) return [];
    if (errno !== ERRNO.ERANGE || size >= MAX_XATTR) throw new SysCallError(typeof target === 'number' ? 'flistxattr' : 'llistxattr', describeTarget(target), errno);
    size = Math.max(size * 4, list(target, null, 0));
  }
}

/** Reads one xattr of a path (lgetxattr) or open fd (fgetxattr); undefined when it is absent or unsupported. */
export function getXattr(target: string | number, name: string): Buffer | undefined {
  let size = INITIAL_BUFFER;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    const n = get(target, name, buf, size);
    if (n >= 0) return buf.subarray(0, n);
    const errno = lastErrno();
    if (errno === ERRNO.ENODATA || errno === ERRNO.ENOTSUP) return undefined;
    if (errno !== ERRNO.ERANGE || size >= MAX_XATTR) throw new SysCallError(`${typeof target === 'number' ? 'f' : 'l'}getxattr(${name})`, describeTarget(target), errno);
    size = Math.max(size * 4, get(target, name, null, 0));
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
