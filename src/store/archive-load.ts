import { open as openFile, readFile, readdir } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import {
  formatReference, isDigest, MediaType, parseReference, TsbuildError,
  type Descriptor, type Digest, type ImageIndex,
} from '../core/index.js';
import type { BlobInfo } from './blob-store.js';
import { decompressed, detectCompression } from './compression.js';
import { IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION } from './oci-layout.js';
import { withName } from './refs.js';
import type { Store } from './store.js';
import { isIndexType, isManifestType, walkImages } from './walk.js';

/** Options of {@link loadArchive} and {@link loadLayoutDir}. */
export interface LoadOptions {
  /** Names an image whose archive carries no full reference (only a tag, or nothing). */
  readonly tag?: string;
  readonly signal?: AbortSignal;
  /** Progress: called after each blob is stored. */
  readonly onBlob?: (info: BlobInfo) => void;
}

/** One image a load stored. */
export interface LoadedImage {
  /** Full references now pointing at it (empty: loaded untagged). */
  readonly names: readonly string[];
  readonly descriptor: Descriptor;
}

/** What a load did. */
export interface LoadResult {
  readonly images: readonly LoadedImage[];
  readonly warnings: readonly string[];
}

const MAX_JSON = 4 * 1024 * 1024;
const MAX_ENTRIES = 100_000;
const SMALL_FILE = 64 * 1024;
const BLOB_PATH = /^blobs\/sha256\/([0-9a-f]{64})$/;

/** A candidate name from an archive: a full reference, or only a tag (`latest`). */
type ArchiveName = { kind: 'full'; name: string } | { kind: 'tag'; tag: string } | { kind: 'none' };

function classifyName(text: string | undefined): ArchiveName {
  if (text === undefined || text === '') return { kind: 'none' };
  if (!/[/:@]/.test(text)) return { kind: 'tag', tag: text };
  try {
    return { kind: 'full', name: formatReference(parseReference(text)) };
  } catch {
    return { kind: 'none' };
  }
}

function badArchive(what: string, msg: string, cause?: unknown): TsbuildError {
  return new TsbuildError('STORE_BAD_ARCHIVE', `${what}: ${msg}`, cause === undefined ? {} : { cause });
}

function parseJson<T>(what: string, bytes: Buffer): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw badArchive(what, `invalid JSON: ${(err as Error).message}`, err);
  }
}

