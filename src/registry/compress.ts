import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { isDigest, MediaType, type Descriptor, type Digest } from '../core/index.js';
import type { Store } from '../store/index.js';
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
 * once (streamed through zlib into the store) and remembered per uncompressed digest in
 * `cache/registry-compressed.json` while the compressed blob exists. `docker` selects the
 * Docker media type instead of the OCI one.
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
  const source = await store.blobs.open(layer.digest);
  const gz = createGzip({ level: 6 });
  source.on('error', (err) => gz.destroy(err));
  const info = await store.blobs.put(source.pipe(gz), {}, signal === undefined ? {} : { signal });
  const fresh = await readFile(path, 'utf8').then((t) => JSON.parse(t) as Record<string, unknown>, () => ({} as Record<string, unknown>));
  await writeJsonAtomic(path, { ...fresh, [layer.digest]: { digest: info.digest, size: info.size } }).catch(() => undefined);
  return { ...stripDigest(layer), mediaType, digest: info.digest as Digest, size: info.size };
}

function stripDigest(d: Descriptor): Omit<Descriptor, 'digest' | 'size' | 'mediaType'> {
  const { digest: _d, size: _s, mediaType: _m, ...rest } = d;
  return rest;
}
