import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { isDigest, MediaType, type Descriptor, type Digest } from '../core/index.js';
import type { BlobInfo, Store } from '../store/index.js';
import { writeJsonAtomic } from './json-file.js';

/** Layer media types stored uncompressed, and their gzip counterparts for the registry. */
const GZIP_OF: Readonly<Record<string, string>> = {
  [MediaType.ociLayer]: MediaType.ociLayerGzip,
  'application/vnd.docker.image.rootfs.diff.tar': MediaType.dockerLayerGzip,
};

/** True when a layer descriptor is an uncompressed tar (compressed at push). */
export function isUncompressedLayer(d: Descriptor): boolean {
  return GZIP_OF[d.mediaType] !== undefined;
}

function cachePath(store: Store): string {
  return join(store.paths.cache, 'registry-compressed.json');
}

/**
 * The gzip-compressed form of an uncompressed layer, stored as a blob of the store: computed
 * once (streamed through pigz when installed, else zlib, into the store) and remembered per
 * uncompressed digest in `cache/registry-compressed.json` while the compressed blob exists.
 * The media type follows the layer's family (OCI tar -> OCI tar+gzip, Docker tar -> Docker gzip).
 */
export async function compressedLayer(store: Store, layer: Descriptor, signal?: AbortSignal): Promise<Descriptor> {
  const mediaType = GZIP_OF[layer.mediaType] as string;
  const path = cachePath(store);
  const cache = await readFile(path, 'utf8').then((t) => JSON.parse(t) as Record<string, { digest: unknown; size: unknown }>, () => ({} as Record<string, { digest: unknown; size: unknown }>));
  const hit = cache[layer.digest];
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
  const fresh = await readFile(path, 'utf8').then((t) => JSON.parse(t) as Record<string, unknown>, () => ({} as Record<string, unknown>));
  await writeJsonAtomic(path, { ...fresh, [layer.digest]: { digest: info.digest, size: info.size } }).catch(() => undefined);
  return { ...stripDigest(layer), mediaType, digest: info.digest as Digest, size: info.size };
}

/** gzip through `pigz` (parallel; no name or time in the header). Fails with ENOENT when pigz is not installed. */
function pigzStream(input: Readable): Readable {
  const child = spawn('pigz', ['-c', '-n', '-6'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const out = child.stdout;
  child.on('error', (err) => {
    input.destroy();
    out.destroy(err);
  });
  child.on('close', (code) => {
    if (code !== 0 && code !== null) out.destroy(new Error(`pigz exited ${code}`));
  });
  child.stdin.on('error', () => undefined);
  input.on('error', (err) => {
    child.kill();
    out.destroy(err);
  });
  out.on('close', () => {
    if (child.exitCode === null) child.kill();
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
