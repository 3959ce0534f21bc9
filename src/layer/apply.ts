import {
  closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync,
  openSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, unlinkSync, chmodSync, write, writeSync,
} from 'node:fs';
import type { Readable } from 'node:stream';
import { TsbuildError, isTsbuildError } from '../core/index.js';
import { SysCallError, makeNode, setXattr } from '../sys/index.js';
import { FileWriter, SMALL_FILE, WriteFailed, type SmallFile } from './file-writer.js';
import { ScopedResolver, splitMemberName } from './safe-path.js';
import type { TarHeader } from './tar-header.js';
import { TarReader, type TarReadLimits } from './tar-reader.js';

/** How whiteout entries are materialised by {@link applyLayer}. */
export type WhiteoutMode =
  /** Delete the named lower content (unpacking a layer on top of its parent). */
  | 'delete'
  /** Record them as overlayfs does (0/0 char device, `<prefix>.overlay.opaque=y`), for a layer unpacked alone as an overlay lowerdir. */
  | 'overlay';

/** Options of {@link applyLayer}. */
export interface ApplyOptions {
  /** Default `delete`. */
  readonly whiteouts?: WhiteoutMode;
  /** Xattr namespace of overlay opaque markers in `overlay` mode: `trusted` (root, default) or `user` (userxattr mounts). */
  readonly overlayXattrPrefix?: 'trusted' | 'user';
  /** Restore owners and create device nodes; default: running as uid 0. Otherwise devices are skipped with a warning. */
  readonly privileged?: boolean;
  /** Entry-count and path-length bounds. */
  readonly limits?: TarReadLimits;
  /** Aborts between entries with LAYER_ABORTED. */
  readonly signal?: AbortSignal;
}

/** What {@link applyLayer} did. */
export interface ApplyReport {
  readonly entries: number;
  /** Bytes of file content written. */
  readonly bytes: number;
  readonly whiteouts: number;
  /** Non-fatal problems (skipped devices, xattrs the file system refused), at most 100. */
  readonly warnings: readonly string[];
}

const WH = '.wh.';

// SECURITY: O_EXCL|O_NOFOLLOW: a file is created only at a name known to be free; no symlink is followed.
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const OPAQUE = '.wh..wh..opq';

interface DirMeta {
  readonly mode: number;
  readonly mtime: number;
}

function wrapError(err: unknown, what: string): TsbuildError {
  if (isTsbuildError(err) && !(err instanceof SysCallError)) return err;
  const code = (err as { code?: string; errnoName?: string }).errnoName ?? (err as { code?: string }).code;
  if (code === 'ENAMETOOLONG') return new TsbuildError('LAYER_PATH_TOO_LONG', `${what}: name too long`, { cause: err });
  return new TsbuildError('LAYER_WRITE_FAILED', `${what}: ${(err as Error).message}`, { cause: err });
}

/** This process's umask, read without changing it (process.umask() sets it briefly); all bits when unknown. */
function readUmask(): number {
  try {
    const m = /^Umask:\s+([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'latin1'));
    return m === null ? 0o777 : parseInt(m[1] as string, 8);
  } catch {
    return 0o777;
  }
}

class Applier {
  readonly resolver: ScopedResolver;
  readonly unpacked = new Set<string>();
  /** Directories created by this run: all their content is in `unpacked` (saves an lstat per entry). */
  readonly fresh = new Set<string>();
  private readonly ids: { uid: number; gid: number };
  readonly dirs = new Map<string, DirMeta>();
  readonly warnings: string[] = [];
  entries = 0;
  bytes = 0;
  whiteouts = 0;
  private readonly privileged: boolean;
  private readonly mode: WhiteoutMode;
  private readonly umask = readUmask();
  /** Small files, written inline or batched to a helper thread; drained before anything removes, replaces or links. */
  readonly writer = new FileWriter();
  private readonly onCreated = (real: string): void => this.created(real);

  constructor(root: string, private readonly options: ApplyOptions) {
    this.resolver = new ScopedResolver(root);
    this.privileged = options.privileged ?? process.getuid?.() === 0;
    this.mode = options.whiteouts ?? 'delete';
    this.ids = { uid: process.getuid?.() ?? -1, gid: process.getgid?.() ?? -1 };
  }

  private created(real: string): void {
    this.unpacked.add(real);
    this.fresh.add(real);
  }

  warn(message: string): void {
    if (this.warnings.length < 100) this.warnings.push(message);
  }

