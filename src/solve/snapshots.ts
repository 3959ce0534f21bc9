import { randomBytes } from 'node:crypto';
import { TsbuildError, type Digest } from '../core/index.js';
import { decompress, packLayer } from '../layer/index.js';
import { chainIdOfStack, type ActiveSnapshot } from '../snapshot/index.js';
import { BUILD_LAYER_MEDIA_TYPE } from './ops/source.js';
import { RootfsView } from './rootfs-view.js';
import type { FsState, LayerRef, SolveDeps } from './types.js';

/**
 * Makes the committed snapshot chain of `state` (unpacking each missing layer once from its blob)
 * and returns its chain ID, undefined for an empty state.
 */
export async function ensureChain(deps: SolveDeps, state: FsState, signal: AbortSignal): Promise<Digest | undefined> {
  // Fast path (every step of a build, whose chain grows by one per step): the top snapshot exists, so
  // its whole chain does (a parent cannot be removed while it has a child): one metadata read, not one per layer.
  const top = chainIdOfStack(state.layers.map((l) => l.diffId));
  if (top !== undefined && (await deps.snapshotter.stat(top))?.kind === 'committed') return top;
  let chain: Digest | undefined;
  for (const layer of state.layers) {
    signal.throwIfAborted();
    const info = await deps.snapshotter.unpack(chain, layer.diffId, async () => decompress(await deps.store.blobs.open(layer.digest), { tools: deps.compressionTools }), { signal });
    chain = info.name as Digest;
  }
  return chain;
}

/** A fresh active snapshot key (unique per process and call). */
export function newSnapshotKey(): string {
  return `build-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** The merged view of an active snapshot (its top layer writable). */
export function viewOf(active: ActiveSnapshot): RootfsView {
  const m = active.mounts();
  if (m.type === 'bind') return new RootfsView([m.source], 'trusted');
  // The lowers are committed snapshots (immutable): small file reads below the fresh upperdir are cached.
  return new RootfsView([m.upperdir, ...m.lowerdirs], m.options.includes('userxattr') ? 'user' : 'trusted', { immutableLowers: true });
}

/**
 * Runs `fn` on an active snapshot over `state`; on success packs its change set into a layer blob
 * (uncompressed: the blob digest is the diffID), commits the snapshot and returns the layer. The
 * active snapshot is removed on failure.
 */
export async function withActiveSnapshot(
  deps: SolveDeps,
  state: FsState,
  signal: AbortSignal,
  sourceDateEpoch: number | undefined,
  fn: (active: ActiveSnapshot) => Promise<void>,
): Promise<LayerRef> {
  const parent = await ensureChain(deps, state, signal);
  const key = newSnapshotKey();
  const active = await deps.snapshotter.prepare(key, parent);
  let committed = false;
  try {
    await fn(active);
    signal.throwIfAborted();
    const layer = await commitActiveSnapshot(deps, key, signal, sourceDateEpoch);
    committed = true;
    return layer;
  } finally {
    if (!committed) await deps.snapshotter.remove(key).catch(() => undefined);
  }
}

/**
 * Runs `fn` with a read-only view of a committed state (an active snapshot that is removed again
 * afterwards, so nothing is ever written to the state).
 */
export async function withStateView<T>(deps: SolveDeps, state: FsState, signal: AbortSignal, fn: (view: RootfsView) => Promise<T>): Promise<T> {
  const parent = await ensureChain(deps, state, signal);
  const key = newSnapshotKey();
  const active = await deps.snapshotter.prepare(key, parent);
  try {
    return await fn(viewOf(active));
  } finally {
    await deps.snapshotter.remove(key).catch(() => undefined);
  }
}

/**
 * Packs the change set of the active snapshot `key` into a layer blob (uncompressed: the blob digest
 * is the diffID) and commits the snapshot under that diffID. The caller removes the snapshot when this fails.
 */
export async function commitActiveSnapshot(deps: SolveDeps, key: string, signal: AbortSignal, sourceDateEpoch: number | undefined): Promise<LayerRef> {
  const diff = await deps.snapshotter.diff(key);
  try {
    const packed = packLayer(diff.dir, { mode: diff.mode, ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }) });
    const blob = await deps.store.blobs.put(packed.stream, undefined, { signal });
    const result = await packed.done;
    if (result.diffId !== blob.digest) {
      throw new TsbuildError('INTERNAL', `layer blob ${blob.digest} does not match its diffID ${result.diffId}`);
    }
    await deps.snapshotter.commit(key, result.diffId);
    return { diffId: result.diffId, digest: blob.digest, size: blob.size, mediaType: BUILD_LAYER_MEDIA_TYPE };
  } finally {
    await diff.release();
  }
}
