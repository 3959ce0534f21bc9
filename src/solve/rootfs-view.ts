import {
  chmodSync, closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, lstatSync, lutimesSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync,
  readSync, rmSync, symlinkSync, writeSync, type Stats,
} from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { getXattr, setXattr } from '../sys/index.js';

/** Owner and mode of something written into a root file system. */
export interface WriteMeta {
  readonly uid: number;
  readonly gid: number;
  /** Permission bits (incl. setuid/setgid/sticky). */
  readonly mode: number;
  /** Seconds since the epoch; undefined keeps "now". */
  readonly mtime?: number;
}

/** One file for {@link RootfsView.writeFiles}. */
export interface FileWrite {
  /** Canonical destination components (parents must exist in the top layer). */
  readonly parts: readonly string[];
  /** The host file to copy. */
  readonly source: string;
  readonly meta: WriteMeta;
  /** The size the source had when it was selected (picks the copy method; the copy never trusts it). */
  readonly size: number;
}

/** An entry found in the merged view. */
export interface ViewEntry {
  /** Index of the layer that shows it (0 = top). */
  readonly layer: number;
  readonly hostPath: string;
  readonly stat: Stats;
}

const MAX_LINKS = 40;
/** Files up to this size are copied synchronously through one buffer; larger ones by the kernel (copy_file_range) in the thread pool. */
const SMALL_FILE = 256 * 1024;
/** Large files copied at the same time (the thread pool has 4 threads). */
const BIG_CONCURRENCY = 2;
/** Small files copied between two turns of the event loop (keeps progress output and signals alive). */
const SMALL_BATCH = 128;
// SECURITY: never follow a symlink swapped in for a source file, never write through one at the destination.
const SRC_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;
const DST_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Entries of {@link lowerStats} (cleared when full): a build's lookups in each of its layers. */
const CACHED_STATS = 8192;
/**
 * lstat results (undefined: missing) and opaque flags (`opaque:` keys) of paths in committed layers,
 * which never change, by host path (a layer's directory is its own). Every RUN (USER) and COPY
 * --chown looks up /etc/passwd and /etc/group, component by component in every layer (~2 ms at 20
 * layers): with this, only the step's own top layer and a newly committed layer are asked.
 */
const lowerStats = new Map<string, Stats | boolean | undefined>();

function remember<T extends Stats | boolean | undefined>(key: string, value: T): T {
  if (lowerStats.size >= CACHED_STATS) lowerStats.clear();
  lowerStats.set(key, value);
  return value;
}

function tryLstat(path: string): Stats | undefined {
  try {
    // A missing path is the common answer in a layer: no exception (with its stack) for it.
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw ioError(`cannot read ${path}`, e);
  }
}

