import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import {
  familiarReference, MediaType, parseReference, TsbuildError, type Descriptor, type Digest, type ImageIndex,
} from '../core/index.js';
import { acquireLease } from './gc.js';
import { withCompressedLayers } from './layer-gzip.js';
import { IMAGE_NAME_ANNOTATION, OCI_LAYOUT_FILE, PULLED_INDEX_ANNOTATION, REF_NAME_ANNOTATION } from './oci-layout.js';
import { withName } from './refs.js';
import type { Store } from './store.js';
import { isManifestType, walkImages } from './walk.js';

/** Archive formats `save` writes. */
export type ArchiveFormat = 'oci' | 'docker';

/** One image to save, with the full names to record for it. */
export interface SaveImage {
  readonly descriptor: Descriptor;
  readonly names: readonly string[];
}

/** Options of {@link saveArchive}. */
export interface SaveOptions {
  readonly format: ArchiveFormat;
  /** Write uncompressed layers gzip-compressed (made once per layer and remembered, see {@link withCompressedLayers}). */
  readonly gzipLayers?: boolean;
  readonly signal?: AbortSignal;
}

/** Fixed entry metadata, so the same images give the same archive bytes. */
const HEADER = { mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', mtime: new Date(0) } as const;

/**
 * Writes `images` as a tar to `out`: an OCI image layout (oci-layout, index.json with
 * `io.containerd.image.name` = full name and `org.opencontainers.image.ref.name` = tag, blobs/),
 * and with format `docker` also `manifest.json` and `repositories` so `docker load` accepts it.
 * Blobs stream from the store; entries are in a fixed order. With `gzipLayers` the manifests are
 * rewritten to point at gzip layers (so their digests differ from the store's; the image IDs do not).
 * Does not close `out` on failure.
 * Throws `STORE_BLOB_NOT_FOUND`, `STORE_IO`, `STORE_SAVE_INDEX_DOCKER` (an index in docker format).
 */
export async function saveArchive(store: Store, images: readonly SaveImage[], out: Writable, options: SaveOptions): Promise<void> {
  if (options.gzipLayers !== true) return writeArchive(store, images, out, options);
  // The lease keeps a concurrent prune from removing the gzip blobs and rewritten manifests.
  const lease = await acquireLease(store);
  try {
    const compressed: SaveImage[] = [];
    for (const img of images) compressed.push({ ...img, descriptor: await withCompressedLayers(store, img.descriptor, options.signal) });
    await writeArchive(store, compressed, out, options);
  } finally {
    await lease.release();
  }
}

/** The descriptor without the store's own notes (a pulled index's digest means nothing in an archive). */
function withoutStoreNotes(d: Descriptor): Descriptor {
  if (d.annotations?.[PULLED_INDEX_ANNOTATION] === undefined) return d;
  const { [PULLED_INDEX_ANNOTATION]: _note, ...annotations } = d.annotations;
  const { annotations: _a, ...rest } = d;
  return Object.keys(annotations).length === 0 ? rest : { ...rest, annotations };
}

async function writeArchive(store: Store, images: readonly SaveImage[], out: Writable, options: SaveOptions): Promise<void> {
  const entries: Descriptor[] = [];
  for (const img of images) {
    const plain = withoutStoreNotes(withName(img.descriptor, undefined));
    if (img.names.length === 0) entries.push(plain);
    for (const name of img.names) {
      const ref = parseReference(name);
      const annotations: Record<string, string> = { ...(plain.annotations ?? {}), [IMAGE_NAME_ANNOTATION]: name };
      if (ref.tag !== undefined) annotations[REF_NAME_ANNOTATION] = ref.tag;
      entries.push({ ...plain, annotations });
    }
  }
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries };
  const blobs: Descriptor[] = [];
  await walkImages(store.blobs, images.map((i) => i.descriptor), (n) => {
    if (!n.present) throw new TsbuildError('STORE_BLOB_NOT_FOUND', `cannot save: blob ${n.descriptor.digest} is missing from the store`, { hint: 'run "tsbuild fsck"' });
    blobs.push(n.descriptor);
  });
  blobs.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));

  let dockerManifest: unknown[] | undefined;
  if (options.format === 'docker') {
    dockerManifest = [];
    const repositories: Record<string, Record<string, string>> = {};
    for (const img of images) {
      if (!isManifestType(img.descriptor.mediaType)) {
        throw new TsbuildError('STORE_SAVE_INDEX_DOCKER', `image ${img.names[0] ?? img.descriptor.digest} is a multi-platform index; docker archives hold single-platform images`, { hint: 'use --format oci' });
      }
      const m = (await store.blobs.readJson<{ config: Descriptor; layers: Descriptor[] }>(img.descriptor.digest)).value;
      const tags = img.names.map((n) => familiarReference(parseReference(n))).filter((t) => !t.includes('@'));
      dockerManifest.push({
        Config: blobPath(m.config.digest),
        RepoTags: tags,
        Layers: m.layers.map((l) => blobPath(l.digest)),
      });
      for (const t of tags) {
        const at = t.lastIndexOf(':');
        const repo = t.slice(0, at);
        (repositories[repo] ??= {})[t.slice(at + 1)] = m.config.digest.slice(7);
      }
    }
    dockerManifest.push(repositories);
  }

  const pack = tar.pack();
  const writing = pipeline(pack, out, options.signal === undefined ? {} : { signal: options.signal });
  writing.catch(() => undefined);
  const addBuffer = (name: string, text: string): Promise<void> =>
    new Promise((resolve, reject) => {
      pack.entry({ ...HEADER, name, type: 'file' }, Buffer.from(text), (err) => (err ? reject(err) : resolve()));
    });
  try {
    for (const dir of ['blobs/', 'blobs/sha256/']) {
      await new Promise<void>((resolve, reject) => pack.entry({ ...HEADER, mode: 0o755, name: dir, type: 'directory' }, (err) => (err ? reject(err) : resolve())));
    }
    await addBuffer('oci-layout', OCI_LAYOUT_FILE);
    await addBuffer('index.json', JSON.stringify(index));
    if (dockerManifest !== undefined) {
      const repositories = dockerManifest.pop();
      await addBuffer('manifest.json', JSON.stringify(dockerManifest));
      await addBuffer('repositories', JSON.stringify(repositories));
    }
    for (const b of blobs) {
      const st = await store.blobs.stat(b.digest);
      if (st === undefined) throw new TsbuildError('STORE_BLOB_NOT_FOUND', `blob ${b.digest} vanished while saving`);
      const entry = pack.entry({ ...HEADER, name: blobPath(b.digest), size: st.size, type: 'file' });
      await pipeline(await store.blobs.open(b.digest), entry);
    }
    pack.finalize();
    await writing;
  } catch (err) {
    pack.destroy();
    if (err instanceof TsbuildError) throw err;
    throw new TsbuildError('STORE_IO', `cannot write the archive: ${(err as Error).message}`, { cause: err });
  }
}

function blobPath(digest: Digest): string {
  return `blobs/sha256/${digest.slice(7)}`;
}
