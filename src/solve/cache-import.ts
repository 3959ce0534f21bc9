import { TsbuildError, type Digest, type EventSink } from '../core/index.js';
import { decompress, type CompressionTools } from '../layer/index.js';
import type { Store } from '../store/index.js';
import { BuildCacheStore } from './cache-store.js';
import type { CacheConfig, CacheConfigRecord } from './cache-format.js';
import { stat } from 'node:fs/promises';
import { cacheMountDir, unpackCacheMount, type CacheMountRecord } from './cache-mounts.js';
import { describeCacheLocation, fetchCacheBlob, readCacheConfig, type CacheLocation } from './cache-location.js';
import type { CacheImport, LayerRef } from './types.js';

/** Options of {@link importBuildCache}. */
export interface CacheImportOptions {
  /** Decompressors for the imported gzip layers. */
  readonly tools: CompressionTools;
  /** Receives a warning per unusable source and transfer events per pulled layer. */
  readonly events: EventSink;
  readonly signal?: AbortSignal;
}

interface Entry {
  readonly record: CacheConfigRecord;
  readonly loc: CacheLocation;
}

/**
 * The records of the caches named by `--cache-from`, read before solving (manifests and configs
 * only, no layer). A layer is pulled by {@link ensure} when the solver needs its content: it is
 * downloaded compressed, decompressed into the store (verified against its diffID, so the image
 * is the same as on the exporting machine), and a local cache record is written for its keys.
 */
export class ImportedCache implements CacheImport {
  readonly #byKey = new Map<Digest, Entry>();
  readonly #byDiffId = new Map<Digest, Entry>();
  readonly #pulling = new Map<Digest, Promise<void>>();
  readonly #mounts = new Map<string, { readonly record: CacheMountRecord; readonly loc: CacheLocation }>();
  readonly #mountPulls = new Map<string, Promise<void>>();
  readonly #cache: BuildCacheStore;
  /** Layers pulled so far (diffIDs), in order. */
  readonly pulled: Digest[] = [];

  constructor(private readonly store: Store, private readonly options: CacheImportOptions) {
    this.#cache = new BuildCacheStore(store);
  }

  /** Number of cache keys known. */
  get size(): number {
    return this.#byKey.size;
  }

