import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, isDigest, TsbuildError, type Digest } from '../core/index.js';
import type { Store } from '../store/index.js';
import type { LayerRef } from './types.js';

/** What a cache record says a step produced. */
export interface CacheRecord {
  /** The layer the step added on top of its parent. */
  readonly layer: LayerRef;
  /** ISO 8601 time the record was written. */
  readonly created: string;
}

const FORMAT = 'tsbuild-build-cache/1';

function isLayerRef(v: unknown): v is LayerRef {
  const l = v as Partial<LayerRef> | null;
  return l !== null && typeof l === 'object' && isDigest(l.diffId) && isDigest(l.digest) && Number.isSafeInteger(l.size) && typeof l.mediaType === 'string';
}

/**
 * Build cache records, one JSON file per cache key under `<store>/cache/build/`. Writes are atomic
 * (tmp/ + rename); a missing, corrupt or foreign record reads as a miss. A record only counts
 * when its layer blob is still in the store.
 */
export class BuildCacheStore {
  readonly #dir: string;
  /** The records directory, made by the first put (not by every one: a thread-pool round trip per step). */
  #made: Promise<unknown> | undefined;

  constructor(private readonly store: Store) {
    this.#dir = join(store.paths.cache, 'build');
  }

  #file(key: Digest): string {
    return join(this.#dir, `${digestHex(key)}.json`);
  }

  /** The record of `key` whose layer blob exists, or undefined (a miss). */
  async get(key: Digest): Promise<CacheRecord | undefined> {
    let text: string;
    try {
      // Small files read and written synchronously: each thread-pool round trip costs ~45 us of CPU here (see put).
      text = readFileSync(this.#file(key), 'utf8');
    } catch {
      return undefined;
    }
    let doc: { format?: unknown; key?: unknown; layer?: unknown; created?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      return undefined;
    }
    if (doc.format !== FORMAT || doc.key !== key || !isLayerRef(doc.layer)) return undefined;
    if (!(await this.store.blobs.has(doc.layer.digest))) return undefined;
    return { layer: doc.layer, created: typeof doc.created === 'string' ? doc.created : '' };
  }

  /**
   * Writes the record of `key` atomically (tmp/ + rename, replacing an older one). Not fsynced: a
   * record lost or emptied by a crash only reads as a miss. Throws STORE_IO.
   */
  async put(key: Digest, layer: LayerRef, created: Date = new Date()): Promise<void> {
    const tmp = join(this.store.paths.tmp, `cache-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await (this.#made ??= mkdir(this.#dir, { recursive: true }));
      // A new small file, written synchronously (open, write, close: three thread-pool round trips of ~45 us of CPU
      // each on a busy 2-core machine, 10-20 us in all this way); the rename stays asynchronous: replacing a record
      // frees its blocks, which ext4 mounted with `discard` and without a journal trims synchronously (1-3 ms).
      writeFileSync(tmp, `${JSON.stringify({ format: FORMAT, key, layer, created: created.toISOString() })}\n`, { mode: 0o644 });
      await rename(tmp, this.#file(key)).catch(async (err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await mkdir(this.#dir, { recursive: true }); // removed since the first write
        await rename(tmp, this.#file(key));
      });
    } catch (err) {
      this.#made = undefined; // made again by the next put
      await rm(tmp, { force: true });
      throw new TsbuildError('STORE_IO', `cannot write cache record ${this.#file(key)}: ${(err as Error).message}`, { cause: err });
    }
  }
}
