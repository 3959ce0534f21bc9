/**
 * solve: runs a BuildGraph (from src/plan) into layers in the store and exports the image.
 *
 * Typical use (the CLI wires the effects):
 * ```ts
 * const key = baseImageKey(ref, formatPlatform(platform));                          // ref + platform, as the graph names it
 * const bases = new Map([[key, await resolveBaseImage(store, ref, platform)]]);   // FROM images, local store
 * const { graph } = planBuild(df, { ..., baseImages: new Map([[key, bases.get(key).config]]) });
 * const result = await solveGraph(graph, { store, snapshotter, sandbox, compressionTools, events }, options);
 * const image = await exportImage(store, graph, result.output, { tags, created });
 * ```
 * Errors: TsbuildErrors (RUN_EXIT for a failing RUN, SOLVE_* for copy/cancel problems, the codes of
 * the modules below, CLI_NOT_SUPPORTED for features of later work).
 */
export type { CacheImport, Entitlement, FsState, LayerRef, LazySolveDeps, ResolvedBase, SolveDeps, SolveOptions } from './types.js';
export { solveGraph, type SolveResult } from './solver.js';
export { exportImage, finalConfig, type ExportedImage, type ExportOptions } from './export.js';
export { imageCreatedTime } from './image-created.js';
export { resolveBaseImage, baseImageState, BUILD_LAYER_MEDIA_TYPE } from './ops/source.js';
export { BuildCacheStore, type CacheRecord } from './cache-store.js';
export { CACHE_CONFIG_MEDIA_TYPE, createCacheDocuments, parseCacheConfig, type CacheConfig, type CacheConfigRecord, type CacheDocuments } from './cache-format.js';
export { describeCacheLocation, readCacheConfig, type CacheLocation } from './cache-location.js';
export { importBuildCache, ImportedCache, type CacheImportOptions } from './cache-import.js';
export { exportBuildCache, selectExportedSteps, type CacheExportMode, type CacheExportOptions, type CacheExportResult } from './cache-export.js';
export { RootfsView, type ViewEntry, type WriteMeta } from './rootfs-view.js';
export { findHostTools, type HostTools } from './ops/add-tools.js';
