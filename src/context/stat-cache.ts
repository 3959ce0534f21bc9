/**
 * The stat cache: (path, size, mtime, ctime, inode, dev) -> content digest, persisted in one
 * binary file so an unchanged file is never re-read on the next build. Written atomically (temp +
 * rename), or a few changed records appended (an interrupted append leaves a segment cut short: the
 * file is then treated as corrupt); a missing, corrupt or foreign file is ignored and rebuilt.
 * What a hit relies on is what git's index relies on: a content change moves the size, the mtime
 * or (always: users cannot set it) the ctime, or replaces the inode; files changed within 50 ms of
 * being read are not recorded (checksum.ts), so a write in the same clock tick is not missed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { TsbuildError, digestHex, type Digest } from '../core/index.js';

/** The file starts with these bytes. */
const HEADER = Buffer.from('tsbuild-stat-cache/4\n', 'latin1');
/** Entries kept at most; the ones not used by the current build are dropped first. */
const MAX_ENTRIES = 500_000;
/** A record's fixed tail: size, mtimeMs, ctimeMs, ino, dev (float64 LE each), then the 32 digest bytes. */
const TAIL = 5 * 8 + 32;

/** The lstat fields a stat-cache row is keyed on (Node's Stats has them all; times in ms, see EntryStat). */
export interface FileFingerprint {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly ino: number;
  readonly dev: number;
}

/** Records appended to the file (instead of rewriting it) up to this many. */
const MAX_APPENDED = 2_000;

/** Writes the tail of a record (fingerprint and digest) at `buf[at]`. */
function putTail(buf: Buffer, at: number, st: FileFingerprint, hex: string): void {
  buf.writeDoubleLE(st.size, at);
  buf.writeDoubleLE(st.mtimeMs, at + 8);
  buf.writeDoubleLE(st.ctimeMs, at + 16);
  buf.writeDoubleLE(st.ino, at + 24);
  buf.writeDoubleLE(st.dev, at + 32);
  buf.write(hex, at + 40, 32, 'hex');
}

/**
 * A loaded stat cache. File format: {@link HEADER}, then segments (the whole cache, then one per
 * append of a few changed records) of `u32 LE count, u32 LE path bytes, count tails (float64 LE
 * size, mtimeMs, ctimeMs, ino, dev, then 32 bytes sha256), the count paths (UTF-8) joined by NUL`;
 * a later record for a path replaces an earlier one. Binary, so that a lookup compares five numbers
 * instead of printing them, and the paths of a segment are decoded in one go (20,000 per warm build).
 */
export class StatCache {
  /** path -> where its tail is: `>= 0` an offset into `data` (the file as loaded), `< 0` record `-1 - n` of `recorded`. */
  private readonly rows = new Map<string, number>();
  private data: Buffer = Buffer.alloc(0);
  /** Tails of the records made since loading, {@link TAIL} bytes each. */
  private recorded: Buffer = Buffer.alloc(0);
  private recordedCount = 0;
  /** Paths looked up with a hit or recorded, in order (a Set is made only when the file is rewritten: 20,000 Set inserts per build cost more than the rare rewrite). */
  private readonly used: string[] = [];
  private dirty = false;
  /** Paths recorded since the load (or last save) of an intact file: a save may append just these. */
  private readonly changed = new Set<string>();
  /** The file was read intact (and appending to it keeps it valid). */
  private appendable = false;
  /** Records in the file (appends make it grow; a rewrite compacts it). */
  private lines = 0;

  private constructor(readonly file: string | undefined) {}

  /** Loads the cache from `file` (created on save); an unreadable or corrupt file gives an empty cache. */
  static load(file: string): StatCache {
    const cache = new StatCache(file);
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch {
      // First build after an upgrade: the text cache of version 3 (as large again) is not read any more.
      const old = /^(.*\/context-stat-)v4-([0-9a-f]{32})\.bin$/.exec(file);
      if (old !== null) rmSync(`${old[1]}v3-${old[2]}.json`, { force: true });
      return cache;
    }
    if (data.length < HEADER.length || !data.subarray(0, HEADER.length).equals(HEADER)) {
      cache.dirty = true;
      return cache;
    }
    // Segments (the first write, then one per append): u32 count, u32 path bytes, the tails, the paths.
    let at = HEADER.length;
    let n = 0;
    while (at < data.length) {
      const count = at + 8 <= data.length ? data.readUInt32LE(at) : -1;
      const pathBytes = count < 0 ? 0 : data.readUInt32LE(at + 4);
      const tails = at + 8;
      const end = tails + count * TAIL + pathBytes;
      // One decode and split per segment (a decode per path costs ~1 us each).
      const paths = count <= 0 || end > data.length ? [] : data.toString('utf8', tails + count * TAIL, end).split('\0');
      if (paths.length !== count || count === 0) {
        cache.rows.clear();
        cache.dirty = true;
        return cache;
      }
      for (let i = 0; i < count; i++) cache.rows.set(paths[i] as string, tails + i * TAIL);
      at = end;
      n += count;
    }
    cache.data = data;
    cache.appendable = true;
    cache.lines = n;
    return cache;
  }

