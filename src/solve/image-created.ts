import type { Digest } from '../core/index.js';
import type { Store } from '../store/index.js';
import { BuildCacheStore } from './cache-store.js';
import type { SolveResult } from './solver.js';

/**
 * The `created` time of a built image without SOURCE_DATE_EPOCH: the newest creation time of the
 * cache records of the steps that made the image's own layers, so a fully cached rebuild gives the
 * same config, hence the same image ID (as docker and buildah). `now` when a layer has no record
 * or the build made no layer of its own.
 */
export async function imageCreatedTime(store: Store, result: SolveResult, now: Date): Promise<Date> {
  const wanted = new Set(result.output.layers.map((l) => l.diffId));
  const cache = new BuildCacheStore(store);
  let newest: number | undefined;
  for (const [vertex, layer] of result.layers) {
    if (!wanted.has(layer.diffId)) continue;
    // The solve knows the times of the records it used; an imported layer's record was written when pulled.
    let created = result.recordTimes.get(vertex);
    if (created === undefined) {
      const key = result.keys.get(vertex) as Digest | undefined;
      created = key === undefined ? undefined : (await cache.get(key))?.created;
    }
    const t = created === undefined ? Number.NaN : Date.parse(created);
    if (!Number.isFinite(t)) return now;
    newest = newest === undefined ? t : Math.max(newest, t);
  }
  return newest === undefined ? now : new Date(newest);
}
