import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { formatReference, sha256Of, TsbuildError, type Descriptor, type Digest, type EventSink, type ImageReference } from '../core/index.js';
import { parseImageDocument } from '../image/index.js';
import { acquireLease, type Store } from '../store/index.js';
import { blobRecordPath, mountSourcesOf, readBlobRecord, recordBlobLocations, type BlobLocations } from './blob-record.js';
import type { HttpRegistryClient, RepositoryLocation, UploadSession } from './client.js';
import { compressedLayer, isUncompressedLayer } from './compress.js';
import { runPool } from './pool.js';
import { locationOf } from './pull.js';
import { readUploadState, removeUploadState, uploadStatePath, writeUploadState } from './upload-state.js';

/** Options of {@link pushImage}. */
export interface PushOptions {
  /** Parallel blob uploads (default 4). */
  readonly concurrency?: number;
  /** Blobs up to this size go in one PUT (default 16 MiB); larger ones in PATCH chunks. */
  readonly monolithicMaxBytes?: number;
  /** PATCH chunk size (default 16 MiB; raised to the registry's OCI-Chunk-Min-Length). */
  readonly chunkBytes?: number;
  readonly signal?: AbortSignal;
  readonly onEvent?: EventSink;
}

/** What a push did. */
export interface PushResult {
  /** The pushed manifest (or index) digest, docker's "digest: sha256:..." line. */
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
  readonly uploaded: number;
  readonly mounted: number;
  readonly existing: number;
}

interface Counters {
  uploaded: number;
  mounted: number;
  existing: number;
}

interface PushContext {
  readonly client: HttpRegistryClient;
  readonly store: Store;
  readonly repo: RepositoryLocation;
  readonly record: BlobLocations;
  readonly options: PushOptions;
  readonly counters: Counters;
  readonly pushed: Digest[];
}

/**
 * Pushes the image `source` (a manifest or index of the store) to `dest`: for each blob a HEAD
 * first (skip when present), else a cross-repository mount when the record knows another
 * repository of that registry holding it, else an upload (one PUT, or PATCH chunks for large
 * blobs; a chunked upload interrupted by a crash resumes from the offset the registry reports,
 * persisted under the store's cache/registry-uploads/). Uncompressed layers are gzip-compressed once (remembered). Manifests go last, the
 * tag (or digest) of `dest` last of all. Throws `REG_*`, `STORE_*`.
 */
export async function pushImage(client: HttpRegistryClient, store: Store, source: Descriptor, dest: ImageReference, options: PushOptions = {}): Promise<PushResult> {
  const repo = locationOf(dest);
  const recordPath = blobRecordPath(store.paths.root);
  const ctx: PushContext = { client, store, repo, record: await readBlobRecord(recordPath), options, counters: { uploaded: 0, mounted: 0, existing: 0 }, pushed: [] };
  const lease = await acquireLease(store);
  try {
    const top = await pushDocument(ctx, source, dest.tag ?? dest.digest);
    if (dest.digest !== undefined && dest.digest !== top.digest) {
      throw new TsbuildError('REG_DIGEST_MISMATCH', `pushing ${formatReference(dest)}: the image's digest is ${top.digest}`, { hint: 'push to a tag, or omit the digest' });
    }
    await recordBlobLocations(recordPath, `${repo.host}/${repo.path}`, ctx.pushed);
    return { ...top, ...ctx.counters };
  } finally {
    await lease.release();
  }
}

/** Pushes a manifest or index (children first) and PUTs it under `reference` (or its digest). */
async function pushDocument(ctx: PushContext, d: Descriptor, reference: string | undefined): Promise<{ digest: Digest; size: number; mediaType: string }> {
  const { value, bytes } = await ctx.store.blobs.readJson(d.digest);
  const doc = parseImageDocument(value, d.mediaType, `manifest ${d.digest}`);
  let out: Buffer = bytes;
  if (doc.kind === 'index') {
    const children: Descriptor[] = [];
    let changed = false;
    for (const m of doc.index.manifests) {
      const pushed = await pushDocument(ctx, m, undefined);
      changed ||= pushed.digest !== m.digest;
      children.push(pushed.digest === m.digest ? m : { ...m, digest: pushed.digest, size: pushed.size });
    }
    if (changed) out = Buffer.from(JSON.stringify({ ...doc.index, manifests: children }));
  } else {
    const layers: Descriptor[] = [];
    for (const l of doc.manifest.layers) layers.push(isUncompressedLayer(l) ? await compressedLayer(ctx.store, l, ctx.options.signal) : l);
    const blobs = [doc.manifest.config, ...layers];
    await runPool(blobs, ctx.options.concurrency ?? 4, (b) => pushBlob(ctx, b));
    if (layers.some((l, i) => l !== doc.manifest.layers[i])) out = Buffer.from(JSON.stringify({ ...doc.manifest, layers }));
  }
  const mediaType = d.mediaType;
  const digest = await ctx.client.putManifest(ctx.repo, reference ?? sha256Of(out), out, mediaType, ctx.options.signal);
  return { digest, size: out.length, mediaType };
}

