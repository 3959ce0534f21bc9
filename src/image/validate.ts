import { sha256Of, TsbuildError, type Descriptor, type ImageConfig, type ImageManifest } from '../core/index.js';
import { isLayerMediaType } from './manifest.js';

/** An image as stored: its manifest and the exact config bytes the manifest points at. */
export interface ImageParts {
  readonly manifest: ImageManifest;
  readonly config: ImageConfig;
  /** The config document's bytes, to check its digest and size (optional). */
  readonly configBytes?: Uint8Array;
  /** Actual sizes of the blobs as stored, by digest (optional, checked when given). */
  readonly blobSizes?: ReadonlyMap<string, number>;
}

/**
 * Checks that an image is self-consistent: config digest and size, one diff_id per layer,
 * history entries without `empty_layer` match the layers, media types are layers, sizes agree.
 * Returns the problems found (empty: valid). Pure.
 */
export function validateImage(image: ImageParts): string[] {
  const problems: string[] = [];
  const { manifest, config } = image;
  if (image.configBytes !== undefined) {
    const d = sha256Of(image.configBytes);
    if (d !== manifest.config.digest) problems.push(`config digest is ${d}, the manifest says ${manifest.config.digest}`);
    if (image.configBytes.length !== manifest.config.size) problems.push(`config is ${image.configBytes.length} bytes, the manifest says ${manifest.config.size}`);
  }
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    problems.push(`the manifest has ${manifest.layers.length} layers but the config has ${diffIds.length} diff_ids`);
  }
  manifest.layers.forEach((l: Descriptor, i) => {
    if (!isLayerMediaType(l.mediaType)) problems.push(`layer ${i} has media type ${l.mediaType}, not a layer type`);
    if (!Number.isSafeInteger(l.size) || l.size < 0) problems.push(`layer ${i} has an invalid size ${String(l.size)}`);
  });
  for (const d of [manifest.config, ...manifest.layers]) {
    const actual = image.blobSizes?.get(d.digest);
    if (image.blobSizes !== undefined && actual === undefined) problems.push(`blob ${d.digest} is missing`);
    else if (actual !== undefined && actual !== d.size) problems.push(`blob ${d.digest} is ${actual} bytes, the manifest says ${d.size}`);
  }
  if (config.history !== undefined && config.history.length > 0) {
    const withLayer = config.history.filter((h) => h.empty_layer !== true).length;
    if (withLayer !== diffIds.length) problems.push(`history has ${withLayer} entries that add a layer but there are ${diffIds.length} layers`);
  }
  return problems;
}

/** Throws `IMAGE_INVALID` listing the problems when {@link validateImage} finds any. */
export function assertValidImage(image: ImageParts, what = 'image'): void {
  const problems = validateImage(image);
  if (problems.length > 0) throw new TsbuildError('IMAGE_INVALID', `${what} is not self-consistent: ${problems.join('; ')}`);
}
