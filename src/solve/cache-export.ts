import type { Descriptor, Digest, EventSink } from '../core/index.js';
import type { BuildGraph, Vertex } from '../plan/index.js';
import { compressedLayer, isUncompressedLayer } from '../registry/index.js';
import { acquireLease, type Store } from '../store/index.js';
import { createCacheDocuments, type CacheConfigRecord } from './cache-format.js';
import { cacheMountIds, packCacheMount, type CacheMountRecord } from './cache-mounts.js';
import { writeCache, type CacheLocation } from './cache-location.js';
import type { SolveResult } from './solver.js';
import type { CacheImport } from './types.js';

/** `min`: the steps whose layers are in the final image; `max`: every step of every stage built. */
export type CacheExportMode = 'min' | 'max';

/** Options of {@link exportBuildCache}. */
export interface CacheExportOptions {
  readonly mode: CacheExportMode;
  /** Also export the `RUN --mount=type=cache` directories the build's steps use (default true). */
  readonly mounts?: boolean;
  /** The build's imported cache: layers it served but never pulled are pulled to be exported. */
  readonly cacheImport?: CacheImport;
  readonly signal?: AbortSignal;
  readonly onEvent?: EventSink;
}

/** What {@link exportBuildCache} wrote. */
export interface CacheExportResult {
  readonly manifest: Descriptor;
  readonly records: number;
  readonly layers: number;
  /** Cache mounts exported. */
  readonly mounts: number;
}

/** The vertex ids whose records `mode` exports. */
export function selectExportedSteps(graph: BuildGraph, result: Pick<SolveResult, 'layers'>, mode: CacheExportMode): string[] {
  if (mode === 'max') return [...result.layers.keys()];
  const byId = new Map<string, Vertex>(graph.vertices.map((v) => [v.id, v]));
  const out: string[] = [];
  // The final image's layers come from the output's first-input chain (FROM stage chains included).
  for (let v = byId.get(graph.output); v !== undefined; v = byId.get(v.inputs[0] ?? '')) {
    if (result.layers.has(v.id)) out.push(v.id);
  }
  return out.reverse();
}

/**
 * Exports the cache records of a solved build to `location`: each selected step's key, parent key
 * and layer, with the layer gzip-compressed once per diffID (remembered by the registry module),
 * plus the cache mount directories the build's RUN steps use (unless `mounts: false`),
 * as an OCI manifest ({@link createCacheDocuments}) pushed to a registry or written into an OCI
 * layout. A gc lease protects the blobs meanwhile. Throws REG_*, STORE_*, SOLVE_CACHE_*.
 */
export async function exportBuildCache(store: Store, graph: BuildGraph, result: Pick<SolveResult, 'layers' | 'keys'>, location: CacheLocation, options: CacheExportOptions): Promise<CacheExportResult> {
  const byId = new Map<string, Vertex>(graph.vertices.map((v) => [v.id, v]));
  const steps = selectExportedSteps(graph, result, options.mode).flatMap((id) => {
    const layer = result.layers.get(id);
    const key = result.keys.get(id);
    const v = byId.get(id);
    // Only layers the build wrote itself (stored uncompressed, digest = diffID) are exported.
    if (layer === undefined || key === undefined || v === undefined || layer.digest !== layer.diffId || !isUncompressedLayer(layer)) return [];
    return [{ v, key, layer }];
  });
  const lease = await acquireLease(store);
  try {
    const signal = options.signal ?? new AbortController().signal;
    await options.cacheImport?.ensure(steps.map((s) => s.layer), signal);
    const records: CacheConfigRecord[] = [];
    const compressed = new Map<Digest, Descriptor>();
    for (const { v, key, layer } of steps) {
      let blob = compressed.get(layer.diffId);
      if (blob === undefined) {
        blob = await compressedLayer(store, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }, options.signal);
        compressed.set(layer.diffId, blob);
      }
      const parent = v.inputs[0] === undefined ? undefined : result.keys.get(v.inputs[0]);
      records.push({ key, ...(parent === undefined ? {} : { parent }), name: v.name, diffId: layer.diffId, size: layer.size, mediaType: layer.mediaType, blob });
    }
    const mounts: CacheMountRecord[] = [];
    for (const id of options.mounts === false ? [] : cacheMountIds(graph)) {
      const m = await packCacheMount(store, id, options.signal);
      if (m !== undefined) mounts.push(m);
    }
    const docs = createCacheDocuments(records, mounts);
    await store.blobs.putBytes(docs.config, { digest: docs.configDescriptor.digest });
    await store.blobs.putBytes(docs.manifest, { digest: docs.manifestDescriptor.digest });
    await writeCache(location, store, docs, {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }),
    });
    return { manifest: docs.manifestDescriptor, records: records.length, layers: docs.layers.length, mounts: mounts.length };
  } finally {
    await lease.release();
  }
}
