/**
 * The stat cache: (path, size, mtime ns, ctime ns, inode, dev) -> content digest, persisted in one
 * file so an unchanged file is never re-read on the next build. Written atomically (temp + rename),
 * or a few changed rows appended (an interrupted append leaves an unterminated line: the file is
 * then treated as corrupt); a missing, corrupt or foreign file is ignored and rebuilt.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { TsbuildError, digestHex, type Digest } from '../core/index.js';

const HEADER = 'tsbuild-stat-cache/3';
/** Entries kept at most; the ones not used by the current build are dropped first. */
const MAX_ENTRIES = 500_000;
/** The digest part of a row; checked when a row is used (checking 20,000 rows at load costs more). */
const HEX_RE = /^[0-9a-f]{64}$/;

/** The lstat fields a stat-cache row is keyed on (Node's Stats has them all; times in ms, see EntryStat). */
export interface FileFingerprint {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly ino: number;
  readonly dev: number;
}

/** `size mtimeMs ctimeMs ino dev` (numbers as JavaScript prints them, exact): the identity of a file version as far as the cache is concerned. */
function fingerprintOf(st: FileFingerprint): string {
  return `${st.size} ${st.mtimeMs} ${st.ctimeMs} ${st.ino} ${st.dev}`;
}

/** Rows recorded since loading, appended to the file (instead of rewriting it) up to this many. */
const MAX_APPENDED = 2_000;

/**
 * A loaded stat cache. File format: a header line, then one `path\tsize mtime ctime ino dev hex`
 * line per file (paths never contain newlines here: such files are simply not cached); a later
 * line for a path replaces an earlier one (a save of a few changed rows appends them).
 */
export class StatCache {
  /** path -> `fingerprint hex` */
  private readonly rows = new Map<string, string>();
  /** Paths looked up with a hit or recorded, in order (a Set is made only when the file is rewritten: 20,000 Set inserts per build cost more than the rare rewrite). */
  private readonly used: string[] = [];
  private dirty = false;
  /** Rows recorded since the load (or last save) of an intact file: a save may append just these. */
  private readonly changed = new Map<string, string>();
  /** The file was read intact (and appending to it keeps it valid). */
  private appendable = false;
  /** Lines in the file (appends make it grow; a rewrite compacts it). */
  private lines = 0;

  private constructor(readonly file: string | undefined) {}

  /** Loads the cache from `file` (created on save); an unreadable or corrupt file gives an empty cache. */
  static load(file: string): StatCache {
    const cache = new StatCache(file);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return cache;
    }
    const lines = text.split('\n');
    if (lines[0] !== HEADER || lines[lines.length - 1] !== '') {
      cache.dirty = true;
      return cache;
    }
    for (let i = 1; i < lines.length - 1; i++) {
      const line = lines[i] as string;
      const tab = line.indexOf('\t');
      const row = line.slice(tab + 1);
      if (tab <= 0) {
        cache.rows.clear();
        cache.dirty = true;
        return cache;
      }
      cache.rows.set(line.slice(0, tab), row);
    }
    cache.appendable = true;
    cache.lines = lines.length - 2;
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

  /** The cached digest of `absPath` when its lstat fingerprint is unchanged, else undefined. */
  lookup(absPath: string, st: FileFingerprint): Digest | undefined {
    const row = this.rows.get(absPath);
    if (row === undefined) return undefined;
    const fp = fingerprintOf(st);
    if (row.length !== fp.length + 65 || !row.startsWith(fp) || row[fp.length] !== ' ') return undefined;
    const hex = row.slice(fp.length + 1);
    if (!HEX_RE.test(hex)) return undefined;
    this.used.push(absPath);
    return `sha256:${hex}` as Digest;
  }

  /** Records the digest of `absPath` as read while it had the lstat `st`. */
  record(absPath: string, st: FileFingerprint, digest: Digest): void {
    if (absPath.includes('\n') || absPath.includes('\t')) return;
    const row = `${fingerprintOf(st)} ${digestHex(digest)}`;
    this.rows.set(absPath, row);
    this.changed.set(absPath, row);
    this.used.push(absPath);
    this.dirty = true;
  }

  /**
   * Writes the cache when it changed: up to {@link MAX_APPENDED} rows recorded since the load are
   * appended to the intact file, else it is rewritten atomically (temp file + rename), which also
   * compacts it. No-op for in-memory caches.
   */
  save(): void {
    if (this.file === undefined || !this.dirty) return;
    // A few changed rows (a touched or edited file): append them instead of rewriting every row.
    if (this.appendable && this.changed.size <= MAX_APPENDED && this.lines + this.changed.size <= 2 * this.rows.size + MAX_APPENDED) {
      let text = '';
      for (const [path, row] of this.changed) text += `${path}\t${row}\n`;
      try {
        // Never creates the file: a vanished one is rewritten whole below.
        const fd = openSync(this.file, constants.O_WRONLY | constants.O_APPEND);
        try {
          writeSync(fd, text);
        } finally {
          closeSync(fd);
        }
        this.lines += this.changed.size;
        this.changed.clear();
        this.dirty = false;
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new TsbuildError('CTX_STAT_CACHE', `cannot write the stat cache ${this.file}: ${(e as Error).message}`, { cause: e });
        }
      }
    }
    const out: string[] = [HEADER];
    const used = new Set(this.used);
    for (const path of used) {
      const row = this.rows.get(path);
      if (row !== undefined && out.length <= MAX_ENTRIES) out.push(`${path}\t${row}`);
    }
    for (const [path, row] of this.rows) if (!used.has(path) && out.length <= MAX_ENTRIES) out.push(`${path}\t${row}`);
    out.push('');
    const tmp = `${this.file}.${randomBytes(8).toString('hex')}.tmp`;
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      writeFileSync(tmp, out.join('\n'));
      renameSync(tmp, this.file);
      this.appendable = true;
      this.lines = out.length - 2;
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
  return `context-stat-v3-${createHash('sha256').update(contextDir).digest('hex').slice(0, 32)}.json`;
}
