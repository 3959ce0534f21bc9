import { formatReference, TsbuildError, type Descriptor, type Digest, type EventSink, type ImageReference, type Platform } from '../core/index.js';
import { parseImageDocument, selectPlatform, formatPlatform } from '../image/index.js';
import { acquireLease, type Store } from '../store/index.js';
import { blobRecordPath, recordBlobLocations } from './blob-record.js';
import type { HttpRegistryClient, RepositoryLocation } from './client.js';
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
}

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

/**
 * Pulls `ref` into the store: manifest (index -> the platform's manifest), then config and layers
 * not yet stored (in parallel, streamed and verified), then the manifest blob and the tag. Every
 * document is verified against its digest. The image is named only once complete; a gc lease
 * protects the blobs meanwhile. Throws `REG_*`, `IMAGE_NO_PLATFORM`, `STORE_*`.
 */
export async function pullImage(client: HttpRegistryClient, store: Store, ref: ImageReference, options: PullOptions): Promise<PullResult> {
  const repo = locationOf(ref);
  const { signal } = options;
  const emit = options.onEvent ?? (() => undefined);
  const lease = await acquireLease(store);
  try {
    const top = await client.getManifest(repo, ref.digest ?? ref.tag ?? 'latest', signal);
    let fetched = top;
    let doc = parseImageDocument(JSON.parse(top.bytes.toString('utf8')), top.mediaType, `manifest of ${formatReference(ref)}`);
    if (doc.kind === 'index') {
      const chosen = selectPlatform(doc.index, options.platform);
      emit({ type: 'info', message: `${formatPlatform(options.platform)}: ${chosen.digest}` });
      fetched = await client.getManifest(repo, chosen.digest, signal);
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
    await runPool(blobsNeeded, options.concurrency ?? 4, async (d) => {
      const total = d.size;
      const id = d.digest.slice(7, 19);
      const did = await downloadBlob(client, store.blobs, repo, d, {
        signal: blobSignal,
        onProgress: (current) => emit({ type: 'transfer', id, name: 'Downloading', current, total }),
      });
      if (did) downloaded++;
      emit({ type: 'transfer', id, name: did ? 'Pull complete' : 'Already exists', current: total, total });
    }, () => stop.abort());
    if (top !== fetched) await store.blobs.putBytes(top.bytes, { digest: top.digest });
    await store.blobs.putBytes(fetched.bytes, { digest: fetched.digest });
    const descriptor: Descriptor = { mediaType: fetched.mediaType, digest: fetched.digest, size: fetched.bytes.length };
    const name = formatReference(ref);
    await store.refs.set(name, descriptor);
    await recordBlobLocations(blobRecordPath(store.paths.root), `${repo.host}/${repo.path}`, blobsNeeded.map((d) => d.digest));
    return { name, manifest: descriptor, repoDigest: top.digest, configDigest: manifest.config.digest, downloaded, present: blobsNeeded.length - downloaded };
  } finally {
    await lease.release();
  }
}
