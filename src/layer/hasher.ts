import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { Digest } from '../core/index.js';

/** Bytes sent to the worker but not yet hashed before {@link StreamHasher.waitForRoom} waits. */
const MAX_BACKLOG = 32 * 1024 * 1024;

/** Bytes hashed inline before the hashing moves to a worker thread (small layers never pay for a thread). */
const WORKER_THRESHOLD = 16 * 1024 * 1024;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m === null) parentPort.postMessage(hash.digest('hex'));
  else {
    hash.update(m);
    parentPort.postMessage(m.length);
  }
});
`;

/**
 * SHA-256 of a byte stream that runs in a worker thread once the data is large, so that hashing
 * overlaps with the file reads of the packing thread. Chunks given to {@link update} must not be
 * modified afterwards. Call {@link digest} once at the end, or {@link dispose} on failure.
 */
export class StreamHasher {
  private inline: Hash | undefined = createHash('sha256');
  private held: Buffer[] = [];
  private heldBytes = 0;
  private worker: Worker | undefined;
  private backlog = 0;
  private wake: (() => void) | undefined;
  private onDigest: ((hex: string) => void) | undefined;
  private failure: unknown;

  /** Adds a chunk. */
  update(chunk: Buffer): void {
    if (this.worker !== undefined) {
      this.post(chunk);
      return;
    }
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes >= WORKER_THRESHOLD) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], env: {}, stdout: false, stderr: false });
      worker.on('message', (m: number | string) => {
        if (typeof m === 'string') this.onDigest?.(m);
        else this.backlog -= m;
        if (this.backlog < MAX_BACKLOG / 2) this.release();
      });
      worker.on('error', (err) => {
        this.failure = err;
        this.release();
      });
      this.worker = worker;
      this.inline = undefined;
      for (const c of this.held) this.post(c);
      this.held = [];
    }
  }

  private post(chunk: Buffer): void {
    this.backlog += chunk.length;
    this.worker?.postMessage(chunk);
  }

  private release(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Resolves when the worker has caught up enough (bounds memory when hashing is the bottleneck). */
  async waitForRoom(): Promise<void> {
    while (this.backlog >= MAX_BACKLOG && this.failure === undefined && this.worker !== undefined) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** Returns the digest of everything added. */
  async digest(): Promise<Digest> {
    const worker = this.worker;
    if (worker === undefined) {
      const hash = this.inline ?? createHash('sha256');
      for (const c of this.held) hash.update(c);
      this.held = [];
      return `sha256:${hash.digest('hex')}` as Digest;
    }
    try {
      if (this.failure !== undefined) throw this.failure;
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
  }
}
