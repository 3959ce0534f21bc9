import { isDigest, parseReference, formatReference, TsbuildError, type Descriptor, type Digest } from '../core/index.js';
import { DirBlobStore, type BlobStore } from './blob-store.js';
import { initLayout, type StorePaths } from './oci-layout.js';
import { RefStore, type RefEntry } from './refs.js';
import { isIndexType, isManifestType } from './walk.js';

/** An opened store root: blobs, refs and the directories later modules own. */
export interface Store {
  readonly paths: StorePaths;
  readonly blobs: BlobStore;
  readonly refs: RefStore;
}

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** How long ref updates wait for the index lock (default 60 s). */
  readonly lockTimeoutMs?: number;
}

/** Opens (creating when missing) the store at `root`. Throws `STORE_IO`. */
export async function openStore(root: string, options: OpenStoreOptions = {}): Promise<Store> {
  const paths = await initLayout(root);
  return { paths, blobs: new DirBlobStore(root, paths.tmp), refs: new RefStore(paths, options.lockTimeoutMs) };
}

/** An image found in the store. */
export interface ResolvedImage {
  /** Names (full references) pointing at the same digest. */
  readonly names: readonly string[];
  /** The manifest or index descriptor. */
  readonly descriptor: Descriptor;
  /** The config digest for a manifest (the docker image ID), undefined for an index. */
  readonly configDigest: Digest | undefined;
}

/** The config digest of a manifest entry (the image ID); undefined for indexes or unreadable manifests. */
export async function configDigestOf(blobs: BlobStore, d: Descriptor): Promise<Digest | undefined> {
  if (!isManifestType(d.mediaType)) return undefined;
  const doc = await blobs.readJson<{ config?: { digest?: unknown } }>(d.digest).then((r) => r.value, () => undefined);
  const c = doc?.config?.digest;
  return isDigest(c) ? c : undefined;
}

/** Lists the images of the store grouped by digest, each with its names and image ID. */
export async function listImages(store: Store): Promise<ResolvedImage[]> {
  const entries = await store.refs.list();
  const byDigest = new Map<string, { names: string[]; descriptor: Descriptor }>();
  for (const e of entries) {
    const g = byDigest.get(e.descriptor.digest) ?? { names: [], descriptor: e.descriptor };
    if (e.name !== undefined) g.names.push(e.name);
    byDigest.set(e.descriptor.digest, g);
  }
  const out: ResolvedImage[] = [];
  for (const g of byDigest.values()) {
    out.push({ names: g.names, descriptor: g.descriptor, configDigest: await configDigestOf(store.blobs, g.descriptor) });
  }
  return out;
}

/** The text as a full reference name, or undefined when it is not a reference. */
function nameOf(text: string): string | undefined {
  try {
    return formatReference(parseReference(text));
  } catch {
    return undefined;
  }
}

/**
 * Finds an image by reference (`busybox`, `docker.io/library/busybox:latest`, `name@sha256:...`)
 * or by (a unique prefix of at least 4 hex digits of) its image ID or manifest digest.
 * Throws `STORE_IMAGE_NOT_FOUND` or `STORE_AMBIGUOUS_ID`.
 */
export async function resolveImage(store: Store, text: string): Promise<ResolvedImage> {
  const name = nameOf(text);
  // A name reads only its own manifest (for the image ID), not every image's as the listing does.
  const entries = name === undefined ? undefined : await store.refs.list();
  const named = entries?.find((e) => e.name === name);
  if (entries !== undefined && named !== undefined) {
    const same = entries.filter((e) => e.descriptor.digest === named.descriptor.digest);
    const descriptor = (same[0] ?? named).descriptor;
    return { names: same.flatMap((e) => (e.name === undefined ? [] : [e.name])), descriptor, configDigest: await configDigestOf(store.blobs, descriptor) };
  }
  const images = await listImages(store);
  if (name !== undefined) {
    const hit = images.find((i) => i.names.includes(name));
    if (hit !== undefined) return hit;
    const ref = parseReference(text);
    if (ref.digest !== undefined) {
      const byDigest = images.find((i) => i.descriptor.digest === ref.digest);
      if (byDigest !== undefined) return byDigest;
    }
  }
  const hex = text.startsWith('sha256:') ? text.slice(7) : text;
  if (/^[0-9a-f]{4,64}$/.test(hex)) {
    const matches = images.filter((i) => (i.configDigest ?? '').slice(7).startsWith(hex) || i.descriptor.digest.slice(7).startsWith(hex));
    if (matches.length === 1) return matches[0] as ResolvedImage;
    if (matches.length > 1) {
      throw new TsbuildError('STORE_AMBIGUOUS_ID', `image ID prefix "${text}" matches ${matches.length} images`, { hint: 'give more digits' });
    }
  }
  throw new TsbuildError('STORE_IMAGE_NOT_FOUND', `no such image: ${text}`, { exitCode: 1 });
}

/** True when the entry is an image manifest or index (not some other artifact). */
export function isImageEntry(e: RefEntry): boolean {
  return isManifestType(e.descriptor.mediaType) || isIndexType(e.descriptor.mediaType);
}
