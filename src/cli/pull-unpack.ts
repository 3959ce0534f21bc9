/**
 * `tsbuild pull` unpacks while it downloads, as docker and containerd do: the registry's
 * LayerUnpackHook composed with the snapshotter here (registry and snapshot do not know each
 * other). Each layer becomes the committed snapshot of its chain; the layers unpack in parallel
 * (an overlay layer is a directory of its own) and are published in chain order, each only after
 * its blob digest (the registry) and its diffID (the snapshotter) were verified.
 */
import type { Readable } from 'node:stream';
import type { Digest } from '../core/index.js';
import { decompress, type CompressionTools } from '../layer/index.js';
import type { PullLayer } from '../registry/index.js';
import { chainIdOf, openSnapshotter, type Snapshotter } from '../snapshot/index.js';
import type { Store } from '../store/index.js';

/** For `tsbuild pull`, which loads the compression tools' lookup (compress.ts: child_process, zlib) with this module only. */
export { findCompressionTools } from '../layer/index.js';

/** Options of {@link snapshotUnpacker}. */
export interface SnapshotUnpackerOptions {
  readonly tools: CompressionTools;
  readonly signal?: AbortSignal;
  /** Default: the store's snapshotter as `run` opens it (overlay when it works, else naive). */
  readonly snapshotter?: Snapshotter;
}

/** A promise with its settle functions; its rejection is never unhandled. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/**
 * The unpack of the layers `layers` of one pull (the function a LayerUnpackHook returns): layer i
 * becomes the committed snapshot `chainIdOf(chain of i-1, diffId i)` from `bytes` (the blob as it
 * downloads) or, when undefined, from the stored blob. Throws SNAPSHOT_*, LAYER_* and the
 * download's error.
 */
export function snapshotUnpacker(store: Store, layers: readonly PullLayer[], options: SnapshotUnpackerOptions): (layer: PullLayer, bytes: Readable | undefined) => Promise<void> {
  const opened = options.snapshotter !== undefined
    ? Promise.resolve(options.snapshotter)
    : openSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp }).then((o) => o.snapshotter);
  opened.catch(() => undefined);
  const chains: Digest[] = [];
  let chain: Digest | undefined;
  for (const l of layers) chains.push((chain = chainIdOf(chain, l.diffId)));
  const committed = layers.map(() => deferred());
  return async (layer, bytes) => {
    const mine = committed[layer.index];
    try {
      const snapshotter = await opened;
      const below = layer.index === 0 ? undefined : committed[layer.index - 1];
      let source = bytes;
      if (source !== undefined && below !== undefined && !snapshotter.unpacksWithoutParent) {
        // A naive layer starts as a copy of its parent: holding the download until the parent is made
        // could stall it past the registry's idle timeout. It goes on into the store (the stream ends
        // once the blob is verified and stored), and the layer is read there.
        for await (const chunk of source) void chunk; // discarded: the store has them
        source = undefined;
      }
      const from = source;
      const openTar = async (): Promise<Readable> => decompress(from ?? (await store.blobs.open(layer.descriptor.digest)), { tools: options.tools });
      await snapshotter.unpack(chains[layer.index - 1], layer.diffId, openTar, {
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        ...(below === undefined ? {} : { parentReady: below.promise }),
      });
      mine?.resolve();
    } catch (err) {
      mine?.reject(err);
      throw err;
    }
  };
}
