import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { formatReference, MediaType, sha256Of, TsbuildError, type Descriptor, type EventSink, type ImageReference } from '../core/index.js';
import { downloadBlob, locationOf, pushImage, type HttpRegistryClient } from '../registry/index.js';
import { DirBlobStore, OCI_LAYOUT_FILE, readIndex, REF_NAME_ANNOTATION, withLock, writeFileAtomic, type Store } from '../store/index.js';
import { cacheConfigDescriptor, parseCacheConfig, type CacheConfig, type CacheDocuments } from './cache-format.js';

/** Where a build cache is exported to or imported from. */
export type CacheLocation =
  | { readonly kind: 'registry'; readonly ref: ImageReference; readonly client: HttpRegistryClient }
  /** An OCI image layout directory; the cache manifest is the index entry named `tag`. */
  | { readonly kind: 'local'; readonly dir: string; readonly tag: string };

/** A human name of a location for messages (`registry REF` / `local DIR`). */
export function describeCacheLocation(loc: CacheLocation): string {
  return loc.kind === 'registry' ? formatReference(loc.ref) : `${loc.dir} (tag ${loc.tag})`;
}

/** The OCI layout blob store of a local cache directory (staging its writes in `tmp`). */
function layoutBlobs(dir: string, tmp: string): DirBlobStore {
  return new DirBlobStore(dir, tmp);
}

const NOT_FOUND_CODES = new Set(['REG_MANIFEST_UNKNOWN', 'REG_NAME_UNKNOWN', 'REG_NOT_FOUND']);

/**
 * Reads the cache manifest and config at `loc` (no layer). Resolves to undefined when the
 * location holds nothing under that name (a registry 404, a missing directory or tag).
 * Throws SOLVE_CACHE_BAD_FORMAT for something that is not a tsbuild cache, REG_* / SOLVE_CACHE_IO otherwise.
 */
export async function readCacheConfig(loc: CacheLocation, store: Store, signal?: AbortSignal): Promise<CacheConfig | undefined> {
  const what = `cache ${describeCacheLocation(loc)}`;
  if (loc.kind === 'registry') {
    const repo = locationOf(loc.ref);
    let fetched;
    try {
      fetched = await loc.client.getManifest(repo, loc.ref.digest ?? loc.ref.tag ?? 'latest', signal);
    } catch (err) {
      if (err instanceof TsbuildError && NOT_FOUND_CODES.has(err.code)) return undefined;
      throw err;
    }
    const config = cacheConfigDescriptor(parseJson(fetched.bytes, what), what);
    await downloadBlob(loc.client, store.blobs, repo, config, signal === undefined ? {} : { signal });
    return parseCacheConfig((await store.blobs.readJson(config.digest)).value, `config of ${what}`);
  }
  let index;
  try {
    index = await readIndex(join(loc.dir, 'index.json'));
  } catch (err) {
    throw new TsbuildError('SOLVE_CACHE_IO', `${what}: ${(err as Error).message}`, { cause: err });
  }
  const entry = index.manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === loc.tag);
  if (entry === undefined) return undefined;
  const blobs = layoutBlobs(loc.dir, store.paths.tmp);
  const manifest = await readVerified(blobs, entry, what);
  const config = cacheConfigDescriptor(manifest, what);
  return parseCacheConfig(await readVerified(blobs, config, `config of ${what}`), `config of ${what}`);
}

/** Reads a small JSON blob of a layout, checking its digest. Throws SOLVE_CACHE_IO / SOLVE_CACHE_BAD_FORMAT. */
async function readVerified(blobs: DirBlobStore, d: Descriptor, what: string): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = (await blobs.readJson(d.digest)).bytes;
  } catch (err) {
    throw new TsbuildError('SOLVE_CACHE_IO', `${what}: ${(err as Error).message}`, { cause: err });
  }
  if (sha256Of(bytes) !== d.digest) throw new TsbuildError('SOLVE_CACHE_BAD_FORMAT', `${what}: blob ${d.digest} does not match its digest`);
  return parseJson(bytes, what);
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new TsbuildError('SOLVE_CACHE_BAD_FORMAT', `${what}: the manifest is not JSON`);
  }
}