  /**
   * Applies an entry whose whole body is in memory, without waiting, when nothing has to be waited
   * for (the common case: a new file, directory or symlink). Returns false when it would have to
   * wait (for the small files in flight, or for a full writer) or the entry is of another kind:
   * then nothing was applied (directories on its path may have been made, as {@link apply} makes
   * them) and the caller calls {@link apply}, which decides the same way and waits where needed.
   */
  applyBuffered(h: TarHeader, data: Buffer): boolean {
    if (h.type !== 'file' && h.type !== 'directory' && h.type !== 'symlink') return false;
    const parts = splitMemberName(h.name);
    const base = parts.pop();
    if (base === undefined || base.startsWith(WH)) return false;
    // SECURITY: the same rules as apply: a path not resolved before may run through a name still in
    // flight, and whatever replaces a name (seen before, or in the tree already) waits for the writer.
    if (!this.writer.idle && !this.resolver.isCached(parts)) return false;
    const parent = this.resolver.resolveDir(parts, true, this.onCreated) as string;
    const target = `${parent}/${base}`;
    if (this.unpacked.has(target)) return false;
    const parentFresh = this.fresh.has(parent);
    const existing = parentFresh ? undefined : lstatSync(target, { throwIfNoEntry: false });
    if (existing !== undefined && !(existing.isDirectory() && h.type === 'directory')) return false;
    if (h.type === 'file') {
      if (h.size <= SMALL_FILE && h.xattrs.length === 0 && this.writer.takesNext()) {
        if (!this.writer.tryWrite(this.smallFile(target, h, parentFresh), data)) return false;
        this.bytes += data.length;
      } else {
        this.writeBufferedFile(target, h, data, parentFresh);
      }
    } else if (h.type === 'directory') {
      this.makeDirectory(parts, base, target, existing !== undefined, h);
    } else {
      this.makeSymlink(target, h);
    }
    this.unpacked.add(target);
    return true;
  }

