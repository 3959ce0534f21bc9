import { isDigest, MediaType, sha256Of, TsbuildError, type Descriptor, type Digest, type ImageManifest } from '../core/index.js';
import type { CacheMountRecord } from './cache-mounts.js';

/**
 * The exported build cache, an OCI image manifest any registry or OCI layout stores:
 *
 * - `config`: a JSON blob of media type {@link CACHE_CONFIG_MEDIA_TYPE} ({@link CacheConfig}) that
 *   maps each cache key to the layer its step produced (diffID, uncompressed size and media type,
 *   and the compressed blob), with the key of the step's parent vertex (the chain);
 *   and the `RUN --mount=type=cache` directories by mount id (cache-mounts.ts);
 * - `layers`: the gzip blobs of those layers and mounts, each once, in first-use order.
 *
 * No timestamps: the same build exports the same bytes, so an unchanged cache re-exports as no-op.
 */
export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.tsbuild.cache.config.v1+json';
/** The `artifactType` of a cache manifest (the same as its config media type). */
export const CACHE_ARTIFACT_TYPE = CACHE_CONFIG_MEDIA_TYPE;
const FORMAT = 'tsbuild-cache/1';

/** One step of the exported cache: its key and what it produced. */
export interface CacheConfigRecord {
  readonly key: Digest;
  /** Key of the vertex the step ran on (its parent in the chain); absent on a source. */
  readonly parent?: Digest;
  /** The step's display name (information only). */
  readonly name?: string;
  /** The layer as the build stores it (uncompressed: digest = diffID). */
  readonly diffId: Digest;
  readonly size: number;
  readonly mediaType: string;
  /** The compressed blob in the manifest's layers. */
  readonly blob: Descriptor;
}

/** The config blob of a cache manifest. */
export interface CacheConfig {
  readonly format: typeof FORMAT;
  readonly records: readonly CacheConfigRecord[];
  /** Cache mount contents by id (absent when none). */
  readonly mounts?: readonly CacheMountRecord[];
}

/** The documents of a cache export (serialised, ready to store). */
export interface CacheDocuments {
  readonly config: Buffer;
  readonly configDescriptor: Descriptor;
  readonly manifest: Buffer;
  readonly manifestDescriptor: Descriptor;
  /** The compressed layer blobs the manifest lists. */
  readonly layers: readonly Descriptor[];
}

/** Builds the config and manifest of a cache export from its records (sorted by key, deterministic) and cache mounts. */
export function createCacheDocuments(records: readonly CacheConfigRecord[], mounts: readonly CacheMountRecord[] = []): CacheDocuments {
  const sorted = [...records].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const unique = sorted.filter((r, i) => i === 0 || sorted[i - 1]?.key !== r.key);
  const mountList = [...mounts].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((m) => ({ id: m.id, diffId: m.diffId, size: m.size, blob: plainBlob(m.blob) }));
  const cfg: CacheConfig = { format: FORMAT, records: unique.map(plainRecord), ...(mountList.length === 0 ? {} : { mounts: mountList }) };
  const config = Buffer.from(JSON.stringify(cfg));
  const configDescriptor: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: sha256Of(config), size: config.length };
  const layers: Descriptor[] = [];
  const seen = new Set<Digest>();
  for (const r of [...unique, ...mountList]) {
    if (seen.has(r.blob.digest)) continue;
    seen.add(r.blob.digest);
    layers.push({ mediaType: r.blob.mediaType, digest: r.blob.digest, size: r.blob.size });
  }
  const doc: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, artifactType: CACHE_ARTIFACT_TYPE, config: configDescriptor, layers };
  const manifest = Buffer.from(JSON.stringify(doc));
  return { config, configDescriptor, manifest, manifestDescriptor: { mediaType: MediaType.ociManifest, digest: sha256Of(manifest), size: manifest.length }, layers };
}

