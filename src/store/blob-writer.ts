import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Digest } from '../core/index.js';

/** Bytes of one write buffer: a 340 MB pull takes ~340 writes instead of ~5,300 (one per 64 KiB socket read). */
export const WRITE_BUFFER = 1024 * 1024;

/** Options of {@link writeHashedFile}. */
export interface HashedWriteOptions {
  readonly signal?: AbortSignal;
  /** Called with the byte count consumed so far. */
  readonly onProgress?: (bytes: number) => void;
}

/** What {@link writeHashedFile} wrote. */
export interface HashedWrite {
  readonly digest: Digest;
  readonly size: number;
}

/** Writes all of `buf[0, n)` at the file's current position (a regular file may take a short write). */
async function writeAll(fh: FileHandle, buf: Buffer, n: number): Promise<void> {
  let at = 0;
  while (at < n) at += (await fh.write(buf, at, n - at, null)).bytesWritten;
}

/**
 * Consumes `stream` into a new file at `path` (created O_EXCL, mode 0644) and returns the sha256
 * and size of its bytes. Chunks are gathered into two reused {@link WRITE_BUFFER} buffers: one
 * fills while the other is being written, so the file takes one write (and one thread-pool round
 * trip) per MiB however small the chunks are, and memory stays at two buffers whatever the size.
 * Each buffer is hashed once, just before it is written. Chunks of a MiB or more arriving on an
 * empty buffer are hashed and written as they are (no copy). Rejects with the stream's error (the
 * stream is destroyed) or the file system's; an abort of `signal` destroys the stream with an
 * AbortError. The caller removes `path` on failure.
 */
export async function writeHashedFile(stream: Readable, path: string, options: HashedWriteOptions = {}): Promise<HashedWrite> {
  const { signal, onProgress } = options;
  signal?.throwIfAborted();
  const hash = createHash('sha256');
  const spare: Buffer[] = [Buffer.allocUnsafeSlow(WRITE_BUFFER)];
  let buf: Buffer = Buffer.allocUnsafeSlow(WRITE_BUFFER);
  let used = 0;
  let size = 0;
  /** The write in flight, and the buffer it owns (returned to `spare` once written). */
  let pending: Promise<void> = Promise.resolve();
  // The stream may fail while the file is being opened (a compressor that dies at once): keep
  // that from being an unhandled 'error' event; the loop below still throws it (stream.errored).
  const swallow = (): void => undefined;
  stream.on('error', swallow);
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx', 0o644);
  } finally {
    stream.off('error', swallow);
  }
  if (stream.errored !== null && stream.errored !== undefined) {
    await fh.close();
    throw stream.errored;
  }
  const abort = (): void => {
    stream.destroy(signal?.reason instanceof Error ? signal.reason : Object.assign(new Error('The operation was aborted'), { name: 'AbortError' }));
  };
  signal?.addEventListener('abort', abort, { once: true });
  /** Hashes `data[0, n)` and starts writing it after the write in flight; `owned` buffers are reused afterwards. */
  const emit = async (data: Buffer, n: number, owned: boolean): Promise<void> => {
    hash.update(n === data.length ? data : data.subarray(0, n));
    await pending;
    pending = writeAll(fh, data, n).then(() => {
      if (owned) spare.push(data);
    });
    pending.catch(() => undefined); // awaited below or when the next buffer is emitted
  };
  try {
    try {
      for await (const raw of stream) {
        const chunk = raw as Buffer;
        size += chunk.length;
        onProgress?.(size);
        if (used === 0 && chunk.length >= WRITE_BUFFER) {
          await emit(chunk, chunk.length, false);
          continue;
        }
        let at = 0;
        while (at < chunk.length) {
          const k = chunk.copy(buf, used, at);
          used += k;
          at += k;
          if (used === buf.length) {
            await emit(buf, used, true);
            await (spare.length > 0 ? Promise.resolve() : pending);
            buf = spare.pop() as Buffer;
            used = 0;
          }
        }
      }
      if (used > 0) await emit(buf, used, true);
      await pending;
    } catch (err) {
      await pending.catch(() => undefined);
      stream.destroy();
      throw err;
    }
  } finally {
    signal?.removeEventListener('abort', abort);
    await fh.close();
  }
  return { digest: `sha256:${hash.digest('hex')}` as Digest, size };
}
