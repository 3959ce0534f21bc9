import { createRequire } from 'node:module';
import { TsbuildError } from '../core/index.js';

type Koffi = typeof import('koffi');

// koffi (a native addon, ~20-40 ms to load and bind) is required on the first xattr/mknod call, not
// at start: most commands (images, ps, run of a cached image) never make one.
const requireFromHere = createRequire(import.meta.url);

/** Loads koffi (cached by Node's require cache after the first call). */
function loadKoffi(): Koffi {
  return requireFromHere('koffi') as Koffi;
}

/** The subset of libc that Node lacks (xattrs, mknod), bound once per process through koffi. */
export interface Libc {
  readonly lgetxattr: (path: string, name: string, value: Buffer | null, size: number) => number;
  readonly lsetxattr: (path: string, name: string, value: Buffer, size: number, flags: number) => number;
  readonly llistxattr: (path: string, list: Buffer | null, size: number) => number;
  readonly lremovexattr: (path: string, name: string) => number;
  readonly mknod: (path: string, mode: number, dev: bigint) => number;
  readonly fgetxattr: (fd: number, name: string, value: Buffer | null, size: number) => number;
  readonly flistxattr: (fd: number, list: Buffer | null, size: number) => number;
}

/** errno values used by callers (Linux numbering). */
export const ERRNO = {
  EPERM: 1, ENOENT: 2, EEXIST: 17, ENOTDIR: 20, EINVAL: 22, ERANGE: 34, ENAMETOOLONG: 36, ENODATA: 61, ENOTSUP: 95,
} as const;

/** Binds the libc functions; throws `CORE_FFI_UNAVAILABLE` when libc cannot be loaded. */
export function bindLibc(): Libc {
  try {
    const lib = loadKoffi().load('libc.so.6');
    return {
      lgetxattr: lib.func('intptr_t lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)'),
      lsetxattr: lib.func('int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)'),
      llistxattr: lib.func('intptr_t llistxattr(const char *path, _Out_ uint8_t *list, size_t size)'),
      lremovexattr: lib.func('int lremovexattr(const char *path, const char *name)'),
      mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
      fgetxattr: lib.func('intptr_t fgetxattr(int fd, const char *name, _Out_ uint8_t *value, size_t size)'),
      flistxattr: lib.func('intptr_t flistxattr(int fd, _Out_ uint8_t *list, size_t size)'),
    };
  } catch (cause) {
    throw new TsbuildError('CORE_FFI_UNAVAILABLE', 'cannot load libc.so.6 through koffi for xattr/mknod calls', { cause });
  }
}

/** Returns a Libc whose functions bind libc on their first call (once per process; about 20 ms). */
function bindLibcLazily(): Libc {
  let bound: Libc | undefined;
  const get = (): Libc => (bound ??= bindLibc());
  return {
    lgetxattr: (path, name, value, size) => get().lgetxattr(path, name, value, size),
    lsetxattr: (path, name, value, size, flags) => get().lsetxattr(path, name, value, size, flags),
    llistxattr: (path, list, size) => get().llistxattr(path, list, size),
    lremovexattr: (path, name) => get().lremovexattr(path, name),
    mknod: (path, mode, dev) => get().mknod(path, mode, dev),
    fgetxattr: (fd, name, value, size) => get().fgetxattr(fd, name, value, size),
    flistxattr: (fd, list, size) => get().flistxattr(fd, list, size),
  };
}

/** The process-wide libc binding (immutable; bound on its first call). */
export const LIBC: Libc = bindLibcLazily();

/** Returns the errno of the last failed FFI call on this thread. */
export function lastErrno(): number {
  return loadKoffi().errno();
}

/** A failed system call; `errnoName` is the symbolic errno (`ENOENT`), `errno` its number. */
export class SysCallError extends TsbuildError {
  readonly errno: number;
  readonly errnoName: string;
  readonly syscall: string;
  readonly path: string;

  constructor(syscall: string, path: string, errno: number) {
    const name = getErrnoName(errno);
    super('CORE_SYSCALL', `${syscall} ${JSON.stringify(path)} failed: ${name} (${describeErrno(name)})`);
    this.errno = errno;
    this.errnoName = name;
    this.syscall = syscall;
    this.path = path;
  }
}

function describeErrno(name: string): string {
  const text: Record<string, string> = {
    EPERM: 'operation not permitted', EACCES: 'permission denied', ENOENT: 'no such file or directory',
    EEXIST: 'file exists', ENOTDIR: 'not a directory', EINVAL: 'invalid argument', ERANGE: 'buffer too small',
    ENAMETOOLONG: 'name too long', ENODATA: 'no such attribute', ENOTSUP: 'not supported by this file system',
    EOPNOTSUPP: 'not supported by this file system', ENOSPC: 'no space left', E2BIG: 'attribute too big',
  };
  return text[name] ?? 'system call failed';
}

/** Returns the symbolic name of an errno value (e.g. `ENOENT`), or `E<number>`. */
export function getErrnoName(errno: number): string {
  for (const [name, value] of Object.entries(loadKoffi().os.errno)) if (value === errno) return name;
  return `E${errno}`;
}
