import { Readable } from 'node:stream';
import { TsbuildError, type Descriptor } from '../core/index.js';
import type { BlobStore } from '../store/index.js';
import type { HttpRegistryClient, RepositoryLocation } from './client.js';
import { isRetryableNetError, networkError } from './errors.js';

/** Options of {@link downloadBlob}. */
export interface DownloadOptions {
  readonly signal?: AbortSignal;
  /** Range re-requests after a broken connection (default 5). */
  readonly resumes?: number;
  readonly onProgress?: (bytes: number) => void;
}

/**
 * A stream of the blob's bytes that survives broken connections: after a reset or a short body
 * it asks again with `Range: bytes=N-` and continues (skipping bytes when the server ignores
 * Range). Never yields more than `d.size` bytes (throws `REG_DIGEST_MISMATCH` beyond).
 */
export function resumableBlobStream(client: HttpRegistryClient, repo: RepositoryLocation, d: Descriptor, options: DownloadOptions = {}): Readable {
  const { signal } = options;
  const resumes = options.resumes ?? 5;
  async function* bytes(): AsyncGenerator<Buffer> {
    let offset = 0;
    let failures = 0;
    for (;;) {
      const opened = await client.openBlob(repo, d.digest, offset, signal);
      let skip = offset - opened.start;
      try {
        for await (const raw of opened.body) {
          let chunk = raw as Buffer;
          if (skip > 0) {
            const drop = Math.min(skip, chunk.length);
            chunk = chunk.subarray(drop);
            skip -= drop;
            if (chunk.length === 0) continue;
          }
          offset += chunk.length;
          if (offset > d.size) {
            throw new TsbuildError('REG_DIGEST_MISMATCH', `blob ${d.digest} from ${repo.host}/${repo.path} is longer than the ${d.size} bytes its descriptor states`);
          }
          options.onProgress?.(offset);
          yield chunk;
        }
        if (offset === d.size) return;
        throw Object.assign(new Error(`body ended after ${offset} of ${d.size} bytes`), { code: 'ECONNRESET' });
      } catch (err) {
        opened.body.destroy();
        if (signal?.aborted === true || err instanceof TsbuildError) throw err;
        if (!isRetryableNetError(err) && !/other side closed|terminated|aborted/i.test((err as Error).message)) throw networkError(repo.host, `downloading ${d.digest}`, err);
        if (++failures > resumes) throw networkError(repo.host, `downloading ${d.digest} (after ${resumes} resumed attempts)`, err);
        await new Promise((r) => setTimeout(r, 100 * failures));
      }
    }
  }
  return Readable.from(bytes(), { objectMode: false });
}

/**
 * Downloads a blob into the store unless present: streamed socket -> hash -> tmp file, verified
 * (digest and size) before it becomes visible. Throws `REG_DIGEST_MISMATCH` (nothing is stored)
 * and the transport's `REG_*` codes. Resolves to true when bytes were downloaded.
 */
export async function downloadBlob(client: HttpRegistryClient, blobs: BlobStore, repo: RepositoryLocation, d: Descriptor, options: DownloadOptions = {}): Promise<boolean> {
  const have = await blobs.stat(d.digest);
  if (have !== undefined && have.size === d.size) return false;
  try {
    await blobs.put(resumableBlobStream(client, repo, d, options), { digest: d.digest, size: d.size }, options.signal === undefined ? {} : { signal: options.signal });
  } catch (err) {
    if (err instanceof TsbuildError && (err.code === 'STORE_DIGEST_MISMATCH' || err.code === 'STORE_SIZE_MISMATCH')) {
      throw new TsbuildError('REG_DIGEST_MISMATCH', `blob from ${repo.host}/${repo.path}: ${err.message}`, { cause: err });
    }
    const inner = err instanceof TsbuildError && err.code === 'STORE_IO' && err.cause instanceof TsbuildError ? err.cause : err;
    throw inner;
  }
  return true;
}
