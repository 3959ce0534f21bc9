import { formatReference, MediaType, TsbuildError, type Descriptor, type Digest, type EventSink, type ImageManifest, type ImageReference, type Platform } from '../core/index.js';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { parseImageConfig, parseImageDocument, selectPlatform, formatPlatform } from '../image/index.js';
import { acquireLease, PULLED_INDEX_ANNOTATION, type Store } from '../store/index.js';
import { blobRecordPath, recordBlobLocations } from './blob-record.js';
import { manifestMediaTypeOf, type FetchedManifest, type HttpRegistryClient, type RepositoryLocation } from './client.js';
import { downloadBlob } from './download.js';
import { runPool } from './pool.js';
import { apiHostOf } from './hosts.js';

/** Options of {@link pullImage}. */
export interface PullOptions {
  /** The platform picked from an index (required when the reference names an index). */
  readonly platform: Platform;
  /** Parallel blob downloads (default 4). */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  readonly onEvent?: EventSink;
  /** Unpacks the layers while they download (see {@link LayerUnpackHook}); default: blobs only. */
  readonly unpack?: LayerUnpackHook;
}

/** A layer of an image being pulled, bottom first. */
export interface PullLayer {
  readonly index: number;
  readonly descriptor: Descriptor;
  /** The layer's diffID from the image config (the sha256 of its uncompressed tar). */
  readonly diffId: Digest;
}

/**
 * Unpacks the layers of a pull while they download; the composition root gives it (the registry
 * knows no snapshots). Called once per pull that downloads (not for an image found complete), after
 * the config is stored and before any layer downloads, with all layers; returns the unpack of one
 * layer, called for each: `bytes` is its compressed blob as it arrives, ended only after the blob's
 * digest and size were verified and it is stored (destroyed with the error otherwise), or undefined
 * when the store holds the blob already (read it there). The unpack must check the diffID itself.
 * The pull names the image only after every unpack resolved; the first rejection stops the downloads
 * and fails the pull.
 */
export type LayerUnpackHook = (layers: readonly PullLayer[]) => (layer: PullLayer, bytes: Readable | undefined) => Promise<void>;

/** What a pull did. */
export interface PullResult {
  /** The full reference the image is stored under. */
  readonly name: string;
  /** The image manifest stored (for an index: the one selected for the platform). */
  readonly manifest: Descriptor;
  /** The digest the reference resolved to on the registry (the index digest for a multi-platform image). */
  readonly repoDigest: Digest;
  readonly configDigest: Digest;
  /** Blobs downloaded / already present. */
  readonly downloaded: number;
  readonly present: number;
}

/** The API location of a reference's repository. */
export function locationOf(ref: ImageReference): RepositoryLocation {
  return { host: apiHostOf(ref.domain), path: ref.path };
}

/** An image found complete in the store: its top document, the platform's manifest and the blobs. */
interface LocalImage {
  readonly top: Descriptor;
  readonly manifest: Descriptor;
  readonly configDigest: Digest;
  readonly blobs: readonly Descriptor[];
}

/** True when the store holds blob `d` with its size. */
async function hasBlob(store: Store, d: Pick<Descriptor, 'digest' | 'size'>): Promise<boolean> {
  return (await store.blobs.stat(d.digest))?.size === d.size;
}

/**
 * The image `digest` (of media type `mediaType` when the document does not say) as the store
 * holds it, when it holds all of it: the document, for an index the manifest of `platform`, its
 * config and layers. Undefined when anything is missing or unreadable.
 */
async function findLocalImage(store: Store, digest: Digest, mediaType: string | undefined, platform: Platform): Promise<LocalImage | undefined> {
  try {
    const st = await store.blobs.stat(digest);
    if (st === undefined) return undefined;
    const { value, bytes } = await store.blobs.readJson(digest);
    const topType = manifestMediaTypeOf(value as { mediaType?: unknown }, mediaType, `manifest ${digest}`);
    const top: Descriptor = { mediaType: topType, digest, size: bytes.length };
    let doc = parseImageDocument(value, topType, `manifest ${digest}`);
    let manifest = top;
    if (doc.kind === 'index') {
      const chosen = selectPlatform(doc.index, platform);
      if (!(await hasBlob(store, chosen))) return undefined;
      doc = parseImageDocument((await store.blobs.readJson(chosen.digest)).value, chosen.mediaType, `manifest ${chosen.digest}`);
      if (doc.kind !== 'manifest') return undefined;
      manifest = { mediaType: chosen.mediaType, digest: chosen.digest, size: chosen.size };
    }
    const blobs = [doc.manifest.config, ...doc.manifest.layers];
    for (const b of blobs) if (!(await hasBlob(store, b))) return undefined;
    return { top, manifest, configDigest: doc.manifest.config.digest, blobs };
  } catch {
    // Anything unexpected (no platform, a damaged document): the full pull decides.
    return undefined;
  }
}

