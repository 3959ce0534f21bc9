import {
  isDigest, MediaType, TsbuildError, type Descriptor, type ImageIndex, type ImageManifest, type Platform,
} from '../core/index.js';
import { normalizePlatform } from './platform.js';

/** Manifest formats tsbuild writes. */
export type ManifestFormat = 'oci' | 'docker';

const OCI_TO_DOCKER: Readonly<Record<string, string>> = {
  [MediaType.ociConfig]: MediaType.dockerConfig,
  [MediaType.ociLayerGzip]: MediaType.dockerLayerGzip,
  [MediaType.ociManifest]: MediaType.dockerManifest,
  [MediaType.ociIndex]: MediaType.dockerManifestList,
};

/** True for image manifest media types (OCI and Docker schema 2). */
export function isManifestMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest;
}

/** True for index / manifest list media types. */
export function isIndexMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

/** True for layer media types tsbuild can unpack (tar, gzip, zstd; OCI and Docker). */
export function isLayerMediaType(mediaType: string): boolean {
  return mediaType === MediaType.ociLayer || mediaType === MediaType.ociLayerGzip || mediaType === MediaType.ociLayerZstd ||
    mediaType === MediaType.dockerLayerGzip || mediaType === 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip' ||
    mediaType === 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
}

/**
 * Builds a manifest for `config` and `layers`. With format `docker`, media types are mapped to
 * Docker schema 2 (uncompressed OCI layers have no Docker equivalent: `IMAGE_BAD_MEDIA_TYPE`).
 */
export function createManifest(config: Descriptor, layers: readonly Descriptor[], format: ManifestFormat = 'oci', annotations?: Readonly<Record<string, string>>): ImageManifest {
  const map = (d: Descriptor): Descriptor => {
    if (format === 'oci') return d;
    const mt = OCI_TO_DOCKER[d.mediaType] ?? (Object.values(OCI_TO_DOCKER).includes(d.mediaType) ? d.mediaType : undefined);
    if (mt === undefined) throw new TsbuildError('IMAGE_BAD_MEDIA_TYPE', `media type ${d.mediaType} has no Docker schema 2 equivalent`, { hint: 'compress the layer (gzip) or use the OCI format' });
    return { ...d, mediaType: mt };
  };
  return {
    schemaVersion: 2,
    mediaType: format === 'oci' ? MediaType.ociManifest : MediaType.dockerManifest,
    config: map(config),
    layers: layers.map(map),
    ...(annotations === undefined || format === 'docker' ? {} : { annotations }),
  };
}

/** Builds an index (or a Docker manifest list) of platform-specific manifests. */
export function createIndex(manifests: readonly Descriptor[], format: ManifestFormat = 'oci'): ImageIndex {
  return {
    schemaVersion: 2,
    mediaType: format === 'oci' ? MediaType.ociIndex : MediaType.dockerManifestList,
    manifests: manifests.map((m) => (format === 'oci' ? m : { ...m, mediaType: OCI_TO_DOCKER[m.mediaType] ?? m.mediaType })),
  };
}

/** Serialises a document the way tsbuild stores it (compact JSON, key order as built). */
export function serializeDocument(doc: unknown): string {
  return JSON.stringify(doc);
}

function isDescriptor(v: unknown): v is Descriptor {
  const d = v as Partial<Descriptor> | null;
  return d !== null && typeof d === 'object' && typeof d.mediaType === 'string' && isDigest(d.digest) && Number.isSafeInteger(d.size) && (d.size as number) >= 0;
}

/** A parsed manifest or index. */
export type ImageDocument = { readonly kind: 'manifest'; readonly manifest: ImageManifest } | { readonly kind: 'index'; readonly index: ImageIndex };

/**
 * Parses a manifest or index (OCI or Docker schema 2), using `mediaType` (e.g. the descriptor's
 * or a Content-Type) when the document does not name its own. Throws `IMAGE_BAD_MANIFEST`
 * (including Docker schema 1, which is not supported).
 */
export function parseImageDocument(doc: unknown, mediaType?: string, what = 'manifest'): ImageDocument {
  const d = doc as { schemaVersion?: unknown; mediaType?: unknown; config?: unknown; layers?: unknown; manifests?: unknown } | null;
  const bad = (why: string): TsbuildError => new TsbuildError('IMAGE_BAD_MANIFEST', `${what}: ${why}`);
  if (d === null || typeof d !== 'object') throw bad('not a JSON object');
  if (d.schemaVersion !== 2) throw bad(`schemaVersion ${String(d.schemaVersion)} is not supported (only 2)`);
  const mt = typeof d.mediaType === 'string' ? d.mediaType : mediaType;
  const looksIndex = Array.isArray(d.manifests);
  if (isIndexMediaType(mt) || (mt === undefined && looksIndex)) {
    if (!Array.isArray(d.manifests) || !d.manifests.every(isDescriptor)) throw bad('manifests must be a list of descriptors');
    return { kind: 'index', index: d as ImageIndex };
  }
  if (isManifestMediaType(mt) || mt === undefined) {
    if (!isDescriptor(d.config)) throw bad('config must be a descriptor');
    if (!Array.isArray(d.layers) || !d.layers.every(isDescriptor)) throw bad('layers must be a list of descriptors');
    return { kind: 'manifest', manifest: d as ImageManifest };
  }
  throw bad(`unsupported media type ${mt}`);
}

/**
 * Picks the manifest for `platform` from an index (exact os/arch, then variant; a missing
 * variant in the index matches). Throws `IMAGE_NO_PLATFORM` listing what the index offers.
 */
export function selectPlatform(index: ImageIndex, platform: Platform): Descriptor {
  const want = normalizePlatform(platform);
  const candidates = index.manifests.filter((m) => {
    if (m.platform === undefined) return false;
    const p = normalizePlatform(m.platform);
    return p.os === want.os && p.architecture === want.architecture;
  });
  const exact = candidates.find((m) => normalizePlatform(m.platform as Platform).variant === want.variant);
  const loose = candidates.find((m) => normalizePlatform(m.platform as Platform).variant === undefined);
  const hit = exact ?? loose ?? (want.variant === undefined ? candidates[0] : undefined);
  if (hit === undefined) {
    const offered = index.manifests.flatMap((m) => (m.platform === undefined ? [] : [`${m.platform.os}/${m.platform.architecture}${m.platform.variant === undefined ? '' : `/${m.platform.variant}`}`]));
    throw new TsbuildError('IMAGE_NO_PLATFORM', `no image for ${want.os}/${want.architecture}${want.variant === undefined ? '' : `/${want.variant}`} in the index`, {
      hint: offered.length === 0 ? 'the index names no platforms' : `available: ${offered.join(', ')}`,
    });
  }
  return hit;
}
