/**
 * Hashing files on other cores: a small worker thread (inline plain JavaScript, so it runs the
 * same from sources and from dist) that streams files through sha256 in 1 MiB reads, a batch of
 * paths per message (one round trip for hundreds of small files).
 */
import { Worker } from 'node:worker_threads';

const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync, constants } = require('node:fs');
const { createHash } = require('node:crypto');
const buf = Buffer.allocUnsafe(1 << 20);
function hashOne(path, small) {
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
      // A short read of a small regular file is its end (saves a read per file).
      if (small && n < buf.length) break;
    }
    return { hex: hash.digest('hex'), bytes };
  } catch (e) {
    return { error: { code: e.code, message: e.message } };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
parentPort.on('message', (msg) => {
  parentPort.postMessage(msg.paths.map((p) => hashOne(p, msg.small)));
});
`;

/** The result of hashing one file in a thread. */
export interface ThreadHash {
  readonly hex: string;
  readonly bytes: number;
}

/** One file's outcome in a batch: its hash, or an errno-like error when it could not be read. */
export type ThreadResult = ThreadHash | { readonly error: Error & { code?: string } };

/** A worker thread hashing one batch of files at a time; `close()` must be called when done. */
export class HashThread {
  private readonly worker = new Worker(SOURCE, { eval: true });

  /**
   * Hashes `paths` in turn in the thread; one result per path, in order. `small`: the files are
   * at most 1 MiB, a short read ends one. Rejects only when the thread itself fails.
   */
  hashMany(paths: readonly string[], small: boolean): Promise<ThreadResult[]> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.worker.once('error', onError);
      this.worker.once('message', (msg: ({ hex: string; bytes: number } | { error: { code?: string; message: string } })[]) => {
        this.worker.off('error', onError);
        resolve(msg.map((m) => ('error' in m ? { error: Object.assign(new Error(m.error.message), m.error.code === undefined ? {} : { code: m.error.code }) } : m)));
      });
      this.worker.postMessage({ paths, small });
    });
  }

  /** Stops the thread. */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
