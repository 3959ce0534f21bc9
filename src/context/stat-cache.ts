/**
 * The stat cache: (path, size, mtime ns, ctime ns, inode, dev) -> content digest, persisted in one
 * file so an unchanged file is never re-read on the next build. Written atomically (temp + rename);
 * a missing, corrupt or foreign file is ignored and rebuilt.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, type BigIntStats } from 'node:fs';
import { dirname } from 'node:path';
import { TsbuildError, isDigest, type Digest } from '../core/index.js';

const FORMAT = 'tsbuild-stat-cache/1';
/** Entries kept at most; the ones not used by the current build are dropped first. */
const MAX_ENTRIES = 500_000;

/** The identity of a file version as far as the stat cache is concerned. */
interface Fingerprint {
  readonly size: string;
  readonly mtime: string;
  readonly ctime: string;
  readonly ino: string;
  readonly dev: string;
}

interface Row extends Fingerprint {
  readonly digest: Digest;
}

function fingerprintOf(st: BigIntStats): Fingerprint {
  return { size: String(st.size), mtime: String(st.mtimeNs), ctime: String(st.ctimeNs), ino: String(st.ino), dev: String(st.dev) };
}

function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  return a.size === b.size && a.mtime === b.mtime && a.ctime === b.ctime && a.ino === b.ino && a.dev === b.dev;
}

/** A loaded stat cache; not safe to share between processes except through {@link StatCache.save}. */
export class StatCache {
  private readonly rows = new Map<string, Row>();
  private readonly used = new Set<string>();
  private dirty = false;

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
    try {
      const doc = JSON.parse(text) as { format?: unknown; entries?: unknown };
      if (doc.format !== FORMAT || typeof doc.entries !== 'object' || doc.entries === null) return cache;
      for (const [path, value] of Object.entries(doc.entries as Record<string, unknown>)) {
        if (!Array.isArray(value) || value.length !== 6 || !value.every((v) => typeof v === 'string')) continue;
        const [size, mtime, ctime, ino, dev, hex] = value as string[];
        const digest = `sha256:${hex}`;
        if (!isDigest(digest)) continue;
        cache.rows.set(path, { size: size as string, mtime: mtime as string, ctime: ctime as string, ino: ino as string, dev: dev as string, digest });
      }
    } catch {
      cache.rows.clear();
      cache.dirty = true;
    }
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
  lookup(absPath: string, st: BigIntStats): Digest | undefined {
    const row = this.rows.get(absPath);
    if (row === undefined || !sameFingerprint(row, fingerprintOf(st))) return undefined;
    this.used.add(absPath);
    return row.digest;
  }

  /** Records the digest of `absPath` as read while it had the lstat `st`. */
  record(absPath: string, st: BigIntStats, digest: Digest): void {
    this.rows.set(absPath, { ...fingerprintOf(st), digest });
    this.used.add(absPath);
    this.dirty = true;
  }

  /** Writes the cache atomically (temp file + rename) when it changed; no-op for in-memory caches. */
  save(): void {
    if (this.file === undefined || !this.dirty) return;
    const entries: Record<string, string[]> = {};
    let n = 0;
    const put = (path: string, row: Row): void => {
      entries[path] = [row.size, row.mtime, row.ctime, row.ino, row.dev, row.digest.slice(7)];
      n++;
    };
    for (const path of this.used) {
      const row = this.rows.get(path);
      if (row !== undefined && n < MAX_ENTRIES) put(path, row);
    }
    for (const [path, row] of this.rows) if (!this.used.has(path) && n < MAX_ENTRIES) put(path, row);
    const tmp = `${this.file}.${randomBytes(8).toString('hex')}.tmp`;
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      writeFileSync(tmp, JSON.stringify({ format: FORMAT, entries }));
      renameSync(tmp, this.file);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new TsbuildError('CTX_STAT_CACHE', `cannot write the stat cache ${this.file}: ${(e as Error).message}`, { cause: e });
    }
    this.dirty = false;
  }
}

/** A file name (under the store's `cache/` dir) for the stat cache of one context directory. */
export function statCacheName(contextDir: string): string {
  return `context-stat-${createHash('sha256').update(contextDir).digest('hex').slice(0, 32)}.json`;
}
