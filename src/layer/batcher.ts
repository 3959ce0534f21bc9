import { measureHeader, writeHeader, type TarHeader } from './tar-header.js';

/** Output buffers are 1 MiB unless one entry needs more. */
const CHUNK = 1024 * 1024;

/**
 * Accumulates tar output into 1 MiB buffers so that small entries cost no stream round trip each.
 * Every buffer is an ordinary (non-pooled) allocation that the garbage collector frees as soon as
 * the consumer lets go of it; full buffers wait in `ready` only until the generator yields them.
 */
export class Batcher {
  buf = Buffer.allocUnsafeSlow(CHUNK);
  used = 0;
  readonly ready: Buffer[] = [];

  /** Makes room for `n` more bytes in the current buffer (a bigger one when `n` exceeds a chunk). */
  reserve(n: number): void {
    if (this.used + n > this.buf.length) this.flush(Math.max(CHUNK, n));
  }

  /** Moves the filled part to `ready` and starts a buffer of `nextSize` bytes. */
  flush(nextSize = CHUNK): void {
    if (this.used > 0) this.ready.push(this.buf.subarray(0, this.used));
    this.buf = Buffer.allocUnsafeSlow(nextSize);
    this.used = 0;
  }

  /** Appends the header of `h` (with its PAX entry when one is needed), encoded in place. */
  header(h: TarHeader): void {
    this.reserve(measureHeader(h));
    this.used += writeHeader(h, this.buf, this.used);
  }

  /** Appends `bytes`. */
  put(bytes: Buffer): void {
    this.reserve(bytes.length);
    bytes.copy(this.buf, this.used);
    this.used += bytes.length;
  }

  /** Appends `n` zero bytes (tar padding). */
  zeros(n: number): void {
    let left = n;
    while (left > 0) {
      if (this.used === this.buf.length) this.flush();
      const k = Math.min(left, this.buf.length - this.used);
      this.buf.fill(0, this.used, this.used + k);
      this.used += k;
      left -= k;
    }
  }
}
