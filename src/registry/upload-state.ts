import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../core/index.js';
import { writeJsonAtomic } from './json-file.js';

/** A chunked upload in progress, persisted so a push killed midway resumes after restart. */
export interface UploadState {
  /** Absolute upload URL (the registry's latest Location). */
  readonly location: string;
  /** Bytes the registry acknowledged. */
  readonly offset: number;
}

/** The file (under a store's cache directory) recording the upload of `digest` to `host/path`. */
export function uploadStatePath(cacheDir: string, repository: string, digest: Digest): string {
  const key = createHash('sha256').update(`${repository}@${digest}`).digest('hex').slice(0, 32);
  return join(cacheDir, 'registry-uploads', `${key}.json`);
}

/** Reads a persisted upload; undefined when none (or unreadable: it is only a hint). */
export async function readUploadState(path: string): Promise<UploadState | undefined> {
  try {
    const doc = JSON.parse(await readFile(path, 'utf8')) as Partial<UploadState>;
    return typeof doc.location === 'string' && typeof doc.offset === 'number' ? { location: doc.location, offset: doc.offset } : undefined;
  } catch {
    return undefined;
  }
}

/** Persists an upload's progress atomically (failures are ignored: resuming is an optimisation). */
export async function writeUploadState(path: string, state: UploadState): Promise<void> {
  await writeJsonAtomic(path, state).catch(() => undefined);
}

/** Forgets a finished or abandoned upload. */
export async function removeUploadState(path: string): Promise<void> {
  await rm(path, { force: true }).catch(() => undefined);
}