/** Copies one blob of the cache at `loc` into the store (streamed, digest and size verified). */
export async function fetchCacheBlob(loc: CacheLocation, store: Store, d: Descriptor, signal?: AbortSignal): Promise<void> {
  if (loc.kind === 'registry') {
    await downloadBlob(loc.client, store.blobs, locationOf(loc.ref), d, signal === undefined ? {} : { signal });
    return;
  }
  const path = layoutBlobs(loc.dir, store.paths.tmp).pathOf(d.digest);
  const source = await new Promise<ReturnType<typeof createReadStream>>((resolve, reject) => {
    const s = createReadStream(path);
    s.once('open', () => resolve(s));
    s.once('error', (err) => reject(new TsbuildError('SOLVE_CACHE_IO', `cache ${describeCacheLocation(loc)}: cannot read blob ${d.digest}: ${err.message}`, { cause: err })));
  });
  try {
    await store.blobs.put(source, { digest: d.digest, size: d.size }, signal === undefined ? {} : { signal });
  } catch (err) {
    if (err instanceof TsbuildError && (err.code === 'STORE_DIGEST_MISMATCH' || err.code === 'STORE_SIZE_MISMATCH')) {
      throw new TsbuildError('SOLVE_CACHE_BAD_LAYER', `cache ${describeCacheLocation(loc)}: blob ${d.digest} is damaged: ${err.message}`, { cause: err, hint: 'export the cache again' });
    }
    throw err;
  }
}

/**
 * Writes a cache export (its config, manifest and compressed layers are blobs of the store) to
 * `loc`: pushed like an image to a registry, or copied into an OCI layout directory whose
 * index.json then names the manifest `tag` (replacing the previous one; under a lock file).
 */
export async function writeCache(loc: CacheLocation, store: Store, docs: CacheDocuments, options: { signal?: AbortSignal; onEvent?: EventSink } = {}): Promise<void> {
  if (loc.kind === 'registry') {
    await pushImage(loc.client, store, docs.manifestDescriptor, loc.ref, {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }),
    });
    return;
  }
  const dir = loc.dir;
  const tmp = join(dir, `.tsbuild-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await mkdir(tmp, { recursive: true });
    if (!(await access(join(dir, 'oci-layout')).then(() => true, () => false))) await writeFile(join(dir, 'oci-layout'), OCI_LAYOUT_FILE);
  } catch (err) {
    throw new TsbuildError('SOLVE_CACHE_IO', `cannot write the cache directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const out = layoutBlobs(dir, tmp);
    for (const d of [...docs.layers, docs.configDescriptor, docs.manifestDescriptor]) {
      if ((await out.stat(d.digest))?.size === d.size) continue;
      await out.put(await store.blobs.open(d.digest), { digest: d.digest, size: d.size }, options.signal === undefined ? {} : { signal: options.signal });
    }
    await withLock(join(dir, 'index.json.lock'), async () => {
      const index = await readIndex(join(dir, 'index.json'));
      const keep = index.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== loc.tag);
      const entry: Descriptor = { ...docs.manifestDescriptor, mediaType: MediaType.ociManifest, annotations: { [REF_NAME_ANNOTATION]: loc.tag } };
      const next = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [...keep, entry] };
      await writeFileAtomic(join(dir, 'index.json'), `${JSON.stringify(next)}\n`, tmp);
    });
  } catch (err) {
    if (err instanceof TsbuildError) throw err;
    throw new TsbuildError('SOLVE_CACHE_IO', `cannot write the cache directory ${dir}: ${(err as Error).message}`, { cause: err });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
