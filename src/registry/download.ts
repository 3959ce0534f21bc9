import { Readable, type Writable } from 'node:stream';
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

/** Options of {@link downloadBlob}. */
export interface DownloadBlobOptions extends DownloadOptions {
  /**
   * Also receives the blob's bytes as they arrive (e.g. an unpack reading while the blob downloads),
   * at the pace of the slower of the two. Ended only after the blob was verified (digest and size)
   * and stored; destroyed with the error when the download fails. Not written to when the blob is
   * present already (then it is left alone: the caller reads the stored blob). A consumer that
   * destroys it early only stops receiving; the download goes on.
   */
  readonly tee?: Writable;
}

/**
 * Bytes gathered from the socket's chunks (64 KiB at most each) before they go to the tee in one
 * write: a consumer such as gunzip pays per chunk (measured: 64 KiB chunks cost gunzip 1.6 times the
 * CPU of 1 MiB ones).
 */
const TEE_CHUNK = 1024 * 1024;

/** Writes `chunk` to `tee`, waiting while it is full; a destroyed tee is skipped. */
async function writeTee(tee: Writable, chunk: Buffer): Promise<void> {
  if (tee.destroyed || tee.write(chunk) || tee.destroyed) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      tee.off('drain', done);
      tee.off('close', done);
      resolve();
    };
    tee.on('drain', done);
    tee.on('close', done);
  });
}

/**
 * Gathers the chunks of `source` into pieces of at least {@link TEE_CHUNK} bytes, writes each to
 * `tee` (not ended here) and yields the same piece: the store's writer takes a piece of a MiB or
 * more as it is, so each byte is copied once (here) instead of twice (here and into the writer's
 * buffers). Pieces are fresh buffers nobody modifies, so the tee and the writer may share them.
 */
async function* teeInto(source: AsyncIterable<unknown>, tee: Writable): AsyncGenerator<Buffer> {
  let gathered: Buffer[] = [];
  let size = 0;
  for await (const raw of source) {
    const chunk = raw as Buffer;
    gathered.push(chunk);
    size += chunk.length;
    if (size >= TEE_CHUNK) {
      const out = gathered.length === 1 ? chunk : Buffer.concat(gathered, size);
      gathered = [];
      size = 0;
      await writeTee(tee, out);
      yield out;
    }
  }
  if (size > 0) {
    const out = gathered.length === 1 ? (gathered[0] as Buffer) : Buffer.concat(gathered, size);
    await writeTee(tee, out);
    yield out;
  }
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
export async function downloadBlob(client: HttpRegistryClient, blobs: BlobStore, repo: RepositoryLocation, d: Descriptor, options: DownloadBlobOptions = {}): Promise<boolean> {
  const have = await blobs.stat(d.digest);
  if (have !== undefined && have.size === d.size) return false;
  const { tee } = options;
  try {
    const body = resumableBlobStream(client, repo, d, options);
    const source = tee === undefined ? body : Readable.from(teeInto(body, tee), { objectMode: false });
    await blobs.put(source, { digest: d.digest, size: d.size }, options.signal === undefined ? {} : { signal: options.signal });
    tee?.end();
  } catch (err) {
    const failure = err instanceof TsbuildError && (err.code === 'STORE_DIGEST_MISMATCH' || err.code === 'STORE_SIZE_MISMATCH')
      ? new TsbuildError('REG_DIGEST_MISMATCH', `blob from ${repo.host}/${repo.path}: ${err.message}`, { cause: err })
      : err instanceof TsbuildError && err.code === 'STORE_IO' && err.cause instanceof TsbuildError ? err.cause : err;
    tee?.destroy(failure instanceof Error ? failure : new Error(String(failure)));
    throw failure;
  }
  return true;
}
