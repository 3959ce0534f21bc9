import { createReadStream, readFileSync, statSync } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { digestHex, isDigest, sha256Of, TsbuildError, type Digest } from '../core/index.js';
import { writeHashedFile } from './blob-writer.js';
import { randomHex } from '../sys/index.js';

/** What a caller knows about a blob before writing it; checked at EOF. */
export interface ExpectedBlob {
  readonly digest?: Digest;
  readonly size?: number;
}

/** A stored blob's identity. */
export interface BlobInfo {
  readonly digest: Digest;
  readonly size: number;
}

/** Options of {@link BlobStore.put}. */
export interface PutOptions {
  readonly signal?: AbortSignal;
  /** Called with the byte count written so far (progress). */
  readonly onProgress?: (bytes: number) => void;
  /** Hash on a worker thread (big streams this process makes; see HashedWriteOptions). */
  readonly hashOnThread?: boolean;
  /** Called with each chunk of the stream once it is no longer read (see HashedWriteOptions). */
  readonly release?: (chunk: Buffer) => void;
}

/** Largest JSON document {@link BlobStore.readJson} buffers. */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** Content-addressed blob storage. */
export interface BlobStore {
  /**
   * Consumes `stream` into the store: hashes while writing into tmp/, checks `expected` digest
   * and size at EOF, renames into place. Atomic (nothing partial is ever visible), idempotent,
   * safe with concurrent writers of the same blob. Destroys `stream` on failure.
   * Throws `STORE_DIGEST_MISMATCH`, `STORE_SIZE_MISMATCH`, `STORE_IO`.
   */
  put(stream: Readable, expected?: ExpectedBlob, options?: PutOptions): Promise<BlobInfo>;
  /** Stores a small in-memory document (JSON); same guarantees as {@link put}. */
  putBytes(data: string | Uint8Array, expected?: ExpectedBlob): Promise<BlobInfo>;
  /** Opens a blob for reading; the caller consumes or destroys the stream. Throws `STORE_BLOB_NOT_FOUND`. */
  open(digest: Digest): Promise<Readable>;
  /** Reads and parses a JSON blob (at most {@link MAX_JSON_BYTES}). Throws `STORE_BLOB_NOT_FOUND`, `STORE_BAD_JSON`. */
  readJson<T = unknown>(digest: Digest): Promise<{ value: T; bytes: Buffer }>;
  /** True when the blob is stored. */
  has(digest: Digest): Promise<boolean>;
  /** The stored size, or undefined when absent. */
  stat(digest: Digest): Promise<BlobInfo | undefined>;
  /** Removes a blob; true when it existed. */
  delete(digest: Digest): Promise<boolean>;
  /** Every stored digest (files with a non-digest name are skipped). */
  list(): AsyncIterable<Digest>;
  /** The file a blob lives in (for tools that read the layout directly). */
  pathOf(digest: Digest): string;
}

function ioError(what: string, err: unknown): TsbuildError {
  return err instanceof TsbuildError ? err : new TsbuildError('STORE_IO', `${what}: ${(err as Error).message}`, { cause: err });
}

/** Blobs as files `blobs/sha256/<hex>` of an OCI layout, staged in a tmp directory on the same file system. */
export class DirBlobStore implements BlobStore {
  private readonly dir: string;

  /** `root` is the OCI layout directory, `tmpDir` a directory on the same file system (must exist). */
  constructor(readonly root: string, private readonly tmpDir: string) {
    this.dir = join(root, 'blobs', 'sha256');
  }

  pathOf(digest: Digest): string {
    return join(this.dir, digestHex(digest));
  }

