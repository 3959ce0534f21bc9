import { formatReference, MediaType, parseReference, type Descriptor, type Digest, type HistoryEntry, type ImageConfig } from '../core/index.js';
import { createManifest, serializeDocument } from '../image/index.js';
import type { BuildGraph } from '../plan/index.js';
import type { Store } from '../store/index.js';
import type { FsState } from './types.js';

/** What {@link exportImage} wrote. */
export interface ExportedImage {
  readonly manifest: Descriptor;
  /** The image ID (config digest). */
  readonly configDigest: Digest;
  readonly config: ImageConfig;
  /** Full references the image was tagged with. */
  readonly names: readonly string[];
}

/** Options of {@link exportImage}. */
export interface ExportOptions {
  /** `-t` values (normalised here: `app` -> `docker.io/library/app:latest`). */
  readonly tags: readonly string[];
  /** ISO 8601 time for `created` and new history entries. */
  readonly created: string;
  /**
   * False: write the config and manifest blobs only, no index.json entry (the caller records the image,
   * e.g. in an image index, and holds a gc lease until then). Default true.
   */
  readonly record?: boolean;
}

/** The final image config: the planned config with the output's diffIDs and creation times. */
export function finalConfig(graph: BuildGraph, output: FsState, created: string): ImageConfig {
  const history: HistoryEntry[] = (graph.image.history ?? []).map((h) => (h.created === undefined ? { created, ...h } : h));
  return {
    ...graph.image,
    created,
    rootfs: { type: 'layers', diff_ids: output.layers.map((l) => l.diffId) },
    history,
  };
}

/**
 * Writes the image of `output` into the store (config and OCI manifest blobs; the layers are
 * already there) and points every tag at it; without tags the image is recorded untagged.
 * Throws STORE_* on I/O failures and CORE_BAD_REFERENCE for a bad tag.
 */
export async function exportImage(store: Store, graph: BuildGraph, output: FsState, options: ExportOptions): Promise<ExportedImage> {
  const names = options.tags.map((t) => formatReference(parseReference(t)));
  const config = finalConfig(graph, output, options.created);
  const c = await store.blobs.putBytes(serializeDocument(config));
  const manifest = createManifest(
    { mediaType: MediaType.ociConfig, digest: c.digest, size: c.size },
    output.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  );
  const m = await store.blobs.putBytes(serializeDocument(manifest));
  const descriptor: Descriptor = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
  if (options.record === false) return { manifest: descriptor, configDigest: c.digest, config, names };
  // An unchanged image (a fully cached rebuild) already has its names: no index.json write, no lock.
  const current = await store.refs.list();
  const named = (name: string): boolean => current.some((e) => e.name === name && e.descriptor.digest === m.digest && e.descriptor.mediaType === descriptor.mediaType);
  if (names.length === 0 && !current.some((e) => e.descriptor.digest === m.digest)) await store.refs.addUntagged(descriptor);
  for (const name of names) if (!named(name)) await store.refs.set(name, descriptor);
  return { manifest: descriptor, configDigest: c.digest, config, names };
}
