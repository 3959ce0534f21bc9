/**
 * snapshot: root file systems for build steps and containers. Errors are TsbuildErrors with
 * `SNAPSHOT_*` codes (a bad layer tar keeps its `LAYER_*` code).
 *
 * Typical use (a RUN step):
 * ```ts
 * const { snapshotter } = await openSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp });
 * let chain: Digest | undefined;
 * for (const diffId of baseDiffIds) chain = (await snapshotter.unpack(chain, diffId, () => openLayerTar(diffId))).name as Digest;
 * const active = await snapshotter.prepare(key, chain);
 * // sandbox root: active.mounts() -> { type: 'bind', source } | { type: 'overlay', lowerdirs, upperdir, workdir, options, baseDir, relativeLowerdirs }
 * const diff = await snapshotter.diff(key);
 * const { stream, done } = packLayer(diff.dir, { mode: diff.mode });   // store stream, then
 * await snapshotter.commit(key, (await done).diffId); await diff.release();
 * ```
 * Overlay lowers are nearest first and reachable through short links `<snapshots>/overlay/l/<12 hex>`;
 * a mount of 100+ layers must chdir to `baseDir` and use `relativeLowerdirs` (see formatOverlayData),
 * because mount(2) takes one page of options. `lookup(name, path)` reads the merged view without a mount.
 */
export {
  chainIdOf, chainIdOfStack, checkSnapshotKey,
  type ActiveSnapshot, type BindMount, type OverlayMount, type SnapshotDiff, type SnapshotInfo, type SnapshotMount,
  type Snapshotter, type SnapshotterKind, type UnpackOptions,
} from './snapshotter.js';
export type { SnapshotDirs } from './layout.js';
export { OverlaySnapshotter, type OverlaySnapshotterOptions } from './overlay.js';
export { NaiveSnapshotter, type NaiveSnapshotterOptions } from './naive.js';
export { openSnapshotter, type OpenSnapshotterOptions, type OpenedSnapshotter, type SnapshotterChoice } from './select.js';
export {
  formatOverlayData, mountSnapshot, unmountSnapshot, probeOverlay, MOUNT_DATA_LIMIT,
  type OverlayDataOptions, type OverlayProbe,
} from './mounts.js';
export { copyTree, type CopyOptions } from './copy-tree.js';
export { removeDirTreeSync } from './layout.js';