async function readAll(stream: Readable, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    n += (c as Buffer).length;
    if (n > limit) throw badArchive(what, `larger than ${limit} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Media type of a stored layer blob from its magic bytes. */
async function layerMediaType(store: Store, digest: Digest): Promise<string> {
  const fh = await openFile(store.blobs.pathOf(digest), 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    const kind = detectCompression(head.subarray(0, bytesRead));
    return kind === 'gzip' ? MediaType.ociLayerGzip : kind === 'zstd' ? MediaType.ociLayerZstd : MediaType.ociLayer;
  } finally {
    await fh.close();
  }
}

/** Checks that every blob below `roots` is stored with the declared size. Throws `STORE_BAD_ARCHIVE`. */
async function checkComplete(store: Store, roots: readonly Descriptor[], what: string): Promise<void> {
  const problems: string[] = [];
  await walkImages(store.blobs, roots, async (n) => {
    if (!n.present) problems.push(`missing blob ${n.descriptor.digest}`);
    else if ((await store.blobs.stat(n.descriptor.digest))?.size !== n.descriptor.size) problems.push(`blob ${n.descriptor.digest} has the wrong size`);
  });
  if (problems.length > 0) throw badArchive(what, problems.slice(0, 5).join('; '));
}

/** Names the images of an archive and records them in index.json. */
async function nameImages(store: Store, found: { descriptor: Descriptor; names: ArchiveName[] }[], options: LoadOptions, what: string): Promise<LoadResult> {
  const warnings: string[] = [];
  const tag = options.tag === undefined ? undefined : formatReference(parseReference(options.tag));
  const unnamed = found.filter((f) => !f.names.some((n) => n.kind === 'full'));
  if (tag !== undefined && unnamed.length > 1) {
    throw new TsbuildError('STORE_AMBIGUOUS_TAG', `${what} holds ${unnamed.length} images without a full name; --tag can name only one`);
  }
  const images: LoadedImage[] = [];
  for (const f of found) {
    const names = [...new Set(f.names.flatMap((n) => (n.kind === 'full' ? [n.name] : [])))];
    if (tag !== undefined && (unnamed.includes(f) || found.length === 1)) names.push(tag);
    const plain = withName(f.descriptor, undefined);
    const { [IMAGE_NAME_ANNOTATION]: _drop, ...annotations } = plain.annotations ?? {};
    const { annotations: _a, ...bare } = plain;
    const descriptor: Descriptor = Object.keys(annotations).length > 0 ? { ...bare, annotations } : bare;
    if (names.length === 0) {
      const onlyTag = f.names.find((n) => n.kind === 'tag');
      warnings.push(`image ${descriptor.digest} has ${onlyTag?.kind === 'tag' ? `only the tag "${onlyTag.tag}"` : 'no name'}; loaded untagged (name it with --tag NAME or "tsbuild tag")`);
      await store.refs.addUntagged(descriptor);
    }
    const unique = [...new Set(names)];
    for (const n of unique) await store.refs.set(n, descriptor);
    images.push({ names: unique, descriptor });
  }
  return { images, warnings };
}

/** Images of an OCI index.json (descriptors with their archive names). */
function ociImages(index: ImageIndex): { descriptor: Descriptor; names: ArchiveName[] }[] {
  return index.manifests.map((d) => {
    const full = classifyName(d.annotations?.[IMAGE_NAME_ANNOTATION]);
    const ref = classifyName(d.annotations?.[REF_NAME_ANNOTATION]);
    return { descriptor: d, names: [full, ref] };
  });
}

interface DockerManifestItem {
  readonly Config: string;
  readonly RepoTags?: readonly string[] | null;
  readonly Layers: readonly string[];
}

/**
 * Loads an image archive from `input` into the store: an OCI archive (oci-layout + index.json +
 * blobs/), a `docker save` archive (manifest.json), or a docker 25+ archive (both), optionally
 * gzip-compressed. Blobs stream into the store as they are read; names are recorded only after
 * every blob is in place. Throws `STORE_BAD_ARCHIVE`, `STORE_AMBIGUOUS_TAG`, `STORE_*`.
 */
export async function loadArchive(store: Store, input: Readable, what: string, options: LoadOptions = {}): Promise<LoadResult> {
  const stream = await decompressed(input, what);
  const extract = tar.extract();
  const feeding = pipeline(stream, extract, options.signal === undefined ? {} : { signal: options.signal });
  feeding.catch(() => undefined);
  const json = new Map<string, Buffer>();
  const files = new Map<string, BlobInfo>();
  const links = new Map<string, string>();
  let count = 0;
  try {
    for await (const e of extract) {
      const entry = e as unknown as Readable & { header: tar.Header };
      if (++count > MAX_ENTRIES) throw badArchive(what, `more than ${MAX_ENTRIES} entries`);
      const h = entry.header;
      const name = posix.normalize(h.name).replace(/^(\.\/)+/, '').replace(/^\/+/, '').replace(/\/$/, '');
      if (h.type === 'symlink' || h.type === 'link') {
        // docker save shares identical layers through links: ../<id>/layer.tar
        const target = h.linkname ?? '';
        links.set(name, h.type === 'symlink' ? posix.normalize(posix.join(posix.dirname(name), target)) : posix.normalize(target));
        entry.resume();
        continue;
      }
      if (h.type !== 'file' && h.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      const blob = BLOB_PATH.exec(name);
      if (blob !== null) {
        const info = await store.blobs.put(entry, { digest: `sha256:${blob[1]}` as Digest, size: h.size ?? 0 }, options.signal === undefined ? {} : { signal: options.signal });
        files.set(name, info);
        options.onBlob?.(info);
      } else if (((name.endsWith('.json') || name === 'oci-layout' || name === 'repositories') && (h.size ?? 0) <= MAX_JSON) || (h.size ?? 0) <= SMALL_FILE) {
        // Documents and small files (docker's VERSION and legacy json) stay in memory; stored only if referenced.
        json.set(name, await readAll(entry, MAX_JSON, `${what}: ${name}`));
      } else {
        const info = await store.blobs.put(entry, { size: h.size ?? 0 }, options.signal === undefined ? {} : { signal: options.signal });
        files.set(name, info);
        options.onBlob?.(info);
      }
    }
    await feeding;
  } catch (err) {
    extract.destroy();
    stream.destroy();
    if (err instanceof TsbuildError) throw err;
    throw badArchive(what, `cannot read the archive: ${(err as Error).message}`, err);
  }

  const indexJson = json.get('index.json');
  if (indexJson !== undefined && json.has('oci-layout')) {
    const index = parseJson<ImageIndex>(`${what}: index.json`, indexJson);
    if (!Array.isArray(index.manifests)) throw badArchive(what, 'index.json has no manifests array');
    // JSON documents the index needs (small ones were buffered, not stored): store them now.
    for (const [path, bytes] of json) {
      const m = BLOB_PATH.exec(path);
      if (m !== null) await store.blobs.putBytes(bytes, { digest: `sha256:${m[1]}` as Digest });
    }
    const images = ociImages(index);
    await checkComplete(store, images.map((i) => i.descriptor), what);
    return nameImages(store, images, options, what);
  }
  const manifestJson = json.get('manifest.json');
  if (manifestJson === undefined) throw badArchive(what, 'neither an OCI archive (oci-layout, index.json) nor a docker archive (manifest.json)');
  const items = parseJson<DockerManifestItem[]>(`${what}: manifest.json`, manifestJson);
  if (!Array.isArray(items)) throw badArchive(what, 'manifest.json is not a list');
  const resolveFile = async (path: string): Promise<BlobInfo | undefined> => {
    let p = posix.normalize(path);
    for (let hops = 0; hops < 8 && links.has(p); hops++) p = links.get(p) as string;
    const small = json.get(p);
    return small !== undefined ? store.blobs.putBytes(small) : files.get(p);
  };
  const found: { descriptor: Descriptor; names: ArchiveName[] }[] = [];
  for (const item of items) {
    if (typeof item?.Config !== 'string' || !Array.isArray(item.Layers)) throw badArchive(what, 'manifest.json entry without Config or Layers');
    const config = await resolveFile(item.Config);
    if (config === undefined) throw badArchive(what, `config ${item.Config} is missing`);
    const layers: Descriptor[] = [];
    for (const l of item.Layers) {
      const info = await resolveFile(l);
      if (info === undefined) throw badArchive(what, `layer ${l} is missing`);
      layers.push({ mediaType: await layerMediaType(store, info.digest), digest: info.digest, size: info.size });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size },
      layers,
    };
    const stored = await store.blobs.putBytes(JSON.stringify(manifest));
    const names = (item.RepoTags ?? []).map((t) => classifyName(t));
    found.push({ descriptor: { mediaType: MediaType.ociManifest, digest: stored.digest, size: stored.size }, names });
  }
  return nameImages(store, found, options, what);
}

/**
 * Loads the images of an OCI image layout directory (e.g. what `skopeo copy ... oci:DIR` wrote),
 * copying the blobs they need. Throws `STORE_BAD_ARCHIVE` and `STORE_*` codes.
 */
export async function loadLayoutDir(store: Store, dir: string, options: LoadOptions = {}): Promise<LoadResult> {
  const what = dir;
  let index: ImageIndex;
  try {
    index = parseJson<ImageIndex>(`${dir}/index.json`, await readFile(posix.join(dir, 'index.json')));
    await readdir(posix.join(dir, 'blobs', 'sha256'));
  } catch (err) {
    if (err instanceof TsbuildError) throw err;
    throw badArchive(what, `not an OCI image layout: ${(err as Error).message}`, err);
  }
  if (!Array.isArray(index.manifests)) throw badArchive(what, 'index.json has no manifests array');
  const images = ociImages(index);
  // Copy in two passes: documents first (to learn the children), then everything below them.
  const queue: Descriptor[] = images.map((i) => i.descriptor);
  const seen = new Set<string>();
  while (queue.length > 0) {
    const d = queue.shift() as Descriptor;
    if (seen.has(d.digest) || !isDigest(d.digest)) continue;
    seen.add(d.digest);
    const src = posix.join(dir, 'blobs', 'sha256', d.digest.slice(7));
    const info = await store.blobs.put(createReadStream(src), { digest: d.digest, size: d.size }, options.signal === undefined ? {} : { signal: options.signal })
      .catch((err: unknown) => {
        throw badArchive(what, `blob ${d.digest}: ${(err as Error).message}`, err);
      });
    options.onBlob?.(info);
    if (isManifestType(d.mediaType) || isIndexType(d.mediaType)) {
      const doc = (await store.blobs.readJson(d.digest)).value as { config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[] };
      if (doc.config !== undefined) queue.push(doc.config);
      queue.push(...(doc.layers ?? []), ...(doc.manifests ?? []));
    }
  }
  await checkComplete(store, images.map((i) => i.descriptor), what);
  return nameImages(store, images, options, what);
}