/** The tag's descriptor for `manifest`: noting the index it was chosen from, when it was (see PULLED_INDEX_ANNOTATION). */
function fromIndex(manifest: Descriptor, top: Pick<Descriptor, 'digest'>): Descriptor {
  return top.digest === manifest.digest ? manifest : { ...manifest, annotations: { ...manifest.annotations, [PULLED_INDEX_ANNOTATION]: top.digest } };
}

/**
 * The manifest of `platform` in the multi-platform image `name` was pulled from, when the store holds
 * that platform completely (an earlier pull of it): found without the registry, and without moving
 * the tag. Undefined when the tag names no pulled index, or the store lacks the platform's manifest or blobs.
 */
export async function findPulledPlatform(store: Store, name: string, platform: Platform): Promise<Descriptor | undefined> {
  const named = await store.refs.get(name);
  const index = named?.annotations?.[PULLED_INDEX_ANNOTATION];
  if (named === undefined || index === undefined || !/^sha256:[0-9a-f]{64}$/.test(index)) return undefined;
  const local = await findLocalImage(store, index as Digest, MediaType.ociIndex, platform);
  return local === undefined || local.top.digest === local.manifest.digest ? undefined : local.manifest;
}

/**
 * Pulls `ref` into the store: manifest (index -> the platform's manifest), then config and layers
 * not yet stored (in parallel, streamed and verified), then the manifest blob and the tag. Every
 * document is verified against its digest. The image is named only once complete; a gc lease
 * protects the blobs meanwhile. When the store may already hold the image (it names `ref`, or
 * holds the digest `ref` names), a HEAD of the manifest comes first: if the store holds that
 * digest completely, that is the only request. Throws `REG_*`, `IMAGE_NO_PLATFORM`, `STORE_*`.
 */
export async function pullImage(client: HttpRegistryClient, store: Store, ref: ImageReference, options: PullOptions): Promise<PullResult> {
  const repo = locationOf(ref);
  const { signal } = options;
  const emit = options.onEvent ?? (() => undefined);
  const name = formatReference(ref);
  const reference = ref.digest ?? ref.tag ?? 'latest';
  const lease = await acquireLease(store);
  try {
    const named = await store.refs.get(name);
    if (named !== undefined || (ref.digest !== undefined && (await store.blobs.stat(ref.digest)) !== undefined)) {
      const remote = await client.manifestDigest(repo, reference, signal);
      const local = remote === undefined || (ref.digest !== undefined && remote.digest !== ref.digest)
        ? undefined
        : await findLocalImage(store, remote.digest, named?.digest === remote.digest ? named.mediaType : remote.contentType, options.platform);
      if (local !== undefined && remote !== undefined) {
        for (const b of local.blobs) emit({ type: 'transfer', id: b.digest.slice(7, 19), name: 'Already exists', current: b.size, total: b.size });
        const tag = fromIndex(local.manifest, local.top);
        // (Also when only the note of the index is missing or stale: a tag set before, or by `tag`.)
        if (named?.digest !== tag.digest || named.annotations?.[PULLED_INDEX_ANNOTATION] !== tag.annotations?.[PULLED_INDEX_ANNOTATION]) await store.refs.set(name, tag);
        await recordBlobLocations(blobRecordPath(store.paths.root), `${repo.host}/${repo.path}`, local.blobs.map((d) => d.digest));
        return { name, manifest: local.manifest, repoDigest: remote.digest, configDigest: local.configDigest, downloaded: 0, present: local.blobs.length };
      }
    }
    const top = await client.getManifest(repo, reference, signal);
    let fetched = top;
    let doc = parseImageDocument(JSON.parse(top.bytes.toString('utf8')), top.mediaType, `manifest of ${name}`);
    if (doc.kind === 'index') {
      const chosen = selectPlatform(doc.index, options.platform);
      emit({ type: 'info', message: `${formatPlatform(options.platform)}: ${chosen.digest}` });
      fetched = (await hasBlob(store, chosen)) ? await storedManifest(store, chosen) : await client.getManifest(repo, chosen.digest, signal);
      if (fetched.bytes.length !== chosen.size) {
        throw new TsbuildError('REG_DIGEST_MISMATCH', `manifest ${chosen.digest} is ${fetched.bytes.length} bytes, the index says ${chosen.size}`);
      }
      doc = parseImageDocument(JSON.parse(fetched.bytes.toString('utf8')), fetched.mediaType, `manifest ${chosen.digest}`);
      if (doc.kind !== 'manifest') throw new TsbuildError('REG_BAD_MANIFEST', `${chosen.digest}: an index entry for ${formatPlatform(options.platform)} is itself an index`);
    }
    const manifest = doc.manifest;
    const blobsNeeded = [manifest.config, ...manifest.layers];
    let downloaded = 0;
    // The first failed download stops the others instead of letting them run to the end.
    const stop = new AbortController();
    const blobSignal = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]);
    const fetchBlob = async (d: Descriptor, tee?: Writable): Promise<boolean> => {
      const total = d.size;
      const id = d.digest.slice(7, 19);
      const did = await downloadBlob(client, store.blobs, repo, d, {
        signal: blobSignal,
        onProgress: (current) => emit({ type: 'transfer', id, name: 'Downloading', current, total }),
        ...(tee === undefined ? {} : { tee }),
      });
      if (did) downloaded++;
      emit({ type: 'transfer', id, name: did ? (tee === undefined ? 'Pull complete' : 'Download complete') : 'Already exists', current: total, total });
      return did;
    };
    if (options.unpack === undefined) {
      await runPool(blobsNeeded, options.concurrency ?? 4, async (d) => {
        await fetchBlob(d);
      }, () => stop.abort());
    } else {
      await pullAndUnpack(store, manifest, options.unpack, options.concurrency ?? 4, fetchBlob, stop, emit);
    }
    if (top !== fetched) await store.blobs.putBytes(top.bytes, { digest: top.digest });
    await store.blobs.putBytes(fetched.bytes, { digest: fetched.digest });
    const descriptor: Descriptor = { mediaType: fetched.mediaType, digest: fetched.digest, size: fetched.bytes.length };
    await store.refs.set(name, fromIndex(descriptor, top));
    await recordBlobLocations(blobRecordPath(store.paths.root), `${repo.host}/${repo.path}`, blobsNeeded.map((d) => d.digest));
    return { name, manifest: descriptor, repoDigest: top.digest, configDigest: manifest.config.digest, downloaded, present: blobsNeeded.length - downloaded };
  } finally {
    await lease.release();
  }
}