function plainRecord(r: CacheConfigRecord): CacheConfigRecord {
  return {
    key: r.key,
    ...(r.parent === undefined ? {} : { parent: r.parent }),
    ...(r.name === undefined ? {} : { name: r.name }),
    diffId: r.diffId,
    size: r.size,
    mediaType: r.mediaType,
    blob: plainBlob(r.blob),
  };
}

function plainBlob(d: Descriptor): Descriptor {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size };
}

/** The config descriptor of a cache manifest, or a SOLVE_CACHE_BAD_FORMAT error naming `what`. */
export function cacheConfigDescriptor(manifest: unknown, what: string): Descriptor {
  const m = manifest as Partial<ImageManifest> | null;
  const c = m?.config as Partial<Descriptor> | undefined;
  if (m === null || typeof m !== 'object' || c === undefined || c.mediaType !== CACHE_CONFIG_MEDIA_TYPE || !isDigest(c.digest) || !Number.isSafeInteger(c.size)) {
    throw new TsbuildError('SOLVE_CACHE_BAD_FORMAT', `${what} is not a tsbuild build cache (no config of type ${CACHE_CONFIG_MEDIA_TYPE})`, {
      hint: 'export it with --cache-to; caches of other builders (BuildKit) cannot be read',
    });
  }
  return c as Descriptor;
}

function isBlob(v: unknown): v is Descriptor {
  const d = v as Partial<Descriptor> | null;
  return d !== null && typeof d === 'object' && typeof d.mediaType === 'string' && isDigest(d.digest) && Number.isSafeInteger(d.size) && (d.size as number) >= 0;
}

/** Parses and checks a cache config. Throws SOLVE_CACHE_BAD_FORMAT naming `what`. */
export function parseCacheConfig(value: unknown, what: string): CacheConfig {
  const bad = (why: string): TsbuildError => new TsbuildError('SOLVE_CACHE_BAD_FORMAT', `${what}: ${why}`);
  const v = value as { format?: unknown; records?: unknown } | null;
  if (v === null || typeof v !== 'object' || v.format !== FORMAT) throw bad(`not a cache config of format ${FORMAT}`);
  if (!Array.isArray(v.records)) throw bad('records must be a list');
  const records: CacheConfigRecord[] = [];
  for (const [i, r] of (v.records as unknown[]).entries()) {
    const x = r as Partial<Record<keyof CacheConfigRecord, unknown>> | null;
    if (x === null || typeof x !== 'object' || !isDigest(x.key) || !isDigest(x.diffId) || !Number.isSafeInteger(x.size) || typeof x.mediaType !== 'string' || !isBlob(x.blob)
      || (x.parent !== undefined && !isDigest(x.parent))) {
      throw bad(`record ${i} is malformed`);
    }
    records.push({
      key: x.key, diffId: x.diffId, size: x.size as number, mediaType: x.mediaType, blob: x.blob,
      ...(x.parent === undefined ? {} : { parent: x.parent as Digest }),
      ...(typeof x.name === 'string' ? { name: x.name } : {}),
    });
  }
  const mounts: CacheMountRecord[] = [];
  const rawMounts = (v as { mounts?: unknown }).mounts;
  if (rawMounts !== undefined && !Array.isArray(rawMounts)) throw bad('mounts must be a list');
  for (const [i, m] of ((rawMounts ?? []) as unknown[]).entries()) {
    const x = m as Partial<Record<keyof CacheMountRecord, unknown>> | null;
    if (x === null || typeof x !== 'object' || typeof x.id !== 'string' || x.id === '' || !isDigest(x.diffId) || !Number.isSafeInteger(x.size) || !isBlob(x.blob)) {
      throw bad(`mount ${i} is malformed`);
    }
    mounts.push({ id: x.id, diffId: x.diffId, size: x.size as number, blob: x.blob });
  }
  return { format: FORMAT, records, ...(mounts.length === 0 ? {} : { mounts }) };
}
