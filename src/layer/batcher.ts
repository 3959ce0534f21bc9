import { measureHeader, writeHeader, type TarHeader } from './tar-header.js';

/** Output buffers are 1 MiB unless one entry needs more. */
const CHUNK = 1024 * 1024;

/** Buffers given back (see {@link Batcher.recycle}) kept for reuse at most. */
const MAX_SPARE = 4;

/**
 * Accumulates tar output into 1 MiB buffers so that small entries cost no stream round trip each.
 * Every buffer is an ordinary (non-pooled) allocation that the garbage collector frees as soon as
 * the consumer lets go of it; full buffers wait in `ready` only until the generator yields them.
 * A consumer that says when it is done with a chunk ({@link Batcher.recycle}) lets its buffer be
 * filled again: a 300 MB layer then takes a few buffers instead of 300 fresh ones (each faulted in
 * anew, and up to V8's external-memory limit of them waiting for a garbage collection).
 */
export class Batcher {
  buf: Buffer = Buffer.allocUnsafeSlow(CHUNK);
  used = 0;
  readonly ready: Buffer[] = [];
  /** Recycled 1 MiB buffers, filled next. */
  private readonly spare: Buffer[] = [];
  /** The 1 MiB buffers handed out in `ready` and not given back yet (only these are taken back, once each; weak: a consumer may never give them back). */
  private readonly out = new WeakSet<ArrayBufferLike>();

  /** Makes room for `n` more bytes in the current buffer (a bigger one when `n` exceeds a chunk). */
  reserve(n: number): void {
    if (this.used + n > this.buf.length) this.flush(Math.max(CHUNK, n));
  }

  /** Moves the filled part to `ready` and starts a buffer of `nextSize` bytes. */
  flush(nextSize = CHUNK): void {
    if (this.used > 0) {
      this.ready.push(this.buf.subarray(0, this.used));
      if (this.buf.length === CHUNK) this.out.add(this.buf.buffer);
    } else if (nextSize === CHUNK && this.buf.length === CHUNK) {
      return; // still empty: keep filling it
    }
    this.buf = nextSize === CHUNK ? (this.spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK)) : Buffer.allocUnsafeSlow(nextSize);
    this.used = 0;
  }

  /**
   * Gives back a chunk taken from `ready` that nothing reads any more: its buffer is filled again
   * by a later flush. Anything else (a copy, a chunk given back twice, a bigger buffer) is ignored.
   */
  recycle(chunk: Uint8Array): void {
    const ab = chunk.buffer;
    if (chunk.byteOffset !== 0 || !this.out.delete(ab)) return;
    if (this.spare.length < MAX_SPARE) this.spare.push(Buffer.from(ab, 0, CHUNK));
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