function ioError(what: string, cause: unknown): TsbuildError {
  return new TsbuildError('SOLVE_IO', `${what}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause });
}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** Splits an absolute path into its components (`/` -> []). */
function componentsOf(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * A root file system seen through its layer directories the way overlayfs merges them (top first:
 * whiteouts hide lower entries, opaque directories hide lower contents), without mounting
 * anything. A naive snapshot is a view of one directory. Writes go to the top directory, which
 * must be the writable upperdir (or the naive copy); directories of lower layers are copied up.
 * SECURITY: paths are resolved lexically inside the view (symlinks included, `..` stops at the
 * root), so nothing outside the layer directories is ever touched.
 */
export class RootfsView {
  readonly #opaqueXattr: string;
  /** Deferred mode ({@link deferFiles}): files recorded instead of copied, by `parts.join('/')`. */
  #deferred: Map<string, FileWrite> | undefined;
  /** Deferred mode: paths this view created in the top layer (directories, symlinks). */
  readonly #made = new Set<string>();

  /** The layers below the top never change (committed snapshots): their lstat results and opaque flags are cached. */
  readonly #immutableLowers: boolean;

  /**
   * `layers`: directories, top first; `xattrPrefix`: `trusted` (root overlay) or `user` (userxattr);
   * `immutableLowers`: every layer but the top is a committed snapshot, which never changes.
   */
  constructor(readonly layers: readonly string[], xattrPrefix: 'trusted' | 'user', options: { readonly immutableLowers?: boolean } = {}) {
    this.#opaqueXattr = `${xattrPrefix}.overlay.opaque`;
    this.#immutableLowers = options.immutableLowers === true && layers.length > 1;
  }

  #isOpaque(hostPath: string, layer: number): boolean {
    if (this.layers.length === 1) return false;
    const key = layer > 0 && this.#immutableLowers ? `opaque:${this.#opaqueXattr}:${hostPath}` : undefined;
    const hit = key === undefined ? undefined : lowerStats.get(key);
    if (typeof hit === 'boolean') return hit;
    let opaque: boolean;
    try {
      opaque = getXattr(hostPath, this.#opaqueXattr)?.toString() === 'y';
    } catch {
      opaque = false;
    }
    return key === undefined ? opaque : remember(key, opaque);
  }

  /** lstat of `hostPath` in layer `layer` (undefined: missing), cached for an immutable lower layer. */
  #lstat(hostPath: string, layer: number): Stats | undefined {
    if (layer === 0 || !this.#immutableLowers) return tryLstat(hostPath);
    if (lowerStats.has(hostPath)) {
      const hit = lowerStats.get(hostPath);
      if (typeof hit !== 'boolean') return hit;
    }
    return remember(hostPath, tryLstat(hostPath));
  }

  /**
   * Switches to deferred mode: {@link writeFile}/{@link writeFiles} record the files (see
   * {@link deferredFiles}) instead of copying them, and lookups see them as regular files of the
   * top layer, so the rest of the COPY logic (replacing, "not a directory") behaves as if they had
   * been written. Directories and symlinks are still written. Used to produce a COPY layer
   * straight from the sources without materialising them (src/solve/ops/copy-layer.ts).
   */
  deferFiles(): void {
    this.#deferred ??= new Map();
  }

  /** The files recorded in deferred mode (each destination once, the last write wins). */
  deferredFiles(): FileWrite[] {
    return [...(this.#deferred?.values() ?? [])];
  }

  /** Leaves deferred mode and copies the recorded files into the top layer after all. */
  async materializeDeferred(): Promise<void> {
    const files = this.deferredFiles();
    this.#deferred = undefined;
    await this.writeFiles(files);
  }

  /** A deferred file shown as a top-layer entry (its stat is the source's, a regular file). */
  #deferredEntry(key: string): ViewEntry | undefined {
    const f = this.#deferred?.get(key);
    if (f === undefined) return undefined;
    let st: Stats;
    try {
      st = lstatSync(f.source);
    } catch (e) {
      throw ioError(`cannot read ${f.source}`, e);
    }
    if (!st.isFile()) throw new TsbuildError('SOLVE_IO', `${f.source} is no longer a regular file`);
    return { layer: 0, hostPath: f.source, stat: st };
  }

  /** The merged entry at the components `parts` (no symlink following), or undefined. */
  lookupParts(parts: readonly string[]): ViewEntry | undefined {
    if (this.#deferred !== undefined && this.#deferred.size > 0) {
      for (let n = 1; n <= parts.length; n++) {
        const e = this.#deferredEntry(parts.slice(0, n).join('/'));
        if (e !== undefined) return n === parts.length ? e : undefined;
      }
    }
    let visible = this.layers.map((_, i) => i);
    let found: ViewEntry | undefined;
    const prefix: string[] = [];
    if (parts.length === 0) {
      const i = 0;
      const hostPath = this.layers[i] as string;
      const st = tryLstat(hostPath);
      return st === undefined ? undefined : { layer: i, hostPath, stat: st };
    }
    for (const part of parts) {
      prefix.push(part);
      const rel = prefix.join('/');
      const next: number[] = [];
      found = undefined;
      for (const i of visible) {
        const hostPath = `${this.layers[i] as string}/${rel}`;
        const st = this.#lstat(hostPath, i);
        if (st === undefined) continue;
        if (found === undefined) {
          if (isWhiteout(st)) return undefined;
          found = { layer: i, hostPath, stat: st };
        }
        if (!st.isDirectory()) break;
        next.push(i);
        if (this.#isOpaque(hostPath, i)) break;
      }
      if (found === undefined) return undefined;
      visible = next;
    }
    return found;
  }

  /**
   * Resolves `path` (absolute inside the root) to its canonical components, following symlinks in
   * every component and in the last one when `followLast`. Missing components are kept as named.
   * Throws SOLVE_NOT_DIR when a non-directory is used as a directory.
   */
  resolve(path: string, followLast: boolean): string[] {
    const todo = componentsOf(path);
    const done: string[] = [];
    let links = 0;
    while (todo.length > 0) {
      const part = todo.shift() as string;
      if (part === '..') {
        done.pop();
        continue;
      }
      const e = this.lookupParts([...done, part]);
      if (e !== undefined && e.stat.isSymbolicLink() && (todo.length > 0 || followLast)) {
        if (++links > MAX_LINKS) throw new TsbuildError('SOLVE_SYMLINK_LOOP', `too many levels of symbolic links resolving ${path}`);
        let target: string;
        try {
          target = readlinkSync(e.hostPath);
        } catch (err) {
          throw ioError(`cannot read symlink /${[...done, part].join('/')}`, err);
        }
        if (target.startsWith('/')) done.length = 0;
        todo.unshift(...componentsOf(target));
        continue;
      }
      if (e !== undefined && !e.stat.isDirectory() && todo.length > 0) {
        throw new TsbuildError('SOLVE_NOT_DIR', `/${[...done, part].join('/')} is not a directory (resolving ${path})`);
      }
      done.push(part);
    }
    return done;
  }

  /** The merged entry at `path` (symlinks followed except in the last component unless `follow`). */
  lookup(path: string, follow = false): ViewEntry | undefined {
    return this.lookupParts(this.resolve(path, follow));
  }

  /** Names in the merged directory at the canonical components `parts`, sorted. */
  readdirParts(parts: readonly string[]): string[] {
    const rel = parts.join('/');
    const names = new Set<string>();
    const hidden = new Set<string>();
    const top = this.lookupParts(parts);
    if (top === undefined || !top.stat.isDirectory()) return [];
    for (let i = top.layer; i < this.layers.length; i++) {
      const dir = rel === '' ? (this.layers[i] as string) : `${this.layers[i] as string}/${rel}`;
      const st = tryLstat(dir);
      if (st === undefined) continue;
      if (!st.isDirectory()) break;
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch (e) {
        throw ioError(`cannot list ${dir}`, e);
      }
      for (const n of entries) {
        if (names.has(n) || hidden.has(n)) continue;
        const est = tryLstat(`${dir}/${n}`);
        if (est !== undefined && isWhiteout(est)) hidden.add(n);
        else names.add(n);
      }
      if (this.#isOpaque(dir, i)) break;
    }
    return [...names].sort();
  }

  /** Reads a small file of the view (symlinks followed), or undefined when missing. */
  readSmallFile(path: string, maxBytes: number): string | undefined {
    const e = this.lookup(path, true);
    if (e === undefined || !e.stat.isFile()) return undefined;
    if (e.stat.size > maxBytes) throw new TsbuildError('SOLVE_FILE_TOO_BIG', `${path} is larger than ${maxBytes} bytes`);
    try {
      return readFileSync(e.hostPath, 'utf8');
    } catch (err) {
      throw ioError(`cannot read ${path}`, err);
    }
  }

  #upperPath(parts: readonly string[]): string {
    return parts.length === 0 ? (this.layers[0] as string) : `${this.layers[0] as string}/${parts.join('/')}`;
  }

  /**
   * Makes every component of `parts` a directory in the top layer: lower directories are copied up
   * (owner, mode, mtime), missing ones are created with `meta`. Throws SOLVE_NOT_DIR when a
   * component is something else.
   */
  ensureDirParts(parts: readonly string[], meta: WriteMeta): void {
    for (let n = 1; n <= parts.length; n++) {
      const sub = parts.slice(0, n);
      const upper = this.#upperPath(sub);
      const ust = tryLstat(upper);
      if (ust !== undefined && ust.isDirectory()) continue;
      const merged = this.lookupParts(sub);
      if (merged !== undefined && !merged.stat.isDirectory()) {
        throw new TsbuildError('SOLVE_NOT_DIR', `/${sub.join('/')} exists and is not a directory`);
      }
      try {
        if (ust !== undefined) rmSync(upper, { force: true }); // a whiteout of a deleted lower entry
        mkdirSync(upper);
        this.#made.add(sub.join('/'));
        if (merged !== undefined) {
          applyMeta(upper, { uid: merged.stat.uid, gid: merged.stat.gid, mode: merged.stat.mode & 0o7777, mtime: merged.stat.mtimeMs / 1000 });
        } else {
          applyMeta(upper, meta);
          if (ust !== undefined && this.layers.length > 1) setXattr(upper, this.#opaqueXattr, Buffer.from('y'));
        }
      } catch (e) {
        throw e instanceof TsbuildError ? e : ioError(`cannot create directory /${sub.join('/')}`, e);
      }
    }
  }

  /** Removes whatever the top layer holds at `parts` (before writing a new entry there). */
  #clearUpper(parts: readonly string[]): string {
    const upper = this.#upperPath(parts);
    if (this.#deferred !== undefined) {
      const key = parts.join('/');
      for (const k of this.#deferred.keys()) if (k === key || k.startsWith(`${key}/`)) this.#deferred.delete(k);
    }
    const st = tryLstat(upper);
    if (st !== undefined) {
      try {
        rmSync(upper, { recursive: true, force: true });
      } catch (e) {
        throw ioError(`cannot replace ${upper}`, e);
      }
    }
    return upper;
  }

  /** Copies the host file `source` to the canonical `parts` (parents must exist in the top layer). */
  async writeFile(parts: readonly string[], source: string, meta: WriteMeta): Promise<void> {
    if (this.#deferred !== undefined) {
      this.#defer({ parts, source, meta, size: Number.MAX_SAFE_INTEGER });
      return;
    }
    const upper = this.#upperPath(parts);
    try {
      try {
        await copyFile(source, upper, constants.COPYFILE_EXCL);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        this.#clearUpper(parts);
        await copyFile(source, upper, constants.COPYFILE_EXCL);
      }
      applyMeta(upper, meta);
    } catch (e) {
      throw e instanceof TsbuildError ? e : ioError(`cannot copy ${source} to /${parts.join('/')}`, e);
    }
  }

  /**
   * Copies many host files into the top layer (same result as {@link writeFile} for each, in any
   * order: the destinations must be distinct). The top layer of a step starts empty, so each file is
   * created exclusively and only an existing entry (EEXIST) costs a removal and a retry. Small files
   * are copied synchronously (open, read, write, fchown, fchmod, futimes: no thread-pool round trip
   * per file), large ones by the kernel in the thread pool at the same time.
   */
  async writeFiles(files: readonly FileWrite[]): Promise<void> {
    if (this.#deferred !== undefined) {
      for (const f of files) this.#defer(f);
      return;
    }
    const big = files.filter((f) => f.size > SMALL_FILE);
    let next = 0;
    const copyBig = async (): Promise<void> => {
      while (next < big.length) {
        const f = big[next++] as FileWrite;
        await this.writeFile(f.parts, f.source, f.meta);
      }
    };
    // Settled promises: a failure of one side must not leave the other writing after we return.
    const bigDone = Promise.all(Array.from({ length: Math.min(BIG_CONCURRENCY, big.length) }, copyBig)).then(() => undefined, (e: unknown) => ({ e }));
    let smallFailure: unknown;
    try {
      const buf = Buffer.allocUnsafe(SMALL_FILE);
      let n = 0;
      for (const f of files) {
        if (f.size > SMALL_FILE) continue;
        this.#copySmallFile(f, buf);
        if (++n % SMALL_BATCH === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (e) {
      next = big.length;
      smallFailure = e;
    }
    const bigFailure = await bigDone;
    if (smallFailure !== undefined) throw smallFailure;
    if (bigFailure !== undefined) throw bigFailure.e;
  }

  /** Records a file in deferred mode; what this view made at its path before is removed first. */
  #defer(f: FileWrite): void {
    const key = f.parts.join('/');
    if (this.#made.has(key)) {
      this.#clearUpper(f.parts);
      this.#made.delete(key);
    }
    (this.#deferred as Map<string, FileWrite>).set(key, f);
  }

  #copySmallFile(f: FileWrite, buf: Buffer): void {
    const upper = this.#upperPath(f.parts);
    let src: number | undefined;
    let dst: number | undefined;
    try {
      src = openSync(f.source, SRC_FLAGS);
      try {
        dst = openSync(upper, DST_FLAGS, 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        this.#clearUpper(f.parts);
        dst = openSync(upper, DST_FLAGS, 0o600);
      }
      for (;;) {
        const n = readSync(src, buf, 0, buf.length, null);
        if (n === 0) break;
        for (let off = 0; off < n; ) off += writeSync(dst, buf, off, n - off);
      }
      fchownSync(dst, f.meta.uid, f.meta.gid);
      fchmodSync(dst, f.meta.mode & 0o7777);
      if (f.meta.mtime !== undefined) futimesSync(dst, f.meta.mtime, f.meta.mtime);
    } catch (e) {
      throw e instanceof TsbuildError ? e : ioError(`cannot copy ${f.source} to /${f.parts.join('/')}`, e);
    } finally {
      if (dst !== undefined) closeSync(dst);
      if (src !== undefined) closeSync(src);
    }
  }

  /** Creates a symlink at `parts` (parents must exist in the top layer). */
  writeSymlink(parts: readonly string[], target: string, meta: Omit<WriteMeta, 'mode'>): void {
    const upper = this.#clearUpper(parts);
    try {
      symlinkSync(target, upper);
      this.#made.add(parts.join('/'));
      lchownSync(upper, meta.uid, meta.gid);
      if (meta.mtime !== undefined) lutimesSync(upper, meta.mtime, meta.mtime);
    } catch (e) {
      throw ioError(`cannot create symlink /${parts.join('/')}`, e);
    }
  }

  /** Makes `parts` a directory with `meta` (an existing directory is kept and gets `meta`). */
  writeDir(parts: readonly string[], meta: WriteMeta): void {
    const existing = this.lookupParts(parts);
    if (existing !== undefined && !existing.stat.isDirectory()) this.#clearUpper(parts);
    this.ensureDirParts(parts, meta);
    try {
      applyMeta(this.#upperPath(parts), meta);
    } catch (e) {
      throw ioError(`cannot set the mode of /${parts.join('/')}`, e);
    }
  }
}

function applyMeta(path: string, meta: WriteMeta): void {
  lchownSync(path, meta.uid, meta.gid);
  chmodSync(path, meta.mode & 0o7777);
  if (meta.mtime !== undefined) lutimesSync(path, meta.mtime, meta.mtime);
}

/** `posix.basename` of a source name (`.` and `/` give ''). */
export function baseNameOf(source: string): string {
  const b = posix.basename(posix.normalize(`/${source}`));
  return b === '/' ? '' : b;
}