  /** Adds the records and cache mounts of one source (earlier sources win for a key or mount id present in several). */
  add(loc: CacheLocation, config: Pick<CacheConfig, 'records' | 'mounts'>): void {
    for (const record of config.mounts ?? []) if (!this.#mounts.has(record.id)) this.#mounts.set(record.id, { record, loc });
    for (const record of config.records) {
      if (!this.#byKey.has(record.key)) this.#byKey.set(record.key, { record, loc });
      if (!this.#byDiffId.has(record.diffId)) this.#byDiffId.set(record.diffId, { record, loc });
    }
  }

  lookup(key: Digest): LayerRef | undefined {
    const e = this.#byKey.get(key);
    return e === undefined ? undefined : layerOf(e.record);
  }

  async ensure(layers: readonly LayerRef[], signal: AbortSignal): Promise<void> {
    const wanted = new Map<Digest, Entry>();
    for (const l of layers) {
      const e = this.#byDiffId.get(l.diffId);
      if (e !== undefined && l.digest === l.diffId && !wanted.has(l.diffId)) wanted.set(l.diffId, e);
    }
    // All pulls settle before a failure is rethrown: none may still write into the store after the build ended.
    await settleAll([...wanted.values()].map(async (e) => {
      if (await this.store.blobs.has(e.record.diffId)) return;
      let p = this.#pulling.get(e.record.diffId);
      if (p === undefined) {
        p = this.#pull(e, signal);
        this.#pulling.set(e.record.diffId, p);
        p.catch(() => this.#pulling.delete(e.record.diffId));
      }
      await p;
    }));
  }

  async ensureMounts(ids: readonly string[], signal: AbortSignal): Promise<void> {
    await settleAll([...new Set(ids)].map(async (id) => {
      const e = this.#mounts.get(id);
      if (e === undefined) return;
      let p = this.#mountPulls.get(id);
      if (p === undefined) {
        p = this.#pullMount(e.record, e.loc, signal);
        this.#mountPulls.set(id, p);
        p.catch(() => this.#mountPulls.delete(id));
      }
      await p;
    }));
  }

  /** Downloads a cache mount's blob and unpacks it into the mount's directory when that does not exist yet. */
  async #pullMount(record: CacheMountRecord, loc: CacheLocation, signal: AbortSignal): Promise<void> {
    const { blob } = record;
    if (await stat(cacheMountDir(this.store.paths.cache, record.id)).then(() => true, () => false)) return; // local content wins
    const id = blob.digest.slice(7, 19);
    const had = await this.store.blobs.has(blob.digest);
    this.options.events({ type: 'transfer', id, name: `Downloading cache mount ${record.id}`, current: 0, total: blob.size });
    await fetchCacheBlob(loc, this.store, blob, signal);
    try {
      await unpackCacheMount(this.store, record, this.options.tools, signal);
    } finally {
      if (!had) await this.store.blobs.delete(blob.digest).catch(() => false);
    }
    this.options.events({ type: 'transfer', id, name: `Cache mount ${record.id} imported`, current: blob.size, total: blob.size });
  }

  /** Downloads one compressed layer, stores it decompressed, records the keys that produce it. */
  async #pull(e: Entry, signal: AbortSignal): Promise<void> {
    const { record, loc } = e;
    const { blob } = record;
    const id = record.diffId.slice(7, 19);
    const emit = this.options.events;
    emit({ type: 'transfer', id, name: 'Downloading cache layer', current: 0, total: blob.size });
    const had = await this.store.blobs.has(blob.digest);
    await fetchCacheBlob(loc, this.store, blob, signal);
    try {
      const source = await this.store.blobs.open(blob.digest);
      await this.store.blobs.put(decompress(source, { tools: this.options.tools }), { digest: record.diffId, size: record.size }, { signal });
    } catch (err) {
      if (err instanceof TsbuildError && (err.code === 'STORE_DIGEST_MISMATCH' || err.code === 'STORE_SIZE_MISMATCH')) {
        throw new TsbuildError('SOLVE_CACHE_BAD_LAYER', `cache ${describeCacheLocation(loc)}: layer ${blob.digest} does not decompress to ${record.diffId}: ${err.message}`, { cause: err });
      }
      throw err;
    } finally {
      // The compressed copy is not needed once the layer is stored as the build stores its own.
      if (!had) await this.store.blobs.delete(blob.digest).catch(() => false);
    }
    for (const [key, other] of this.#byKey) {
      if (other.record.diffId === record.diffId) await this.#cache.put(key, layerOf(other.record));
    }
    this.pulled.push(record.diffId);
    emit({ type: 'transfer', id, name: 'Pull complete', current: blob.size, total: blob.size });
  }
}

/** Waits for every promise, then rejects with the first failure (if any). */
async function settleAll(promises: readonly Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(promises)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

function layerOf(r: CacheConfigRecord): LayerRef {
  return { diffId: r.diffId, digest: r.diffId, size: r.size, mediaType: r.mediaType };
}

/**
 * Reads the cache manifests and configs of `sources` (in order; no layers). A source that does
 * not exist or cannot be read is a warning, as in BuildKit: the build goes on without it.
 */
export async function importBuildCache(store: Store, sources: readonly CacheLocation[], options: CacheImportOptions): Promise<ImportedCache> {
  const cache = new ImportedCache(store, options);
  for (const loc of sources) {
    const name = describeCacheLocation(loc);
    try {
      const config = await readCacheConfig(loc, store, options.signal);
      if (config === undefined) {
        options.events({ type: 'warning', message: `cache ${name} not found: building without it` });
        continue;
      }
      cache.add(loc, config);
      const mounts = config.mounts?.length ?? 0;
      options.events({ type: 'info', message: `importing cache from ${name}: ${config.records.length} records${mounts === 0 ? '' : `, ${mounts} cache mounts`}` });
    } catch (err) {
      if (options.signal?.aborted === true) throw err;
      options.events({ type: 'warning', message: `cannot import cache from ${name}: ${err instanceof Error ? err.message : String(err)}` });
    }
  }
  return cache;
}
