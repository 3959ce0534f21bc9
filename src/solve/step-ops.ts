/**
 * What running a step needs (sandbox, snapshots, layer packing, copy and ADD machinery), gathered
 * here so that the solver loads it with one dynamic import when the first step runs: a fully
 * cached build never loads these modules (start-up time of the bundled CLI).
 */
export { execCacheMountIds } from './cache-mounts.js';
export { expandArchives } from './ops/add-archive.js';
export { contextSources, copyInto, excludeFromSources, resolveChown, viewSources, withHeredocSources } from './ops/copy.js';
export { canStreamCopy, withStreamedCopy } from './ops/copy-layer.js';
export { runExec } from './ops/exec.js';
export { applyMetaToView } from './ops/meta.js';
export { viewOf, withActiveSnapshot, withStateView } from './snapshots.js';