  /** An in-memory cache that is never persisted. */
  static inMemory(): StatCache {
    return new StatCache(undefined);
  }

  /** Number of entries held. */
  get size(): number {
    return this.rows.size;
  }

  /** The buffer and offset of the tail of `where` (a value of `rows`). */
  private tailOf(where: number): [Buffer, number] {
    return where >= 0 ? [this.data, where] : [this.recorded, (-1 - where) * TAIL];
  }

  /** The cached digest of `absPath` when its lstat fingerprint is unchanged, else undefined. */
  lookup(absPath: string, st: FileFingerprint): Digest | undefined {
    const where = this.rows.get(absPath);
    if (where === undefined) return undefined;
    const buf = where >= 0 ? this.data : this.recorded;
    const at = where >= 0 ? where : (-1 - where) * TAIL;
    if (buf.readDoubleLE(at) !== st.size || buf.readDoubleLE(at + 8) !== st.mtimeMs || buf.readDoubleLE(at + 16) !== st.ctimeMs
      || buf.readDoubleLE(at + 24) !== st.ino || buf.readDoubleLE(at + 32) !== st.dev) return undefined;
    this.used.push(absPath);
    return `sha256:${buf.toString('hex', at + 40, at + TAIL)}` as Digest;
  }

  /** Records the digest of `absPath` as read while it had the lstat `st`. */
  record(absPath: string, st: FileFingerprint, digest: Digest): void {
    if (this.recorded.length < (this.recordedCount + 1) * TAIL) {
      const grown = Buffer.alloc(Math.max(64, this.recordedCount * 2) * TAIL);
      this.recorded.copy(grown);
      this.recorded = grown;
    }
    putTail(this.recorded, this.recordedCount * TAIL, st, digestHex(digest));
    this.rows.set(absPath, -1 - this.recordedCount++);
    this.changed.add(absPath);
    this.used.push(absPath);
    this.dirty = true;
  }

  /** Encodes the records of `paths` (at most `max`) as one segment; undefined when there is none. */
  private encode(paths: Iterable<string>, max: number): { buf: Buffer; count: number } | undefined {
    const names: string[] = [];
    const tails: Buffer[] = [];
    for (const path of paths) {
      const where = this.rows.get(path);
      if (where === undefined || path.includes('\0')) continue;
      if (names.length >= max) break;
      const [buf, at] = this.tailOf(where);
      names.push(path);
      tails.push(buf.subarray(at, at + TAIL));
    }
    if (names.length === 0) return undefined;
    const text = Buffer.from(names.join('\0'), 'utf8');
    const head = Buffer.allocUnsafe(8);
    head.writeUInt32LE(names.length, 0);
    head.writeUInt32LE(text.length, 4);
    return { buf: Buffer.concat([head, ...tails, text]), count: names.length };
  }

  /**
   * Writes the cache when it changed: up to {@link MAX_APPENDED} records made since the load are
   * appended to the intact file, else it is rewritten atomically (temp file + rename), which also
   * compacts it. No-op for in-memory caches.
   */
  save(): void {
    if (this.file === undefined || !this.dirty) return;
    // A few changed records (a touched or edited file): append them instead of rewriting every one.
    if (this.appendable && this.changed.size <= MAX_APPENDED && this.lines + this.changed.size <= 2 * this.rows.size + MAX_APPENDED) {
      const seg = this.encode(this.changed, Infinity);
      try {
        // Never creates the file: a vanished one is rewritten whole below.
        const fd = openSync(this.file, constants.O_WRONLY | constants.O_APPEND);
        try {
          if (seg !== undefined) writeSync(fd, seg.buf);
        } finally {
          closeSync(fd);
        }
        this.lines += seg?.count ?? 0;
        this.changed.clear();
        this.dirty = false;
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new TsbuildError('CTX_STAT_CACHE', `cannot write the stat cache ${this.file}: ${(e as Error).message}`, { cause: e });
        }
      }
    }
    const used = new Set(this.used);
    const rest = [...this.rows.keys()].filter((p) => !used.has(p));
    const seg = this.encode([...used, ...rest], MAX_ENTRIES);
    const tmp = `${this.file}.${randomBytes(8).toString('hex')}.tmp`;
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      writeFileSync(tmp, seg === undefined ? HEADER : Buffer.concat([HEADER, seg.buf]));
      renameSync(tmp, this.file);
      this.appendable = true;
      this.lines = seg?.count ?? 0;
      this.changed.clear();
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new TsbuildError('CTX_STAT_CACHE', `cannot write the stat cache ${this.file}: ${(e as Error).message}`, { cause: e });
    }
    this.dirty = false;
  }
}

/** A file name (under the store's `cache/` dir) for the stat cache of one context directory. */
export function statCacheName(contextDir: string): string {
  return `context-stat-v4-${createHash('sha256').update(contextDir).digest('hex').slice(0, 32)}.bin`;
}
