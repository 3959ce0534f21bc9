import {
  chmodSync, constants, copyFileSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, readdirSync, readlinkSync, symlinkSync,
  type BigIntStats, type Stats,
} from 'node:fs';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { SysCallError, makeNode, readXattrs, setXattr, splitDev } from '../sys/index.js';

/** Options of {@link copyTree} and {@link copyEntry}. */
export interface CopyOptions {
  /** Restore owners and create device nodes (running as uid 0). Otherwise owners stay ours and devices are skipped. */
  readonly privileged: boolean;
  /** Collects non-fatal problems (skipped devices, refused xattrs). */
  readonly warnings?: string[];
}

function warn(options: CopyOptions, message: string): void {
  if (options.warnings !== undefined && options.warnings.length < 100) options.warnings.push(message);
}

function wrap(err: unknown, what: string): TsbuildError {
  if (err instanceof TsbuildError) return err;
  return new TsbuildError('SNAPSHOT_COPY_FAILED', `${what}: ${(err as Error).message}`, { cause: err });
}

/** Copies owner (when privileged), mode, xattrs and times of `st` onto `dst` (never following a final symlink). */
export function copyMetadata(src: string, dst: string, st: Stats | BigIntStats, options: CopyOptions): void {
  if (options.privileged) lchownSync(dst, Number(st.uid), Number(st.gid));
  if (!st.isSymbolicLink()) chmodSync(dst, Number(st.mode) & 0o7777); // after chown, which clears setuid/setgid
  for (const x of readXattrs(src)) {
    if (st.isSymbolicLink() && x.name.startsWith('user.')) continue;
    try {
      setXattr(dst, x.name, x.value);
    } catch (err) {
      warn(options, `could not copy xattr ${x.name} to ${dst}: ${(err as Error).message}`);
    }
  }
  const atime = Number(st.atimeMs) / 1000;
  const mtime = Number(st.mtimeMs) / 1000;
  lutimesSync(dst, atime, mtime);
}

/**
 * Copies one non-directory entry `src` (lstat `st`) to the new name `dst`: files (reflinked where the
 * file system can), symlinks (the target is data, never followed), fifos and device nodes, with
 * owners, modes, xattrs and times. Sockets are skipped. Returns false when nothing was created.
 */
export function copyEntry(src: string, dst: string, st: Stats | BigIntStats, options: CopyOptions): boolean {
  if (st.isFile()) {
    // SECURITY: `st` says regular file; the tree must not be changed meanwhile (callers copy trees
    // no process is running in), otherwise a swapped-in symlink could be followed here.
    copyFileSync(src, dst, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
  } else if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(src), dst);
  } else if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
    const kind = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : 'block';
    const { major, minor } = kind === 'fifo' ? { major: 0, minor: 0 } : splitDev(st.rdev);
    try {
      makeNode(dst, kind, 0o600, major, minor);
    } catch (err) {
      if (!(err instanceof SysCallError && err.errnoName === 'EPERM')) throw err;
      warn(options, `skipped device node ${src} (${major}:${minor}): mknod not permitted`);
      return false;
    }
  } else {
    return false; // sockets are not file system content
  }
  copyMetadata(src, dst, st, options);
  return true;
}

/**
 * Copies the directory tree `src` to `dst` (which must not exist), preserving modes, owners (when
 * privileged), xattrs, mtimes, hardlinks (within the tree), symlinks and special files.
 * Synchronous; throws SNAPSHOT_COPY_FAILED naming the failing path.
 */
export function copyTree(src: string, dst: string, options: CopyOptions): void {
  const links = new Map<string, string>();
  const copyDir = (s: string, d: string, st: Stats): void => {
    mkdirSync(d, 0o700);
    for (const name of readdirSync(s)) {
      const sp = join(s, name);
      const dp = join(d, name);
      let cst: Stats;
      try {
        cst = lstatSync(sp);
        if (cst.isDirectory()) {
          copyDir(sp, dp, cst);
          continue;
        }
        if (cst.nlink > 1) {
          const key = `${cst.dev}:${cst.ino}`;
          const first = links.get(key);
          if (first !== undefined) {
            linkSync(first, dp);
            continue;
          }
          links.set(key, dp);
        }
        copyEntry(sp, dp, cst, options);
      } catch (err) {
        throw wrap(err, `cannot copy ${sp} to ${dp}`);
      }
    }
    try {
      copyMetadata(s, d, st, options);
    } catch (err) {
      throw wrap(err, `cannot copy the metadata of ${s}`);
    }
  };
  let rootStat: Stats;
  try {
    rootStat = lstatSync(src);
  } catch (err) {
    throw wrap(err, `cannot read ${src}`);
  }
  if (!rootStat.isDirectory()) throw new TsbuildError('SNAPSHOT_COPY_FAILED', `${src} is not a directory`);
  try {
    copyDir(src, dst, rootStat);
  } catch (err) {
    throw wrap(err, `cannot copy ${src} to ${dst}`);
  }
}
