import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Digest } from '../core/index.js';

/** Bytes of one slot of the shared ring that carries data to the hashing worker. */
const SLOT = 1024 * 1024;

/** Slots in the ring: at most this many MiB are copied ahead of the worker (memory is fixed). */
const SLOTS = 8;

/** Bytes hashed before the hashing moves to a worker thread (small layers never pay for a thread). */
const WORKER_THRESHOLD = 16 * 1024 * 1024;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const ring = new Uint8Array(workerData);
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m === null) parentPort.postMessage(hash.digest('hex'));
  else {
    hash.update(ring.subarray(m[0], m[0] + m[1]));
    parentPort.postMessage(m[1]);
  }
});
`;

/**
 * SHA-256 of a byte stream. Small streams are hashed inline; past 16 MiB (or `workerAfter`; with
 * more than one core) the hashing moves to a worker thread so that it overlaps with the packing thread's reads.
 * Data reaches the worker through a fixed ring of {@link SLOTS} shared 1 MiB slots (one memcpy per
 * chunk, no per-chunk shared allocation; a slot is posted once full), so memory stays constant
 * however long the stream is.
 * Chunks given to {@link update} before the switch are held (at most that much) and must not be
 * modified. Call {@link digest} once at the end, or {@link dispose} on failure.
 */
export class StreamHasher {
  /** Bytes held before the hashing moves to the worker (see the constructor). */
  private readonly threshold: number;
  private inline = createHash('sha256');
  private held: Buffer[] = [];
  private heldBytes = 0;
  private readonly useWorker = availableParallelism() > 1;
  private worker: Worker | undefined;
  private ring: Buffer | undefined;
  private slot = 0;
  /** Bytes copied into the current slot, not yet posted. */
  private fill = 0;
  private inFlight = 0;
  private wake: (() => void) | undefined;
  private onDigest: ((hex: string) => void) | undefined;
  private failure: unknown;

  /**
   * `workerAfter`: bytes held before the worker starts (default 16 MiB). A lower value holds less
   * memory per stream (an unpack holds gunzip's output until then, and a pull unpacks its layers in
   * parallel) at the price of a thread for smaller streams.
   */
  constructor(options: { readonly workerAfter?: number } = {}) {
    this.threshold = options.workerAfter ?? WORKER_THRESHOLD;
  }

  /** True once the hashing runs on the worker thread. */
  get threaded(): boolean {
    return this.worker !== undefined;
  }

  /** Adds a chunk; resolves once it has been hashed or copied into the ring (waits when the worker is behind). */
  async update(chunk: Buffer): Promise<void> {
    if (this.worker === undefined) {
      if (!this.useWorker || this.heldBytes + chunk.length < this.threshold) {
        if (this.useWorker) {
          this.held.push(chunk);
          this.heldBytes += chunk.length;
        } else {
          this.inline.update(chunk);
        }
        return;
      }
      this.startWorker();
      const held = this.held;
      this.held = [];
      this.heldBytes = 0;
      for (const c of held) await this.send(c);
    }
    await this.send(chunk);
  }

  private startWorker(): void {
    const sab = new SharedArrayBuffer(SLOT * SLOTS);
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: sab, execArgv: [], env: {}, stdout: false, stderr: false });
    worker.on('message', (m: number | string) => {
      if (typeof m === 'string') this.onDigest?.(m);
      else this.inFlight--;
      this.release();
    });
    worker.on('error', (err) => {
      this.failure = err;
      this.release();
    });
    this.worker = worker;
    this.ring = Buffer.from(sab);
  }

  /**
   * Copies `chunk` into the ring, filling each slot before it is posted: the worker gets one message
   * (and one wake-up, one answer) per MiB whatever the chunk size, not one per chunk (the pull's
   * gunzip gives 256 KiB chunks).
   */
  private async send(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      if (this.fill === 0) {
        // Starting a slot: it must not be one the worker still reads (posted slots precede it in the ring).
        while (this.inFlight >= SLOTS && this.failure === undefined) {
          await new Promise<void>((resolve) => {
            this.wake = resolve;
          });
        }
      }
      if (this.failure !== undefined) throw this.failure;
      const n = chunk.copy(this.ring as Buffer, this.slot * SLOT + this.fill, at, Math.min(chunk.length, at + SLOT - this.fill));
      at += n;
      this.fill += n;
      if (this.fill === SLOT) this.post();
    }
  }

  /** Hands the slot being filled to the worker and moves on to the next one. */
  private post(): void {
    if (this.fill === 0) return;
    this.worker?.postMessage([this.slot * SLOT, this.fill]);
    this.inFlight++;
    this.slot = (this.slot + 1) % SLOTS;
    this.fill = 0;
  }

  private release(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Returns the digest of everything added. */
  async digest(): Promise<Digest> {
    const worker = this.worker;
    if (worker === undefined) {
      for (const c of this.held) this.inline.update(c);
      this.held = [];
      return `sha256:${this.inline.digest('hex')}` as Digest;
    }
    try {
      if (this.failure !== undefined) throw this.failure;
      this.post();
      const hex = await new Promise<string>((resolve, reject) => {
        this.onDigest = resolve;
        worker.once('error', reject);
        worker.postMessage(null);
      });
      return `sha256:${hex}` as Digest;
    } finally {
      this.dispose();
    }
  }

  /** Stops the worker, if any. */
  dispose(): void {
    this.held = [];
    void this.worker?.terminate();
    this.worker = undefined;
    this.ring = undefined;
  }
}