  async put(stream: Readable, expected: ExpectedBlob = {}, options: PutOptions = {}): Promise<BlobInfo> {
    if (expected.digest !== undefined) {
      // The stream may fail while the stat is pending, before anything listens to it: catch that
      // here (an 'error' without a listener would end the process) and reject instead.
      let early: unknown;
      const onEarly = (err: unknown): void => { early ??= err; };
      stream.on('error', onEarly);
      const have = await this.stat(expected.digest).finally(() => stream.off('error', onEarly));
      if (early !== undefined) {
        stream.destroy();
        throw ioError(`cannot store a blob in ${this.dir}`, early);
      }
      if (have !== undefined && (expected.size === undefined || expected.size === have.size)) {
        // Drain rather than destroy: the stream may be an entry of a tar being read sequentially.
        await drain(stream);
        // Refresh the mtime: a garbage collection running under a lease keeps blobs newer than the lease.
        const now = new Date();
        await utimes(this.pathOf(expected.digest), now, now).catch(() => undefined);
        return have;
      }
    }
    const tmp = join(this.tmpDir, `blob-${process.pid}-${randomHex(8)}`);
    try {
      const { digest, size } = await writeHashedFile(stream, tmp, options);
      if (expected.digest !== undefined && digest !== expected.digest) {
        throw new TsbuildError('STORE_DIGEST_MISMATCH', `content digest mismatch: expected ${expected.digest}, got ${digest}`);
      }
      if (expected.size !== undefined && size !== expected.size) {
        throw new TsbuildError('STORE_SIZE_MISMATCH', `content size mismatch for ${digest}: expected ${expected.size} bytes, got ${size}`);
      }
      await mkdir(this.dir, { recursive: true });
      // rename() replaces atomically: a concurrent writer of the same digest wrote the same bytes.
      await rename(tmp, this.pathOf(digest));
      return { digest, size };
    } catch (err) {
      stream.destroy();
      await unlink(tmp).catch(() => undefined);
      if (options.signal?.aborted === true) throw new TsbuildError('STORE_ABORTED', 'writing a blob was interrupted', { cause: err });
      throw ioError(`cannot store a blob in ${this.dir}`, err);
    }
  }

  async putBytes(data: string | Uint8Array, expected: ExpectedBlob = {}): Promise<BlobInfo> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    const digest = sha256Of(bytes);
    return this.put(Readable.from([bytes]), { digest, size: bytes.length, ...expected });
  }

  async open(digest: Digest): Promise<Readable> {
    const path = this.pathOf(digest);
    return new Promise((resolve, reject) => {
      // 1 MiB reads: fewer, larger chunks for the hash, gunzip and tar parsers downstream.
      const s = createReadStream(path, { highWaterMark: 1 << 20 });
      s.once('open', () => resolve(s));
      s.once('error', (err) => reject(notFoundOr(digest, path, err)));
    });
  }

  async readJson<T = unknown>(digest: Digest): Promise<{ value: T; bytes: Buffer }> {
    const path = this.pathOf(digest);
    // Synchronous: a JSON document is small (at most MAX_JSON_BYTES), and its stat, open, read and close
    // as thread-pool round trips cost more than the reads themselves (the image lookup of every `run`).
    let bytes: Buffer;
    try {
      const st = statSync(path);
      if (!st.isFile()) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      if (st.size > MAX_JSON_BYTES) throw new TsbuildError('STORE_BAD_JSON', `blob ${digest} is ${st.size} bytes, too large for a JSON document`);
      bytes = readFileSync(path);
    } catch (err) {
      if (err instanceof TsbuildError) throw err;
      throw notFoundOr(digest, path, err);
    }
    try {
      return { value: JSON.parse(bytes.toString('utf8')) as T, bytes };
    } catch (err) {
      throw new TsbuildError('STORE_BAD_JSON', `blob ${digest} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.stat(digest)) !== undefined;
  }

  async stat(digest: Digest): Promise<BlobInfo | undefined> {
    try {
      const st = await stat(this.pathOf(digest));
      return st.isFile() ? { digest, size: st.size } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw ioError(`cannot stat blob ${digest}`, err);
    }
  }

  async delete(digest: Digest): Promise<boolean> {
    try {
      await unlink(this.pathOf(digest));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw ioError(`cannot delete blob ${digest}`, err);
    }
  }

  async *list(): AsyncIterable<Digest> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw ioError(`cannot list ${this.dir}`, err);
    }
    for (const name of names.sort()) {
      const d = `sha256:${name}`;
      if (isDigest(d)) yield d;
    }
  }
}

function notFoundOr(digest: Digest, path: string, err: unknown): TsbuildError {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
    return new TsbuildError('STORE_BLOB_NOT_FOUND', `blob ${digest} is not in the store (${path})`, { cause: err });
  }
  return ioError(`cannot read blob ${path}`, err);
}

/** Reads a stream to its end, discarding the data. */
async function drain(stream: Readable): Promise<void> {
  for await (const _chunk of stream) {
    // discard
  }
}