/**
 * Downloads the config, then the layers, each teed into its unpack (see {@link LayerUnpackHook});
 * resolves when every download and unpack is done, fails with the first error (`stop` aborts the rest).
 */
async function pullAndUnpack(
  store: Store, manifest: ImageManifest, hook: LayerUnpackHook, concurrency: number,
  fetchBlob: (d: Descriptor, tee?: Writable) => Promise<boolean>, stop: AbortController, emit: EventSink,
): Promise<void> {
  await fetchBlob(manifest.config);
  const config = parseImageConfig((await store.blobs.readJson(manifest.config.digest)).value, `config ${manifest.config.digest}`);
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new TsbuildError('REG_BAD_MANIFEST', `the manifest has ${manifest.layers.length} layers but its config ${diffIds.length} diff IDs`);
  }
  const layers: PullLayer[] = manifest.layers.map((descriptor, index) => ({ index, descriptor, diffId: diffIds[index] as Digest }));
  const unpackLayer = hook(layers);
  const unpacks: Promise<void>[] = [];
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown): void => {
    failure ??= { error };
    stop.abort();
  };
  try {
    await runPool(layers, concurrency, async (layer) => {
      const d = layer.descriptor;
      const id = d.digest.slice(7, 19);
      const present = await hasBlob(store, d);
      const tap = present ? undefined : new PassThrough();
      tap?.on('error', () => undefined); // its reader sees the error; no reader yet is no crash
      const unpacking = (async () => unpackLayer(layer, tap))().then(
        () => {
          tap?.destroy(); // an unpack that found its snapshot made already did not read it
          if (tap !== undefined) emit({ type: 'transfer', id, name: 'Pull complete', current: d.size, total: d.size });
        },
        (err: unknown) => {
          tap?.destroy();
          fail(err);
        },
      );
      unpacks.push(unpacking);
      if (tap !== undefined) {
        try {
          await fetchBlob(d, tap);
        } catch (err) {
          fail(err); // before the unpack's failure that this one causes
          throw err;
        }
      } else emit({ type: 'transfer', id, name: 'Already exists', current: d.size, total: d.size });
    }, () => stop.abort());
  } catch (err) {
    fail(err);
  } finally {
    await Promise.all(unpacks);
  }
  if (failure !== undefined) throw failure.error;
}

/** A manifest the store already holds (an index's entry pulled before), as if fetched. */
async function storedManifest(store: Store, d: Descriptor): Promise<FetchedManifest> {
  const { value, bytes } = await store.blobs.readJson(d.digest);
  return { bytes, digest: d.digest, mediaType: manifestMediaTypeOf(value as { mediaType?: unknown }, d.mediaType, `manifest ${d.digest}`) };
}