/** Makes one blob present in the target repository (HEAD, mount, or upload). */
async function pushBlob(ctx: PushContext, d: Descriptor): Promise<void> {
  const { client, repo, options } = ctx;
  const { signal } = options;
  const emit = options.onEvent ?? (() => undefined);
  const id = d.digest.slice(7, 19);
  ctx.pushed.push(d.digest);
  if ((await client.blobSize(repo, d.digest, signal)) !== undefined) {
    ctx.counters.existing++;
    emit({ type: 'transfer', id, name: 'Layer already exists', current: d.size, total: d.size });
    return;
  }
  const statePath = uploadStatePath(ctx.store.paths.cache, `${repo.host}/${repo.path}`, d.digest);
  const saved = await readUploadState(statePath);
  let session: UploadSession | undefined;
  if (saved !== undefined) {
    session = await client.uploadStatus(repo, saved.location, signal).catch(() => undefined);
    if (session !== undefined && session.offset > d.size) session = undefined;
    if (session !== undefined) emit({ type: 'info', message: `${id}: resuming the upload at byte ${session.offset}` });
    else await removeUploadState(statePath);
  }
  for (const from of session !== undefined ? [] : mountSourcesOf(ctx.record, d.digest, repo.host, repo.path)) {
    const r = await client.startUpload(repo, { digest: d.digest, from }, signal).catch(() => undefined);
    if (r === undefined) continue;
    if (r.mounted) {
      ctx.counters.mounted++;
      emit({ type: 'transfer', id, name: `Mounted from ${from}`, current: d.size, total: d.size });
      return;
    }
    session = r.session;
    break;
  }
  if (session === undefined) {
    const r = await client.startUpload(repo, undefined, signal);
    if (r.mounted) return;
    session = r.session;
  }
  await uploadContent(ctx, d, session, statePath);
  await removeUploadState(statePath);
  ctx.counters.uploaded++;
  emit({ type: 'transfer', id, name: 'Pushed', current: d.size, total: d.size });
}

/** Uploads the bytes of `d` into `session`: one PUT when small, PATCH chunks then PUT when large. */
async function uploadContent(ctx: PushContext, d: Descriptor, session: UploadSession, statePath: string): Promise<void> {
  const { client, repo, store, options } = ctx;
  const { signal } = options;
  const stat = await store.blobs.stat(d.digest);
  if (stat === undefined || stat.size !== d.size) throw new TsbuildError('STORE_BLOB_NOT_FOUND', `blob ${d.digest} is not in the store (needed to push it)`);
  const path = store.blobs.pathOf(d.digest);
  const range = (start: number, end: number) => async (): Promise<Readable> => createReadStream(path, { start, end: end - 1 });
  if (session.offset === 0 && d.size <= (options.monolithicMaxBytes ?? 16 * 1024 * 1024)) {
    await client.finishUpload(repo, session, d.digest, { size: d.size, body: range(0, d.size) }, signal);
    return;
  }
  let s = session;
  while (s.offset < d.size) {
    const chunk = Math.max(options.chunkBytes ?? 16 * 1024 * 1024, s.minChunk ?? 0);
    const end = Math.min(d.size, s.offset + chunk);
    s = await client.uploadChunk(repo, s, end - s.offset, range(s.offset, end), signal);
    // Persisted after every acknowledged chunk: a push killed now resumes here after restart.
    await writeUploadState(statePath, { location: s.location, offset: s.offset });
  }
  await client.finishUpload(repo, s, d.digest, undefined, signal);
}
