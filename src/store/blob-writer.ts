import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Digest } from '../core/index.js';
import { Sha256Thread } from './hash-thread.js';

/** Bytes of one write buffer: a 340 MB pull takes ~340 writes instead of ~5,300 (one per 64 KiB socket read). */
export const WRITE_BUFFER = 1024 * 1024;

/** Options of {@link writeHashedFile}. */
export interface HashedWriteOptions {
  readonly signal?: AbortSignal;
  /** Called with the byte count consumed so far. */
  readonly onProgress?: (bytes: number) => void;
  /**
   * Hash on a worker thread (for big streams, e.g. a layer tar made by this process: its sha256,
   * ~0.8 ms per MiB, then runs on another core while this thread makes the stream).
   */
  readonly hashOnThread?: boolean;
  /** Called with each chunk of the stream once nothing here reads it any more (its producer may fill it again). */
  readonly release?: (chunk: Buffer) => void;
}

/** Write buffers in use when hashing on a thread (hashing and writing overlap with filling). */
const THREAD_BUFFERS = 4;

/** What {@link writeHashedFile} wrote. */
export interface HashedWrite {
  readonly digest: Digest;
  readonly size: number;
  /** The hash ran on a worker thread (see {@link HashedWriteOptions.hashOnThread}). */
  readonly hashedOnThread?: boolean;
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
 * empty buffer are hashed and written as they are (no copy). With `hashOnThread` a worker thread
 * hashes (four buffers in SharedArrayBuffers, each reused once written and hashed). Rejects with the stream's error (the
 * stream is destroyed) or the file system's; an abort of `signal` destroys the stream with an
 * AbortError. The caller removes `path` on failure.
 */
export async function writeHashedFile(stream: Readable, path: string, options: HashedWriteOptions = {}): Promise<HashedWrite> {
  const { signal, onProgress } = options;
  signal?.throwIfAborted();
  const thread = options.hashOnThread === true ? await Sha256Thread.start() : undefined;
  try {
    const result = await writeWith(stream, path, signal, onProgress, thread, options.release);
    return thread === undefined ? result : { ...result, hashedOnThread: true };
  } finally {
    await thread?.close();
  }
}

async function writeWith(stream: Readable, path: string, signal: AbortSignal | undefined, onProgress: ((bytes: number) => void) | undefined, thread: Sha256Thread | undefined, release: ((chunk: Buffer) => void) | undefined): Promise<HashedWrite> {
  const hash = thread === undefined ? createHash('sha256') : undefined;
  const alloc = (): Buffer => (thread === undefined ? Buffer.allocUnsafeSlow(WRITE_BUFFER) : Sha256Thread.buffer(WRITE_BUFFER));
  const spare: Buffer[] = Array.from({ length: thread === undefined ? 1 : THREAD_BUFFERS - 1 }, alloc);
  let buf: Buffer = alloc();
  let used = 0;
  let size = 0;
  /** The last write in flight (writes run in order, each after the previous one). */
  let pending: Promise<void> = Promise.resolve();
  /** Per emitted buffer, oldest first: settles once it is written and hashed (owned ones are back in `spare` then). */
  const inflight: Promise<void>[] = [];
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
  /** Hashes `data[0, n)` (inline, or starts it on the thread) and queues its write; `owned` buffers are reused afterwards. */
  const emit = (data: Buffer, n: number, owned: boolean): void => {
    const hashed = thread === undefined ? undefined : thread.update(data, n);
    hash?.update(n === data.length ? data : data.subarray(0, n));
    pending = pending.then(() => writeAll(fh, data, n));
    const done = (hashed === undefined ? pending : Promise.all([pending, hashed]).then(() => undefined)).then(() => {
      if (owned) spare.push(data);
      else release?.(data);
    });
    done.catch(() => undefined); // awaited below (a failed write also fails every later one)
    inflight.push(done);
  };
  /** Waits until every emitted buffer is written and hashed. */
  const settle = async (): Promise<void> => {
    for (const p of inflight.splice(0)) await p;
  };
  try {
    try {
      for await (const raw of stream) {
        const chunk = raw as Buffer;
        size += chunk.length;
        onProgress?.(size);
        if (used === 0 && chunk.length >= WRITE_BUFFER && thread === undefined) {
          // Hashed (in emit) while the previous write is still in flight; then one write in flight at most, as with owned buffers.
          const prior = inflight.splice(0);
          emit(chunk, chunk.length, false);
          for (const p of prior) await p;
          continue;
        }
        let at = 0;
        while (at < chunk.length) {
          const k = chunk.copy(buf, used, at);
          used += k;
          at += k;
          if (used === buf.length) {
            emit(buf, used, true);
            while (spare.length === 0) await inflight.shift();
            buf = spare.pop() as Buffer;
            used = 0;
          }
        }
        release?.(chunk);
      }
      if (used > 0) emit(buf, used, true);
      await settle();
    } catch (err) {
      await Promise.all(inflight).catch(() => undefined);
      stream.destroy();
      throw err;
    }
  } finally {
    signal?.removeEventListener('abort', abort);
    await fh.close();
  }
  const hex = thread === undefined ? (hash as ReturnType<typeof createHash>).digest('hex') : await thread.digest();
  return { digest: `sha256:${hex}` as Digest, size };
}
