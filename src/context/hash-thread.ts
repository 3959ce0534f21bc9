/**
 * Hashing large files on other cores: a small worker thread (inline plain JavaScript, so it runs
 * the same from sources and from dist) that streams a file through sha256 in 1 MiB reads.
 */
import { Worker } from 'node:worker_threads';

const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync, constants } = require('node:fs');
const { createHash } = require('node:crypto');
const buf = Buffer.allocUnsafe(1 << 20);
parentPort.on('message', (path) => {
  let fd;
  try {
    // SECURITY: never follow a symlink swapped in after the walk.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    const hash = createHash('sha256');
    let bytes = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      bytes += n;
    }
    parentPort.postMessage({ hex: hash.digest('hex'), bytes });
  } catch (e) {
    parentPort.postMessage({ error: { code: e.code, message: e.message } });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
});
`;

/** The result of hashing one file in a thread. */
export interface ThreadHash {
  readonly hex: string;
  readonly bytes: number;
}

/** A worker thread hashing one file at a time; `close()` must be called when done. */
export class HashThread {
  private readonly worker = new Worker(SOURCE, { eval: true });

  /** Streams `absPath` through sha256 in the thread; rejects with an errno-like error when it cannot be read. */
  hash(absPath: string): Promise<ThreadHash> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.worker.once('error', onError);
      this.worker.once('message', (msg: { hex?: string; bytes?: number; error?: { code?: string; message: string } }) => {
        this.worker.off('error', onError);
        if (msg.error !== undefined) reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
        else resolve({ hex: msg.hex as string, bytes: msg.bytes as number });
      });
      this.worker.postMessage(absPath);
    });
  }

  /** Stops the thread. */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
