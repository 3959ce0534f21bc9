import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDigest, type Digest } from '../core/index.js';
import { writeJsonAtomic } from './json-file.js';

/** Most repositories remembered per blob. */
const MAX_PER_BLOB = 8;

/** The file (under a store root) recording which registry repositories hold which blobs. */
export function blobRecordPath(storeRoot: string): string {
  return join(storeRoot, 'cache', 'registry-blobs.json');
}

/** Digest -> repositories (`host/path`, API host) known to hold the blob, most recent first. */
export type BlobLocations = Record<string, string[]>;

/** Reads the record; a missing or damaged file is an empty record (it is only a hint). */
export async function readBlobRecord(path: string): Promise<BlobLocations> {
  try {
    const doc = JSON.parse(await readFile(path, 'utf8')) as unknown;
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return {};
    const out: BlobLocations = {};
    for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
      if (isDigest(k) && Array.isArray(v)) out[k] = v.filter((x): x is string => typeof x === 'string');
    }
    return out;
  } catch {
    return {};
  }
}

/**
 * Adds `repository` (`host/path`) as a holder of each digest and writes the record atomically
 * (tmp file + rename); unchanged when every digest already names `repository` first. Concurrent writers may lose each other's additions: it is a hint only.
 */
export async function recordBlobLocations(path: string, repository: string, digests: readonly Digest[]): Promise<void> {
  if (digests.length === 0) return;
  const record = await readBlobRecord(path);
  // Nothing new (a no-op push or pull): leave the file alone.
  if (digests.every((d) => record[d]?.[0] === repository)) return;
  for (const d of digests) {
    const list = (record[d] ?? []).filter((r) => r !== repository);
    record[d] = [repository, ...list].slice(0, MAX_PER_BLOB);
  }
  // The record is an optimisation: failing to write it must not fail a pull or push.
  await writeJsonAtomic(path, record).catch(() => undefined);
}

/** Other repositories on `host` known to hold `digest` (candidates for a cross-repository mount). */
export function mountSourcesOf(record: BlobLocations, digest: Digest, host: string, exceptPath: string): string[] {
  const prefix = `${host}/`;
  return (record[digest] ?? []).filter((r) => r.startsWith(prefix) && r !== `${prefix}${exceptPath}`).map((r) => r.slice(prefix.length));
}
