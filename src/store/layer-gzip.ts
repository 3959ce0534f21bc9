import { spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { dirname, join } from 'node:path';
import { createGzip } from 'node:zlib';
import { isDigest, MediaType, TsbuildError, type Descriptor, type Digest } from '../core/index.js';
import type { BlobInfo } from './blob-store.js';
import { writeFileAtomic } from './oci-layout.js';
import type { Store } from './store.js';
import { childrenOf, isIndexType, isManifestType } from './walk.js';

/** Layer media types stored uncompressed, and their gzip counterparts for registries and archives. */
const GZIP_OF: Readonly<Record<string, string>> = {
  [MediaType.ociLayer]: MediaType.ociLayerGzip,
  'application/vnd.docker.image.rootfs.diff.tar': MediaType.dockerLayerGzip,
};

/** True when a layer descriptor is an uncompressed tar (compressed at push, save and export). */
export function isUncompressedLayer(d: Descriptor): boolean {
  return GZIP_OF[d.mediaType] !== undefined;
}

/** The file remembering uncompressed digest -> gzip blob (kept under the store's cache/). */
function cachePath(store: Store): string {
  return join(store.paths.cache, 'registry-compressed.json');
}

type GzipRecord = Record<string, { digest: unknown; size: unknown }>;

async function readRecord(store: Store): Promise<GzipRecord> {
  return readFile(cachePath(store), 'utf8').then((t) => JSON.parse(t) as GzipRecord, () => ({} as GzipRecord));
}

/**
 * The gzip-compressed form of an uncompressed layer, stored as a blob of the store: computed
 * once (streamed through pigz when installed, else zlib, into the store) and remembered per
 * uncompressed digest in `cache/registry-compressed.json` while the compressed blob exists.
 * The media type follows the layer's family (OCI tar -> OCI tar+gzip, Docker tar -> Docker gzip).
 * Throws STORE_BLOB_NOT_FOUND / STORE_IO.
 */
export async function compressedLayer(store: Store, layer: Descriptor, signal?: AbortSignal): Promise<Descriptor> {
  const mediaType = GZIP_OF[layer.mediaType] as string;
  const hit = (await readRecord(store))[layer.digest];
  if (hit !== undefined && isDigest(hit.digest) && typeof hit.size === 'number') {
    const st = await store.blobs.stat(hit.digest);
    if (st !== undefined && st.size === hit.size) return { ...stripDigest(layer), mediaType, digest: hit.digest, size: hit.size };
  }
  const put = async (gzip: (input: Readable) => Readable): Promise<BlobInfo> => {
    const source = await store.blobs.open(layer.digest);
    return store.blobs.put(gzip(source), {}, signal === undefined ? {} : { signal });
  };
  let info: BlobInfo;
  try {
    info = await put(pigzStream);
  } catch (err) {
    if (!isMissingProgram(err)) throw err;
    info = await put(zlibStream);
  }
  // Re-read just before writing: another layer may have been recorded meanwhile. Best effort.
  const fresh = await readRecord(store);
  const path = cachePath(store);
  await mkdir(dirname(path), { recursive: true })
    .then(() => writeFileAtomic(path, JSON.stringify({ ...fresh, [layer.digest]: { digest: info.digest, size: info.size } }), store.paths.tmp))
    .catch(() => undefined);
  return { ...stripDigest(layer), mediaType, digest: info.digest as Digest, size: info.size };
}

/**
 * The image `d` (a manifest or an index of the store) with every uncompressed layer replaced by
 * its remembered gzip blob ({@link compressedLayer}); rewritten manifests and indexes are put into
 * the store as blobs. Returns `d` itself when nothing needed compressing. The caller holds a gc lease.
 */
export async function withCompressedLayers(store: Store, d: Descriptor, signal?: AbortSignal): Promise<Descriptor> {
  if (!isManifestType(d.mediaType) && !isIndexType(d.mediaType)) return d;
  const { value } = await store.blobs.readJson<Record<string, unknown>>(d.digest);
  let doc: Record<string, unknown>;
  if (isIndexType(d.mediaType)) {
    const manifests = childrenOf({ manifests: value.manifests });
    const next: Descriptor[] = [];
    for (const m of manifests) next.push(await withCompressedLayers(store, m, signal));
    if (next.every((m, i) => m === manifests[i])) return d;
    doc = { ...value, manifests: next };
  } else {
    const layers = childrenOf({ layers: value.layers });
    const next: Descriptor[] = [];
    for (const l of layers) next.push(isUncompressedLayer(l) ? await compressedLayer(store, l, signal) : l);
    if (next.every((l, i) => l === layers[i])) return d;
    doc = { ...value, layers: next };
  }
  const info = await store.blobs.putBytes(Buffer.from(JSON.stringify(doc)));
  return { ...stripDigest(d), mediaType: d.mediaType, digest: info.digest, size: info.size };
}

/** gzip through `pigz` (parallel; no name or time in the header). Fails with ENOENT when pigz is not installed. */
function pigzStream(input: Readable): Readable {
  const child = spawn('pigz', ['-c', '-n', '-6'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { if (stderr.length < 4096) stderr += c.toString('utf8'); });
  // The output ends only once pigz has exited 0: a pigz that dies (a signal, an error) must fail
  // the put, never let it store what came out so far as the whole blob (an empty "gzip" layer).
  const out = new PassThrough();
  child.stdout.pipe(out, { end: false });
  child.on('error', (err) => {
    input.destroy();
    out.destroy(err);
  });
  child.on('close', (code, signal) => {
    if (code === 0) out.end();
    else out.destroy(new TsbuildError('STORE_IO', `pigz ${signal === null ? `exited ${String(code)}` : `was killed by ${signal}`}${stderr.trim() === '' ? '' : `: ${stderr.trim()}`}`));
  });
  child.stdin.on('error', () => undefined);
  input.on('error', (err) => {
    child.kill();
    out.destroy(err);
  });
  out.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  input.pipe(child.stdin);
  return out;
}

/** gzip through zlib (the fallback). */
function zlibStream(input: Readable): Readable {
  const gz = createGzip({ level: 6 });
  input.on('error', (err) => gz.destroy(err));
  return input.pipe(gz);
}

function isMissingProgram(err: unknown): boolean {
  let e: unknown = err;
  for (let i = 0; i < 4 && e !== null && typeof e === 'object'; i++) {
    if ((e as { code?: unknown }).code === 'ENOENT' && (e as { syscall?: unknown }).syscall === 'spawn pigz') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

function stripDigest(d: Descriptor): Omit<Descriptor, 'digest' | 'size' | 'mediaType'> {
  const { digest: _d, size: _s, mediaType: _m, ...rest } = d;
  return rest;
}
