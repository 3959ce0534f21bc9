/**
 * sha256 on another core: a small worker thread (inline plain JavaScript, so it runs the same from
 * sources and from dist) hashing buffers that live in SharedArrayBuffers, in the order they are
 * sent (no copy: the thread reads the bytes while the main thread's file write reads them too).
 * Used by writeHashedFile for big streams (a built layer of hundreds of MB: ~0.8 ms of sha256 per
 * MiB taken off the thread that makes the tar).
 */
import type { Worker } from 'node:worker_threads';

const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m.sab !== undefined) {
    hash.update(new Uint8Array(m.sab, 0, m.n));
    parentPort.postMessage({ id: m.id });
  } else {
    parentPort.postMessage({ id: m.id, hex: hash.digest('hex') });
  }
});
`;

interface Waiter {
  readonly resolve: (hex: string | undefined) => void;
  readonly reject: (err: Error) => void;
}

/** One running sha256 in a worker thread; `close()` must be called when done (also on failure). */
export class Sha256Thread {
  private readonly waiters = new Map<number, Waiter>();
  private nextId = 0;
  private failure: Error | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: { id: number; hex?: string }) => {
      const w = this.waiters.get(m.id);
      this.waiters.delete(m.id);
      w?.resolve(m.hex);
    });
    const fail = (err: Error): void => {
      this.failure ??= err;
      for (const w of this.waiters.values()) w.reject(this.failure);
      this.waiters.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the hash thread exited (${code})`)));
  }

  /** Starts the thread (node:worker_threads loads only here). */
  static async start(): Promise<Sha256Thread> {
    const { Worker: W } = await import('node:worker_threads');
    return new Sha256Thread(new W(SOURCE, { eval: true, execArgv: [], env: {}, stdout: false, stderr: false }));
  }

  /** A buffer the thread can read: `size` bytes in a SharedArrayBuffer. */
  static buffer(size: number): Buffer {
    return Buffer.from(new SharedArrayBuffer(size));
  }

  private send(msg: { sab?: SharedArrayBuffer; n?: number }): Promise<string | undefined> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...msg });
    });
  }

  /**
   * Adds `data[0, n)` (a buffer from {@link Sha256Thread.buffer}, whole) to the hash; resolves once
   * the thread has read it (the buffer may then be reused). Updates are hashed in call order.
   */
  update(data: Buffer, n: number): Promise<void> {
    if (!(data.buffer instanceof SharedArrayBuffer) || data.byteOffset !== 0) throw new TypeError('Sha256Thread.update needs a whole Sha256Thread.buffer()');
    return this.send({ sab: data.buffer, n }).then(() => undefined);
  }

  /** The hex sha256 of everything updated so far (after all of it was hashed). */
  async digest(): Promise<string> {
    return (await this.send({})) as string;
  }

  /** Stops the thread. */
  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
