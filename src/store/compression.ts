import { createGunzip } from 'node:zlib';
import { PassThrough, type Readable } from 'node:stream';
import { TsbuildError } from '../core/index.js';

/** The compression of a byte stream, from its magic number. */
export type Compression = 'gzip' | 'zstd' | 'none';

/** Detects the compression from the first bytes of a file or stream. */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

/** Resolves to the first `n` bytes of `stream` without consuming them (they are unshifted back). */
export async function peekStream(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let have = 0;
  while (have < n) {
    const chunk = stream.read() as Buffer | null;
    if (chunk !== null) {
      chunks.push(chunk);
      have += chunk.length;
      continue;
    }
    if (stream.readableEnded) break;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        stream.off('readable', done);
        stream.off('end', done);
        stream.off('error', fail);
        resolve();
      };
      const fail = (err: Error): void => {
        stream.off('readable', done);
        stream.off('end', done);
        reject(err);
      };
      stream.once('readable', done);
      stream.once('end', done);
      stream.once('error', fail);
    });
    if (stream.readableEnded && stream.readableLength === 0) break;
  }
  const all = Buffer.concat(chunks);
  if (all.length > 0) stream.unshift(all);
  return all.subarray(0, n);
}

/**
 * Returns a stream of the decompressed content of `input` (gzip via zlib; uncompressed passes
 * through). Throws `STORE_UNSUPPORTED_COMPRESSION` for zstd (not needed for archives).
 */
export async function decompressed(input: Readable, what: string): Promise<Readable> {
  const head = await peekStream(input, 4);
  const kind = detectCompression(head);
  if (kind === 'none') return input;
  if (kind === 'zstd') {
    throw new TsbuildError('STORE_UNSUPPORTED_COMPRESSION', `${what} is zstd-compressed; decompress it first (zstd -d)`);
  }
  const gunzip = createGunzip();
  const out = new PassThrough();
  input.on('error', (err) => out.destroy(err));
  gunzip.on('error', (err) => out.destroy(new TsbuildError('STORE_BAD_ARCHIVE', `${what}: bad gzip data: ${err.message}`, { cause: err })));
  input.pipe(gunzip).pipe(out);
  return out;
}