  async apply(h: TarHeader, body: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<void> {
    const parts = splitMemberName(h.name);
    const base = parts.pop();
    if (base === undefined) {
      if (h.type !== 'directory') throw new TsbuildError('LAYER_UNSAFE_PATH', `entry ${JSON.stringify(h.name)} would replace the layer root`);
      this.dirs.set(this.resolver.root, { mode: h.mode, mtime: h.mtime });
      this.restoreOwnerAndXattrs(this.resolver.root, h);
      return;
    }
    // SECURITY: whatever removes, replaces or links waits for the small files in flight first, so
    // that no directory on an in-flight file's path changes under it (see FileWriter).
    if (base.startsWith(WH)) {
      await this.drain();
      this.whiteout(parts, base, h);
      return;
    }
    // A path not resolved before may run through a name still in flight (a file the resolver would not see yet).
    if (!this.writer.idle && !this.resolver.isCached(parts)) await this.drain();
    const parent = this.resolver.resolveDir(parts, true, this.onCreated) as string;
    const target = `${parent}/${base}`;
    const parentFresh = this.fresh.has(parent);
    const seen = this.unpacked.has(target);
    if (seen || h.type === 'link') await this.drain();
    const existing = parentFresh && !seen ? undefined : lstatSync(target, { throwIfNoEntry: false });
    let linkSource: string | undefined;
    if (h.type === 'link') {
      linkSource = this.resolveLinkSource(h);
      if (linkSource === target) return; // a hardlink to itself: nothing to do
    }
    if (existing !== undefined && !(existing.isDirectory() && h.type === 'directory')) {
      // Docker semantics: a new entry replaces whatever was there (a directory with all its content).
      await this.drain();
      if (existing.isDirectory()) rmSync(target, { recursive: true, force: true });
      else unlinkSync(target);
      if (existing.isDirectory() || existing.isSymbolicLink()) this.resolver.invalidate();
    }
    switch (h.type) {
      case 'file':
        if (h.size <= SMALL_FILE && h.xattrs.length === 0 && this.writer.takesNext()) await this.queueFile(target, h, body, parentFresh);
        else await this.writeFile(target, h, body, parentFresh);
        break;
      case 'directory':
        this.makeDirectory(parts, base, target, existing !== undefined && existing.isDirectory(), h);
        break;
      case 'symlink':
        this.makeSymlink(target, h);
        break;
      case 'link':
        linkSync(linkSource as string, target);
        break;
      case 'fifo':
      case 'char':
      case 'block':
        if (h.type !== 'fifo' && !this.privileged) {
          this.warn(`skipped device node ${h.name} (${h.devmajor}:${h.devminor}): not privileged`);
          return;
        }
        try {
          makeNode(target, h.type, 0o600, h.devmajor, h.devminor);
        } catch (err) {
          if (!(err instanceof SysCallError && err.errnoName === 'EPERM')) throw err;
          this.warn(`skipped device node ${h.name} (${h.devmajor}:${h.devminor}): mknod not permitted here`);
          return;
        }
        this.restoreOwnerAndXattrs(target, h);
        chmodSync(target, h.mode);
        lutimesSync(target, h.mtime, h.mtime);
        break;
    }
    this.unpacked.add(target);
  }

  /** Makes the directory `target` (the entry `parts`/`base`) unless `exists`, and records its mode and mtime for the end. */
  private makeDirectory(parts: string[], base: string, target: string, exists: boolean, h: TarHeader): void {
    if (!exists) {
      mkdirSync(target, 0o700);
      this.fresh.add(target);
    }
    this.resolver.remember([...parts, base], target);
    this.dirs.set(target, { mode: h.mode, mtime: h.mtime });
    this.restoreOwnerAndXattrs(target, h);
  }

  private makeSymlink(target: string, h: TarHeader): void {
    // The target is data: it is never followed here, and later lookups resolve it inside the root.
    symlinkSync(h.linkname, target);
    this.restoreOwnerAndXattrs(target, h);
    lutimesSync(target, h.mtime, h.mtime);
  }

  async drain(): Promise<void> {
    if (!this.writer.idle) await this.writer.drain();
  }

  /**
   * The mode a new file is created with and the mode to set afterwards, if any: plain permission
   * bits that the umask leaves alone are final at creation (no fchmod); otherwise 0600, then fchmod.
   */
  private modesOf(h: TarHeader): { createMode: number; chmod?: number } {
    const perm = h.mode & 0o777;
    if (h.mode === perm && (perm & this.umask) === 0) return { createMode: perm };
    return { createMode: 0o600, chmod: h.mode };
  }

  /** The owner to set on a new file, or undefined when it already has it or we may not set it. */
  private ownerOf(h: TarHeader, parentFresh: boolean): { uid: number; gid: number } | undefined {
    // A fresh parent is not setgid yet (modes are applied at the end): new files already have our ids.
    const ownedAlready = parentFresh && h.uid === this.ids.uid && h.gid === this.ids.gid;
    return this.privileged && !ownedAlready ? { uid: h.uid, gid: h.gid } : undefined;
  }

  /** The writer's description of the small file `h` at `target` (a name known to be free). */
  private smallFile(target: string, h: TarHeader, parentFresh: boolean): SmallFile {
    const modes = this.modesOf(h);
    const owner = this.ownerOf(h, parentFresh);
    return {
      path: target, name: h.name, size: h.size, createMode: modes.createMode, mtime: h.mtime,
      ...(modes.chmod === undefined ? {} : { chmod: modes.chmod }), ...(owner === undefined ? {} : { owner }),
    };
  }

  /** Hands a small file (the name is known to be free) to the writer's helper thread. */
  private async queueFile(target: string, h: TarHeader, body: AsyncIterable<Buffer> | Iterable<Buffer>, parentFresh: boolean): Promise<void> {
    await this.writer.write(this.smallFile(target, h, parentFresh), async (into, start) => {
      let at = start;
      for await (const chunk of body) at += chunk.copy(into, at);
      this.bytes += at - start;
    });
  }

  /** Writes a file whose whole content is in memory, here (the name is known to be free). */
  private writeBufferedFile(target: string, h: TarHeader, data: Buffer, parentFresh: boolean): void {
    const modes = this.modesOf(h);
    // SECURITY: O_EXCL|O_NOFOLLOW: the name is free, so nothing (no symlink) may be followed.
    const fd = openSync(target, CREATE_FLAGS, modes.createMode);
    try {
      let at = 0;
      while (at < data.length) at += writeSync(fd, data, at, data.length - at);
      this.bytes += data.length;
      this.finishFile(fd, target, h, modes, parentFresh);
    } finally {
      closeSync(fd);
    }
  }

  /** Sets the owner, mode, xattrs and times of a file just written through `fd`. */
  private finishFile(fd: number, target: string, h: TarHeader, modes: { chmod?: number }, parentFresh: boolean): void {
    const owner = this.ownerOf(h, parentFresh);
    if (owner !== undefined) fchownSync(fd, owner.uid, owner.gid);
    if (modes.chmod !== undefined) fchmodSync(fd, modes.chmod); // after chown, which clears setuid/setgid
    this.restoreXattrs(target, h);
    futimesSync(fd, h.mtime, h.mtime);
  }

  private async writeFile(target: string, h: TarHeader, body: AsyncIterable<Buffer> | Iterable<Buffer>, parentFresh: boolean): Promise<void> {
    const modes = this.modesOf(h);
    // SECURITY: O_EXCL|O_NOFOLLOW: the name was just cleared, so nothing (no symlink) may be followed.
    const fd = openSync(target, CREATE_FLAGS, modes.createMode);
    // A large file's chunks are written on the libuv pool, one in flight while the next is parsed: the
    // kernel's copy (most of a big layer's cost) no longer stalls the thread that inflates, hashes and
    // parses (and, in a pull, downloads). Tar bodies are slices never reused, so a chunk may be held.
    let pending: Promise<void> | undefined;
    try {
      for await (const chunk of body) {
        if (h.size <= SMALL_FILE) {
          let at = 0;
          while (at < chunk.length) at += writeSync(fd, chunk, at, chunk.length - at);
        } else {
          if (pending !== undefined) await pending;
          pending = writeAllAsync(fd, chunk);
          pending.catch(() => undefined); // awaited below; a failure meanwhile is no unhandled rejection
        }
        this.bytes += chunk.length;
      }
      if (pending !== undefined) await pending;
      this.finishFile(fd, target, h, modes, parentFresh);
    } finally {
      if (pending !== undefined) await pending.catch(() => undefined); // never close the fd under a write
      closeSync(fd);
    }
  }

  private resolveLinkSource(h: TarHeader): string {
    const parts = splitMemberName(h.linkname, 'LAYER_BAD_LINK');
    const base = parts.pop();
    if (base === undefined) throw new TsbuildError('LAYER_BAD_LINK', `hardlink ${JSON.stringify(h.name)} points at the layer root`);
    // SECURITY: the source's directories are resolved inside the root; its last component is not followed.
    const dir = this.resolver.resolveDir(parts, false);
    const source = dir === undefined ? undefined : `${dir}/${base}`;
    const st = source === undefined ? undefined : lstatSync(source, { throwIfNoEntry: false });
    if (source === undefined || st === undefined) {
      throw new TsbuildError('LAYER_BAD_LINK', `hardlink ${JSON.stringify(h.name)} points at ${JSON.stringify(h.linkname)}, which is not in the layer root`);
    }
    if (st.isDirectory()) throw new TsbuildError('LAYER_BAD_LINK', `hardlink ${JSON.stringify(h.name)} points at a directory`);
    return source;
  }

  private whiteout(parts: string[], base: string, h: TarHeader): void {
    this.whiteouts++;
    this.resolver.invalidate();
    if (base === OPAQUE) {
      const dir = this.resolver.resolveDir(parts, this.mode === 'overlay', this.onCreated);
      if (dir === undefined) return;
      if (this.mode === 'overlay') setXattr(dir, `${this.options.overlayXattrPrefix ?? 'trusted'}.overlay.opaque`, Buffer.from('y'));
      else this.clearLower(dir);
      return;
    }
    const name = base.slice(WH.length);
    if (name === '' || name === '.' || name === '..' || name.startsWith(WH)) {
      throw new TsbuildError('LAYER_UNSAFE_PATH', `invalid whiteout entry ${JSON.stringify(h.name)}`);
    }
    const dir = this.resolver.resolveDir(parts, this.mode === 'overlay', this.onCreated);
    if (dir === undefined) return;
    const target = `${dir}/${name}`;
    rmSync(target, { recursive: true, force: true }); // rm never follows a symlink it removes
    if (this.mode === 'overlay') {
      makeNode(target, 'char', 0, 0, 0);
      this.unpacked.add(target);
    }
  }

  /** Removes everything below `dir` that this layer did not write (opaque directory). */
  private clearLower(dir: string): void {
    for (const name of readdirSync(dir)) {
      const p = `${dir}/${name}`;
      if (!this.unpacked.has(p)) rmSync(p, { recursive: true, force: true });
      else if (lstatSync(p).isDirectory()) this.clearLower(p);
    }
  }

  private restoreOwnerAndXattrs(path: string, h: TarHeader): void {
    if (this.privileged) lchownSync(path, h.uid, h.gid);
    this.restoreXattrs(path, h);
  }

  private restoreXattrs(path: string, h: TarHeader): void {
    for (const x of h.xattrs) {
      // SECURITY: overlay xattrs would change how an overlay mount interprets the snapshot.
      if (/^(trusted|user)\.overlay\./.test(x.name)) {
        this.warn(`ignored xattr ${x.name} on ${h.name}`);
        continue;
      }
      if (h.type === 'symlink' && x.name.startsWith('user.')) continue; // Linux refuses user.* on symlinks
      try {
        setXattr(path, x.name, x.value);
      } catch (err) {
        this.warn(`could not restore xattr ${x.name} on ${h.name}: ${(err as Error).message}`);
      }
    }
  }

  async finish(): Promise<void> {
    await this.drain();
    for (const [path, meta] of this.dirs) {
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (st === undefined || !st.isDirectory()) continue;
      chmodSync(path, meta.mode);
      lutimesSync(path, meta.mtime, meta.mtime);
    }
  }
}

/** Writes all of `chunk` at `fd`'s position on the libuv pool. */
function writeAllAsync(fd: number, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const from = (at: number): void => {
      write(fd, chunk, at, chunk.length - at, null, (err, n) => {
        if (err !== null) reject(err);
        else if (at + n < chunk.length) from(at + n);
        else resolve();
      });
    };
    from(0);
  });
}

