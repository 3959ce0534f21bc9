/**
 * The merged view of a container's layers (its overlay upperdir over the image's lowerdirs) read
 * without a mount, as the kernel's overlayfs shows it: the nearest layer's entry wins, a 0/0
 * character device hides a name, a non-directory hides lower directories, an opaque directory
 * stops the merge. Used by `export` and `cp` (also on stopped containers).
 */
import { chmodSync, chownSync, closeSync, copyFileSync, constants, fstatSync, openSync, lchownSync, linkSync, lutimesSync, lstatSync, mkdirSync, readdirSync, readlinkSync, statSync, symlinkSync, utimesSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { getXattr, makeNode, splitDev } from '../sys/index.js';

/** A container's layers, nearest (the writable layer) first. */
export interface MergedLayers {
  readonly layers: readonly string[];
  /** Namespace of the overlay xattrs (`user` for userxattr mounts). */
  readonly xattrPrefix: 'trusted' | 'user';
}

/** A name of the merged view. */
export interface MergedEntry {
  /** The logical path inside the container, symlinks resolved (no `.`, `..` or links among the parents). */
  readonly parts: readonly string[];
  /** The host path of the winning layer's entry, and its lstat. */
  readonly host: string;
  readonly stat: Stats;
  /** For a directory: the indexes of the layers whose directories merge here, nearest first. */
  readonly dirLayers: readonly number[];
}

const MAX_SYMLINK_HOPS = 40;

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function isOpaque(m: MergedLayers, path: string): boolean {
  try {
    return getXattr(path, `${m.xattrPrefix}.overlay.opaque`)?.toString() === 'y';
  } catch {
    return false;
  }
}

/** The root directory of the merged view. */
export function mergedRoot(m: MergedLayers): MergedEntry {
  // The layer roots themselves may be links (the snapshotter's short l/ names, /proc/PID/root): followed.
  const top = m.layers[0];
  const stat = top === undefined ? undefined : statOrUndefined(top);
  if (top === undefined || stat === undefined) throw new TsbuildError('RUN_LAYER_GONE', 'the container\'s writable layer is gone', { exitCode: 1 });
  const dirLayers: number[] = [];
  for (const [i, l] of m.layers.entries()) {
    if (statOrUndefined(l)?.isDirectory() !== true) break;
    dirLayers.push(i);
  }
  return { parts: [], host: top, stat, dirLayers };
}

/** The entry `name` of directory `dir` in the merged view; undefined when it does not exist or is whited out. */
export function mergedChild(m: MergedLayers, dir: MergedEntry, name: string): MergedEntry | undefined {
  const parts = [...dir.parts, name];
  for (const [k, li] of dir.dirLayers.entries()) {
    const host = join(m.layers[li] as string, ...parts);
    const stat = lstatOrUndefined(host);
    if (stat === undefined) continue;
    if (isWhiteout(stat)) return undefined;
    const dirLayers: number[] = [];
    if (stat.isDirectory()) {
      for (const lj of dir.dirLayers.slice(k)) {
        const p = join(m.layers[lj] as string, ...parts);
        const st = lstatOrUndefined(p);
        if (st === undefined) continue;
        if (!st.isDirectory()) break;
        dirLayers.push(lj);
        if (isOpaque(m, p)) break;
      }
    }
    return { parts, host, stat, dirLayers };
  }
  return undefined;
}

/**
 * Resolves `path` in the merged view: `..` and absolute symlink targets stop at the container's
 * root, intermediate symlinks are followed (at most 40), the last one only with `followFinal`.
 * Returns undefined when a name is missing; `parent` is the directory the last name is (or
 * would be) in, undefined when a parent is missing too. Throws RUN_BAD_PATH on a symlink loop or
 * a parent that is not a directory.
 * SECURITY: only the layers are ever looked at; nothing outside them is reached through a link.
 */
export function resolveMerged(m: MergedLayers, path: string, followFinal: boolean): { entry: MergedEntry | undefined; parent: MergedEntry | undefined; name: string } {
  let pending = path.split('/').filter((c) => c !== '' && c !== '.');
  let hops = 0;
  restart: for (;;) {
    let cur = mergedRoot(m);
    const stack: MergedEntry[] = [];
    for (let i = 0; i < pending.length; i++) {
      const c = pending[i] as string;
      const last = i === pending.length - 1;
      if (c === '..') {
        cur = stack.pop() ?? cur;
        if (last) return { entry: cur, parent: stack[stack.length - 1], name: cur.parts[cur.parts.length - 1] ?? '' };
        continue;
      }
      if (!cur.stat.isDirectory()) throw new TsbuildError('RUN_BAD_PATH', `${path}: not a directory in the container`, { exitCode: 1 });
      const child = mergedChild(m, cur, c);
      if (child === undefined) return { entry: undefined, parent: last ? cur : undefined, name: c };
      if (child.stat.isSymbolicLink() && (!last || followFinal)) {
        if (++hops > MAX_SYMLINK_HOPS) throw new TsbuildError('RUN_BAD_PATH', `${path}: too many levels of symbolic links in the container`, { exitCode: 1 });
        const target = readlinkSync(child.host);
        pending = [...(target.startsWith('/') ? [] : cur.parts), ...target.split('/').filter((x) => x !== '' && x !== '.'), ...pending.slice(i + 1)];
        continue restart;
      }
      if (last) return { entry: child, parent: cur, name: c };
      stack.push(cur);
      cur = child;
    }
    return { entry: cur, parent: stack[stack.length - 1], name: cur.parts[cur.parts.length - 1] ?? '' };
  }
}

/** Copies owner, mode and times of `st` to `dest` (owner only when `privileged`). */
function copyAttributes(dest: string, st: Stats, privileged: boolean): void {
  if (privileged) chownSync(dest, st.uid, st.gid);
  chmodSync(dest, st.mode & 0o7777);
  utimesSync(dest, st.atime, st.mtime);
}

/**
 * Recreates the merged subtree of `entry` at `dest` (which must not exist), cheaply: regular files
 * are hard links to the layers' files (a copy when linking is refused), directories, symlinks,
 * FIFOs and (when `privileged`) device nodes are made anew with the same attributes. The result
 * shares inodes with the layers: read it, never modify it. Sockets are skipped.
 */
export function materializeMerged(m: MergedLayers, entry: MergedEntry, dest: string, privileged: boolean): void {
  const st = entry.stat;
  if (st.isDirectory()) {
    mkdirSync(dest, { mode: 0o700 });
    const seen = new Set<string>();
    for (const li of entry.dirLayers) {
      for (const name of readdirSync(join(m.layers[li] as string, ...entry.parts))) {
        if (seen.has(name)) continue;
        seen.add(name);
        const child = mergedChild(m, entry, name);
        if (child !== undefined) materializeMerged(m, child, join(dest, name), privileged);
      }
    }
    copyAttributes(dest, st, privileged);
  } else if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(entry.host), dest);
    if (privileged) lchownSync(dest, st.uid, st.gid);
    lutimesSync(dest, st.atime, st.mtime);
  } else if (st.isFile()) {
    try {
      linkSync(entry.host, dest);
    } catch {
      // SECURITY: opened without following a link swapped in meanwhile, then copied from that very file.
      const fd = openSync(entry.host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        if (!fstatSync(fd).isFile()) throw new TsbuildError('RUN_BAD_PATH', `/${entry.parts.join('/')} changed while it was copied`, { exitCode: 1 });
        copyFileSync(`/proc/self/fd/${fd}`, dest, constants.COPYFILE_EXCL);
      } finally {
        closeSync(fd);
      }
      copyAttributes(dest, st, privileged);
    }
  } else if (st.isFIFO() || ((st.isCharacterDevice() || st.isBlockDevice()) && privileged)) {
    const { major, minor } = splitDev(BigInt(st.rdev));
    makeNode(dest, st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : 'block', st.mode, major, minor);
    copyAttributes(dest, st, privileged);
  }
}
