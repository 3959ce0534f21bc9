import { TsbuildError, type Digest, type ImageConfig, type ImageManifest } from '../core/index.js';
import { parseImageConfig, parseImageDocument, platformFromNode, selectPlatform } from '../image/index.js';
import { decompress, type CompressionTools } from '../layer/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import { resolveImage, type Store } from '../store/index.js';

/** An image ready to run: its config and the committed snapshot chain of its layers. */
export interface RunnableImage {
  /** The image ID (config digest). */
  readonly id: Digest;
  readonly config: ImageConfig;
  /** The top committed snapshot; undefined for an image without layers. */
  readonly chain: Digest | undefined;
}

/**
 * Resolves `text` in the store (an index picks this host's platform), then makes the committed
 * snapshots of its layers (each layer unpacked once, shared by every container and build; `tools`
 * is asked only when a layer must be unpacked).
 * Throws STORE_IMAGE_NOT_FOUND, IMAGE_*, SNAPSHOT_*, LAYER_*.
 */
export async function prepareImage(store: Store, snapshotter: Snapshotter, text: string, tools: () => CompressionTools, signal?: AbortSignal): Promise<RunnableImage> {
  const image = await resolveImage(store, text);
  let doc = parseImageDocument((await store.blobs.readJson(image.descriptor.digest)).value, image.descriptor.mediaType, `manifest ${image.descriptor.digest}`);
  if (doc.kind === 'index') {
    const d = selectPlatform(doc.index, platformFromNode(process.platform, process.arch));
    doc = parseImageDocument((await store.blobs.readJson(d.digest)).value, d.mediaType, `manifest ${d.digest}`);
    if (doc.kind === 'index') throw new TsbuildError('IMAGE_NESTED_INDEX', `image ${text} is an index of indexes`, { exitCode: 125 });
  }
  const manifest: ImageManifest = doc.manifest;
  const config = parseImageConfig((await store.blobs.readJson(manifest.config.digest)).value, `config ${manifest.config.digest}`);
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new TsbuildError('IMAGE_BAD_CONFIG', `image ${text} has ${manifest.layers.length} layers but ${diffIds.length} diff IDs`, { exitCode: 125 });
  }
  let chain: Digest | undefined;
  for (const [i, layer] of manifest.layers.entries()) {
    signal?.throwIfAborted();
    const info = await snapshotter.unpack(chain, diffIds[i] as Digest, async () => decompress(await store.blobs.open(layer.digest), { tools: tools() }), signal === undefined ? {} : { signal });
    chain = info.name as Digest;
  }
  return { id: manifest.config.digest, config, chain };
}
