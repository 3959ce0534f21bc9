import { isDigest, MediaType, type Descriptor, type Digest } from '../core/index.js';
import type { BlobStore } from './blob-store.js';

const MANIFEST_TYPES: ReadonlySet<string> = new Set([MediaType.ociManifest, MediaType.dockerManifest]);
const INDEX_TYPES: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.dockerManifestList]);

/** True for the media types of image manifests (OCI and Docker schema 2). */
export function isManifestType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && MANIFEST_TYPES.has(mediaType);
}

/** True for the media types of image indexes / manifest lists. */
export function isIndexType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && INDEX_TYPES.has(mediaType);
}

function isDescriptor(v: unknown): v is Descriptor {
  const d = v as Partial<Descriptor> | null;
  return d !== null && typeof d === 'object' && typeof d.mediaType === 'string' && isDigest(d.digest) && typeof d.size === 'number';
}

/** The descriptors a manifest or index document points at (config, layers, manifests); malformed ones are skipped. */
export function childrenOf(doc: unknown): Descriptor[] {
  const d = doc as { config?: unknown; layers?: unknown; manifests?: unknown } | null;
  if (d === null || typeof d !== 'object') return [];
  const out: Descriptor[] = [];
  if (isDescriptor(d.config)) out.push(d.config);
  for (const list of [d.layers, d.manifests]) {
    if (Array.isArray(list)) for (const x of list) if (isDescriptor(x)) out.push(x);
  }
  return out;
}

/** One node of an image graph walk. */
export interface WalkNode {
  readonly descriptor: Descriptor;
  /** The digest of the document that points at it (undefined for roots). */
  readonly parent: Digest | undefined;
  /** False when the blob is not in the store. */
  readonly present: boolean;
}

/**
 * Walks the graph below `roots` (manifests and indexes are read as JSON; layers and configs are
 * only stat'ed), calling `visit` once per distinct digest. Documents that cannot be read are
 * reported as not present and not descended into.
 */
export async function walkImages(blobs: BlobStore, roots: readonly Descriptor[], visit: (node: WalkNode) => void | Promise<void>): Promise<void> {
  const seen = new Set<string>();
  const queue: { d: Descriptor; parent: Digest | undefined }[] = roots.map((d) => ({ d, parent: undefined }));
  while (queue.length > 0) {
    const { d, parent } = queue.shift() as { d: Descriptor; parent: Digest | undefined };
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    const present = await blobs.has(d.digest);
    await visit({ descriptor: d, parent, present });
    if (present && (isManifestType(d.mediaType) || isIndexType(d.mediaType))) {
      const doc = await blobs.readJson(d.digest).then((r) => r.value, () => undefined);
      for (const c of childrenOf(doc)) queue.push({ d: c, parent: d.digest });
    }
  }
}

/** The set of digests reachable from `roots` (including the roots). */
export async function reachableDigests(blobs: BlobStore, roots: readonly Descriptor[]): Promise<Set<Digest>> {
  const out = new Set<Digest>();
  await walkImages(blobs, roots, (n) => {
    out.add(n.descriptor.digest);
  });
  return out;
}
