import { isTsbuildError, MediaType, notSupportedYet, TsbuildError, type Digest, type Platform } from '../../core/index.js';
import { parseImageConfig, parseImageDocument, selectPlatform } from '../../image/index.js';
import { resolveImage, type Store } from '../../store/index.js';
import type { FsState, LayerRef, ResolvedBase } from '../types.js';

/**
 * Resolves a base image named by a Dockerfile (`FROM busybox`, `COPY --from=alpine:3`) in the local
 * store, selecting `platform` from an index. An image that is not in the store fails with
 * CLI_NOT_SUPPORTED naming `tsbuild pull` (pulling during a build arrives with the registry work).
 */
export async function resolveBaseImage(store: Store, ref: string, platform: Platform): Promise<ResolvedBase> {
  let found;
  try {
    found = await resolveImage(store, ref);
  } catch (err) {
    if (isTsbuildError(err, 'STORE_IMAGE_NOT_FOUND')) {
      throw notSupportedYet(`pulling base image "${ref}" during a build`, `run "tsbuild pull ${ref}" first; the build uses images from the local store`);
    }
    throw err;
  }
  let descriptor = found.descriptor;
  let doc = parseImageDocument((await store.blobs.readJson(descriptor.digest)).value, descriptor.mediaType, `manifest of ${ref}`);
  if (doc.kind === 'index') {
    descriptor = selectPlatform(doc.index, platform);
    doc = parseImageDocument((await store.blobs.readJson(descriptor.digest)).value, descriptor.mediaType, `manifest of ${ref}`);
    if (doc.kind !== 'manifest') throw new TsbuildError('IMAGE_BAD_MANIFEST', `the index of ${ref} points at another index`);
  }
  const manifest = doc.manifest;
  const config = parseImageConfig((await store.blobs.readJson(manifest.config.digest)).value, `config of ${ref}`);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new TsbuildError('IMAGE_BAD_CONFIG', `${ref}: the config lists ${config.rootfs.diff_ids.length} diffIDs for ${manifest.layers.length} layers`);
  }
  return { ref, manifestDigest: descriptor.digest as Digest, manifest, config };
}

/** The file system state of a base image: its layers with their diffIDs. */
export function baseImageState(base: ResolvedBase): FsState {
  const layers: LayerRef[] = base.manifest.layers.map((d, i) => ({
    diffId: base.config.rootfs.diff_ids[i] as Digest,
    digest: d.digest,
    size: d.size,
    mediaType: d.mediaType,
  }));
  return { layers };
}

/** The empty state of `FROM scratch`. */
export const SCRATCH_STATE: FsState = { layers: [] };

/** The media type of the uncompressed layers a build writes. */
export const BUILD_LAYER_MEDIA_TYPE = MediaType.ociLayer;