/**
 * Extracts the (uncompressed) layer tar `tar` into `destDir` (created if missing) with OCI whiteout
 * semantics, restoring owners (when privileged), modes, mtimes (symlinks too) and xattrs.
 * SECURITY: every name is resolved inside `destDir` as if it were `/`; nothing is created, changed or
 * linked outside it. Hostile or malformed input fails with LAYER_UNSAFE_PATH, LAYER_BAD_LINK,
 * LAYER_SYMLINK_LOOP, LAYER_NOT_A_DIRECTORY, LAYER_TRUNCATED, LAYER_BAD_HEADER, LAYER_TOO_MANY_ENTRIES,
 * LAYER_PATH_TOO_LONG or LAYER_UNSUPPORTED_ENTRY; I/O failures with LAYER_WRITE_FAILED. On failure the
 * destination is left partially written (callers unpack into a fresh directory and discard it).
 * The input stream is consumed to its end (or destroyed on failure).
 */
export async function applyLayer(tar: Readable, destDir: string, options: ApplyOptions = {}): Promise<ApplyReport> {
  let root: string;
  try {
    mkdirSync(destDir, { recursive: true });
    root = realpathSync(destDir);
  } catch (err) {
    throw wrapError(err, `cannot create ${destDir}`);
  }
  const applier = new Applier(root, options);
  const reader = new TarReader(tar, options.limits);
  let current = '';
  try {
    for (;;) {
      if (options.signal?.aborted === true) throw new TsbuildError('LAYER_ABORTED', `unpacking into ${destDir} was aborted`);
      // Entries already in memory (many per inflated chunk in a layer of small files) are applied
      // without a promise each; the rest, and any that must wait, go through the async path.
      const buffered = reader.nextBuffered(SMALL_FILE);
      if (buffered !== undefined) {
        current = buffered.header.name;
        applier.entries++;
        if (!applier.applyBuffered(buffered.header, buffered.data)) await applier.apply(buffered.header, [buffered.data]);
        continue;
      }
      const entry = await reader.next();
      if (entry === undefined) break;
      current = entry.header.name;
      applier.entries++;
      await applier.apply(entry.header, entry.body);
    }
    current = '';
    await applier.finish();
    await reader.close();
  } catch (err) {
    await applier.writer.close(); // nothing is written after we return
    await reader.close().catch(() => undefined);
    tar.destroy();
    if (err instanceof WriteFailed) throw wrapError(err.error, `unpacking ${JSON.stringify(err.entryName)} into ${destDir}`);
    if (isTsbuildError(err) && !(err instanceof SysCallError)) throw err;
    throw wrapError(err, current === '' ? `unpacking into ${destDir}` : `unpacking ${JSON.stringify(current)} into ${destDir}`);
  }
  await applier.writer.close();
  return { entries: applier.entries, bytes: applier.bytes, whiteouts: applier.whiteouts, warnings: applier.warnings };
}
