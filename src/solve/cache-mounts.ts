import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, MediaType, sha256Of, TsbuildError, type Descriptor, type Digest } from '../core/index.js';
import { applyLayer, decompress, packLayer, type CompressionTools } from '../layer/index.js';
import type { BuildGraph, ExecOp } from '../plan/index.js';
import { compressedLayer } from '../registry/index.js';
import { acquireLock, type Store } from '../store/index.js';

/**
 * `RUN --mount=type=cache` directories in an exported cache. Only mounts without `from=` are
 * carried (a seeded cache is per seed content and is rebuilt from its stage). The directory of a
 * mount id is the one the exec op uses: `<store>/cache/mounts/<hex sha256("cache-mount\0" + id)>`.
 */

/** One cache mount of an exported cache: its id and the layer tar of its directory. */
export interface CacheMountRecord {
  readonly id: string;
  readonly diffId: Digest;
  readonly size: number;
  /** The compressed blob in the manifest's layers. */
  readonly blob: Descriptor;
}

/** The host directory of the cache mount `id` (no `from=`) under the store's cache directory. */
export function cacheMountDir(cacheRoot: string, id: string): string {
  return join(cacheRoot, 'mounts', digestHex(sha256Of(`cache-mount\0${id}`)));
}

/** The ids of the cache mounts (without `from=`) of one RUN. */
export function execCacheMountIds(op: ExecOp): string[] {
  return op.mounts.flatMap((m) => (m.type === 'cache' && m.from === undefined ? [m.id] : []));
}

/** The ids of the cache mounts (without `from=`) of every RUN of `graph`, sorted, each once. */
export function cacheMountIds(graph: BuildGraph): string[] {
  const ids = new Set<string>();
  for (const v of graph.vertices) if (v.op.type === 'exec') for (const id of execCacheMountIds(v.op)) ids.add(id);
  return [...ids].sort();
}

/**
 * Packs the directory of cache mount `id` into a gzip layer blob of the store (under the mount's
 * lock, so a step writing it is not caught half-way). Resolves to undefined when the mount was
 * never used here. The uncompressed tar is dropped once compressed (the gzip memo keeps the pair).
 */
export async function packCacheMount(store: Store, id: string, signal?: AbortSignal): Promise<CacheMountRecord | undefined> {
  const dir = cacheMountDir(store.paths.cache, id);
  if (!(await stat(dir).then((s) => s.isDirectory(), () => false))) return undefined;
  const lock = await acquireLock(`${dir}.lock`, { timeoutMs: 600_000, ...(signal === undefined ? {} : { signal }) });
  let tar;
  try {
    const packed = packLayer(dir, { mode: 'tree' });
    const [info, result] = await Promise.all([store.blobs.put(packed.stream, {}, signal === undefined ? {} : { signal }), packed.done]);
    tar = { ...info, diffId: result.diffId };
  } finally {
    await lock.release();
  }
  const blob = await compressedLayer(store, { mediaType: MediaType.ociLayer, digest: tar.digest, size: tar.size }, signal);
  await store.blobs.delete(tar.digest);
  return { id, diffId: tar.diffId, size: tar.size, blob: { mediaType: blob.mediaType, digest: blob.digest, size: blob.size } };
}

/**
 * Unpacks an imported cache mount whose compressed blob is in the store into its directory, unless
 * the directory exists already (local content wins). Extracted beside it and renamed into place,
 * so a failure never leaves half a cache. SECURITY: the tar is applied with the layer module's
 * safe apply (nothing outside the directory). Throws LAYER_* / SOLVE_CACHE_IO.
 */
export async function unpackCacheMount(store: Store, record: CacheMountRecord, tools: CompressionTools, signal?: AbortSignal): Promise<boolean> {
  const dir = cacheMountDir(store.paths.cache, record.id);
  if (await stat(dir).then(() => true, () => false)) return false;
  const tmp = `${dir}.import-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await mkdir(join(store.paths.cache, 'mounts'), { recursive: true });
    await applyLayer(decompress(await store.blobs.open(record.blob.digest), { tools }), tmp, signal === undefined ? {} : { signal });
    await rename(tmp, dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST' && err.code !== 'ENOTEMPTY') throw err;
    });
    return true;
  } catch (err) {
    if (err instanceof TsbuildError) throw err;
    throw new TsbuildError('SOLVE_CACHE_IO', `cannot import cache mount "${record.id}" into ${dir}: ${(err as Error).message}`, { cause: err });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
