import type { EventSink } from '../core/index.js';
import type { CompressionTools } from '../layer/index.js';
import type { BuildGraph } from '../plan/index.js';
import type { HttpRegistryClient } from '../registry/index.js';
import { describeCacheLocation, exportBuildCache, importBuildCache, type CacheLocation, type ImportedCache, type SolveResult } from '../solve/index.js';
import type { Store } from '../store/index.js';
import type { BuildCacheFlags } from './build-cache-spec.js';

// The flag parsing lives in build-cache-spec.ts (loaded by every build; this module only with cache flags).
export { parseBuildCacheFlags, type BuildCacheFlags } from './build-cache-spec.js';

/** What the build needs of its cache flags while it runs. */
export interface BuildCacheIo {
  /** The imported records (undefined without --cache-from). */
  readonly cacheImport: ImportedCache | undefined;
  /** Exports the solved build to every --cache-to (an `ignore-error=true` failure is a warning). */
  exportAll(graph: BuildGraph, result: Pick<SolveResult, 'layers' | 'keys'>): Promise<void>;
}

/** What {@link openBuildCache} works with. */
export interface BuildCacheDeps {
  readonly store: Store;
  /** The build's registry client (the caller closes it). */
  readonly client: HttpRegistryClient;
  readonly events: EventSink;
  readonly tools: CompressionTools;
  readonly signal: AbortSignal;
}

/**
 * Reads the caches of `flags.from` (manifests and configs; a missing one is a warning) and
 * prepares the exports. The build's registry client serves every registry location.
 */
export async function openBuildCache(flags: BuildCacheFlags, deps: BuildCacheDeps): Promise<BuildCacheIo> {
  const { store, events, client, signal } = deps;
  const fromLocs: CacheLocation[] = flags.from.map((s) => (s.type === 'registry' ? { kind: 'registry', ref: s.ref, client } : { kind: 'local', dir: s.src, tag: s.tag }));
  const toLocs = flags.to.map((s) => ({ spec: s, loc: (s.type === 'registry' ? { kind: 'registry', ref: s.ref, client } : { kind: 'local', dir: s.dest, tag: s.tag }) as CacheLocation }));
  const cacheImport = fromLocs.length === 0 ? undefined : await importBuildCache(store, fromLocs, { tools: deps.tools, events, signal });
  return {
    cacheImport,
    async exportAll(graph, result) {
      for (const { spec, loc } of toLocs) {
        const name = describeCacheLocation(loc);
        try {
          const r = await exportBuildCache(store, graph, result, loc, {
            mode: spec.mode, mounts: spec.mounts, signal, ...(cacheImport === undefined ? {} : { cacheImport }),
          });
          events({ type: 'info', message: `exporting cache to ${name} (mode=${spec.mode}): ${r.records} records, ${r.mounts} cache mounts, ${r.layers} layers, manifest ${r.manifest.digest} done` });
        } catch (err) {
          if (!spec.ignoreError || signal.aborted) throw err;
          events({ type: 'warning', message: `cannot export the cache to ${name}: ${err instanceof Error ? err.message : String(err)}` });
        }
      }
    },
  };
}
