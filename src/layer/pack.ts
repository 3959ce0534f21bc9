import { closeSync, constants, fstatSync, lstatSync, type Dirent, openSync, readSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { TsbuildError, type Digest } from '../core/index.js';
import { getXattr, listXattrNames, splitDev } from '../sys/index.js';
import { Batcher } from './batcher.js';
import { StreamHasher } from './hasher.js';
import { BLOCK, measureHeader, roundToBlock, writeHeader, type EntryType, type TarHeader, type TarXattr } from './tar-header.js';

/** How {@link packLayer} reads the directory. */
export type PackMode = 'tree' | 'changeset';

/** Options of {@link packLayer}. */
export interface PackOptions {
  /** `tree`: the directory is a whole file system. `changeset`: an overlay upperdir (whiteouts, opaque dirs). */
  readonly mode: PackMode;
  /** Clamp every mtime to this many seconds since the epoch (the SOURCE_DATE_EPOCH value), when set. */
  readonly sourceDateEpoch?: number;
}

/** What packing produced: the diffID (sha256 of the uncompressed tar), its size and entry count. */
export interface PackResult {
  readonly diffId: Digest;
  readonly size: number;
  readonly entries: number;
}

/** A layer tar being produced: consume `stream`; `done` settles once the stream has ended or failed. */
export interface PackedLayer {
  readonly stream: Readable;
  readonly done: Promise<PackResult>;
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE = '.wh..wh..opq';
/** Xattrs carried in layers; names with "=" cannot be written as a PAX key and are left out. */
const KEPT_XATTR = (name: string): boolean =>
  ((name.startsWith('user.') && !name.startsWith('user.overlay.')) || name === 'security.capability') && !name.includes('=');

interface Item {
  readonly fsName: string;
  /** The name in the tar (differs for whiteouts); undefined for the synthetic opaque marker. */
  readonly tarName: string;
  readonly key: Buffer;
  readonly opaqueMarker: boolean;
  /** readdir said "regular file": open + fstat instead of lstat (one path lookup less). */
  readonly regular: boolean;
}

interface Frame {
  readonly abs: string;
  readonly rel: string;
  readonly items: Item[];
  next: number;
}

function makeLayerError(code: string, message: string, cause?: unknown): TsbuildError {
  return new TsbuildError(`LAYER_${code}`, message, cause === undefined ? {} : { cause });
}

function listDir(abs: string, changeset: boolean, opaque: boolean): Item[] {
  let dirents: Dirent[];
  try {
    dirents = readdirSync(abs, { withFileTypes: true });
  } catch (cause) {
    throw makeLayerError('READ_FAILED', `cannot list directory ${abs}`, cause);
  }
  const items: Item[] = dirents.map((d) => {
    // Whiteouts sort by their name in the tar (`.wh.NAME`), so they are recognised before sorting.
    const whiteout = changeset && d.isCharacterDevice() && lstatSync(join(abs, d.name)).rdev === 0;
    const tarName = whiteout ? WHITEOUT_PREFIX + d.name : d.name;
    return { fsName: d.name, tarName, key: Buffer.from(tarName, 'utf8'), opaqueMarker: false, regular: d.isFile() };
  });
  if (changeset && opaque) items.push({ fsName: '', tarName: OPAQUE, key: Buffer.from(OPAQUE), opaqueMarker: true, regular: false });
  return items;
}

function readKeptXattrs(abs: string, changeset: boolean, fd?: number): { xattrs: TarXattr[]; opaque: boolean } {
  let names: string[];
  try {
    names = listXattrNames(fd ?? abs);
  } catch (cause) {
    throw makeLayerError('READ_FAILED', `cannot list xattrs of ${abs}`, cause);
  }
  if (names.length === 0) return { xattrs: [], opaque: false };
  let opaque = false;
  const xattrs: TarXattr[] = [];
  for (const name of names) {
    if (name === 'trusted.overlay.opaque' || name === 'user.overlay.opaque') {
      if (changeset && getXattr(fd ?? abs, name)?.toString() === 'y') opaque = true;
    } else if (changeset && /^(trusted|user)\.overlay\.(redirect|metacopy)$/.test(name)) {
      throw makeLayerError('UNSUPPORTED_OVERLAY', `${abs} carries ${name}: mount overlayfs with redirect_dir=off and metacopy=off`);
    } else if (KEPT_XATTR(name)) {
      const value = getXattr(fd ?? abs, name);
      if (value !== undefined) xattrs.push({ name, value });
    }
  }
  xattrs.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  return { xattrs, opaque };
}

function getEntryType(st: Stats): EntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return undefined; // sockets are not layer content
}

/** Opens a regular file without following symlinks or blocking (it may have become a fifo). */
function openRegular(abs: string): number {
  try {
    return openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (cause) {
    throw makeLayerError('READ_FAILED', `cannot open ${abs}`, cause);
  }
}

/**
 * Reads `size` bytes of the open file into the batcher, pausing (yielding) after each full buffer so
 * that a big file is never held in memory; throws LAYER_FILE_CHANGED if it shrank.
 */
function* copyFile(out: Batcher, fd: number, abs: string, size: number): Generator<void> {
  try {
    let left = size;
    while (left > 0) {
      if (out.used === out.buf.length) {
        out.flush();
        yield;
      }
      const want = Math.min(left, out.buf.length - out.used);
      const n = readSync(fd, out.buf, out.used, want, null);
      if (n === 0) throw makeLayerError('FILE_CHANGED', `${abs} shrank while it was being packed`);
      out.used += n;
      left -= n;
    }
  } catch (cause) {
    if (cause instanceof TsbuildError) throw cause;
    throw makeLayerError('READ_FAILED', `cannot read ${abs}`, cause);
  }
  out.zeros(roundToBlock(size) - size);
}

async function* generateTar(dir: string, options: PackOptions, result: (r: PackResult) => void): AsyncGenerator<Buffer> {
  const hasher = new StreamHasher();
  try {
    yield* produceTar(dir, options, new Batcher(), hasher, result);
  } finally {
    hasher.dispose(); // stops a hashing worker when the consumer aborted or packing failed
  }
}

async function* produceTar(dir: string, options: PackOptions, out: Batcher, hasher: StreamHasher, result: (r: PackResult) => void): AsyncGenerator<Buffer> {
  let total = 0;
  /** Hands the full buffers to the hasher and the consumer, in order. */
  async function* drain(): AsyncGenerator<Buffer> {
    for (const chunk of out.ready.splice(0)) {
      await hasher.update(chunk);
      total += chunk.length;
      yield chunk;
    }
  }
  const changeset = options.mode === 'changeset';
  const clamp = (mtimeMs: number): number => {
    const s = Math.max(0, Math.floor(mtimeMs / 1000));
    return options.sourceDateEpoch !== undefined && s > options.sourceDateEpoch ? Math.max(0, Math.floor(options.sourceDateEpoch)) : s;
  };
  const links = new Map<string, string>();
  let entries = 0;
  let rootStat: Stats;
  try {
    rootStat = lstatSync(dir);
  } catch (cause) {
    throw makeLayerError('READ_FAILED', `cannot read ${dir}`, cause);
  }
  if (!rootStat.isDirectory()) throw makeLayerError('READ_FAILED', `${dir} is not a directory`);
  const rootOpaque = readKeptXattrs(dir, changeset).opaque;
  const stack: Frame[] = [{ abs: dir, rel: '', items: sortItems(listDir(dir, changeset, rootOpaque)), next: 0 }];

  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as Frame;
    const item = frame.items[frame.next++];
    if (item === undefined) {
      stack.pop();
      continue;
    }
    if (item.opaqueMarker) {
      emit(out, { ...EMPTY, name: frame.rel + OPAQUE });
      entries++;
    } else {
      const abs = join(frame.abs, item.fsName);
      let fd: number | undefined;
      try {
        let st: Stats;
        try {
          if (item.regular) {
            fd = openRegular(abs);
            st = fstatSync(fd);
            if (!st.isFile()) {
              closeSync(fd);
              fd = undefined;
              st = lstatSync(abs);
            }
          } else {
            st = lstatSync(abs);
          }
        } catch (cause) {
          if (cause instanceof TsbuildError) throw cause;
          throw makeLayerError('READ_FAILED', `cannot stat ${abs}`, cause);
        }
        const type = getEntryType(st);
        if (type !== undefined) {
          if (changeset && type === 'char' && st.rdev === 0) {
            // An overlay whiteout: the name was deleted in this layer.
            emit(out, { ...EMPTY, name: frame.rel + item.tarName });
          } else {
            const { xattrs, opaque } = readKeptXattrs(abs, changeset, fd);
            const rel = frame.rel + item.fsName;
            const base = { ...EMPTY, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: clamp(st.mtimeMs), xattrs };
            const linkKey = type !== 'directory' && st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
            const first = linkKey === undefined ? undefined : links.get(linkKey);
            if (first !== undefined) {
              emit(out, { ...base, name: rel, type: 'link', linkname: first, xattrs: [] });
            } else {
              if (linkKey !== undefined) links.set(linkKey, rel);
              if (type === 'file') {
                emit(out, { ...base, name: rel, type, size: st.size });
                fd ??= openRegular(abs);
                for (const _ of copyFile(out, fd, abs, st.size)) yield* drain();
              } else if (type === 'directory') {
                emit(out, { ...base, name: `${rel}/`, type });
                stack.push({ abs, rel: `${rel}/`, items: sortItems(listDir(abs, changeset, opaque)), next: 0 });
              } else if (type === 'symlink') {
                emit(out, { ...base, name: rel, type, linkname: readLink(abs) });
              } else {
                const { major, minor } = type === 'fifo' ? { major: 0, minor: 0 } : splitDev(st.rdev);
                emit(out, { ...base, name: rel, type, devmajor: major, devminor: minor });
              }
            }
          }
          entries++;
        }
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
    if (out.ready.length > 0) yield* drain();
  }
  out.zeros(2 * BLOCK);
  out.flush(0);
  yield* drain();
  result({ diffId: await hasher.digest(), size: total, entries });
}

const EMPTY: TarHeader = { name: '', type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: [] };

function emit(out: Batcher, h: TarHeader): void {
  const n = measureHeader(h);
  out.reserve(n);
  out.used += writeHeader(h, out.buf, out.used);
}

function readLink(abs: string): string {
  try {
    return readlinkSync(abs);
  } catch (cause) {
    throw makeLayerError('READ_FAILED', `cannot read symlink ${abs}`, cause);
  }
}

function sortItems(items: Item[]): Item[] {
  return items.sort((a, b) => Buffer.compare(a.key, b.key));
}

/**
 * Packs `dir` into a deterministic layer tar: entries in bytewise order of their path, numeric
 * owners, empty uname/gname, integer mtimes (clamped to `sourceDateEpoch`), PAX for long names,
 * big sizes/ids and xattrs (`user.*`, `security.capability`; overlay xattrs never leak).
 * In `changeset` mode a 0/0 char device becomes `.wh.NAME` and an opaque directory gets a
 * `.wh..wh..opq` entry. Hardlinks become tar links to the first path in that order.
 * File content is streamed from disk; the caller must consume or destroy `stream`.
 * Failures (`LAYER_READ_FAILED`, `LAYER_FILE_CHANGED`, `LAYER_UNSUPPORTED_OVERLAY`) error the
 * stream and reject `done`.
 */
export function packLayer(dir: string, options: PackOptions): PackedLayer {
  let resolve!: (r: PackResult) => void;
  let reject!: (e: unknown) => void;
  const done = new Promise<PackResult>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  done.catch(() => undefined); // the stream reports the same error; avoid an unhandled rejection
  // A tiny highWaterMark keeps one 1 MiB chunk buffered: read() then never has to concatenate chunks.
  const stream = Readable.from(generateTar(dir, options, resolve), { objectMode: false, highWaterMark: 1 });
  stream.once('error', (err) => reject(err instanceof TsbuildError ? err : makeLayerError('PACK_ABORTED', `packing ${dir} was aborted: ${err.message}`, err)));
  stream.once('close', () => reject(makeLayerError('PACK_ABORTED', `packing ${dir} was aborted before the end`)));
  return { stream, done };
}
