import { constants } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** Regular files up to this size may be written by the helper thread (their content is held until written). */
export const SMALL_FILE = 128 * 1024;

/** Small files written inline before a layer is deemed many-small-files and the helper thread starts. */
const INLINE_FILES = 256;

/**
 * Bytes of one batch buffer (file contents packed into one buffer, transferred to the helper thread
 * and back, then reused: fresh buffers per batch kept both threads' garbage collectors busy and
 * the process 55 MB bigger). Holds at least one {@link SMALL_FILE}.
 */
const BATCH_BYTES = 256 * 1024;

/** Files in one batch at most (so the thread starts on a batch early). */
const BATCH_FILES = 64;

/** Batches sent and not yet written: bounds the memory held to about MAX_BATCHES x BATCH_BYTES. */
const MAX_BATCHES = 4;

/** One small file for {@link FileWriter}: created (O_EXCL) at a name known to be free. */
export interface SmallFile {
  /** Real path of a name that does not exist yet, in a directory already resolved inside the root. */
  readonly path: string;
  /** The tar entry name, for error messages. */
  readonly name: string;
  readonly size: number;
  /** Permission bits given to open(); the result after the umask is the final mode unless `chmod` is set. */
  readonly createMode: number;
  /** Mode set with fchmod after the owner (undefined: the create mode is final). */
  readonly chmod?: number;
  /** Owner set with fchown (undefined: keep ours). */
  readonly owner?: { readonly uid: number; readonly gid: number };
  readonly mtime: number;
}

interface BatchFile {
  readonly path: string;
  readonly name: string;
  readonly at: number;
  readonly size: number;
  readonly createMode: number;
  readonly chmod: number | undefined;
  readonly uid: number | undefined;
  readonly gid: number | undefined;
  readonly mtime: number;
}

/** A failure of a write done by the helper thread, with the entry it belongs to. */
export class WriteFailed extends Error {
  constructor(readonly entryName: string, readonly error: Error) {
    super(`writing ${JSON.stringify(entryName)} failed: ${error.message}`);
  }
}

// SECURITY: O_EXCL|O_NOFOLLOW: the name is free, so nothing (no symlink) may be followed or overwritten.
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** The helper thread: writes each batch in order with synchronous calls and answers once per batch. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
parentPort.on('message', (m) => {
  const data = Buffer.from(m.buffer);
  const answer = (failure) => parentPort.postMessage({ buffer: m.buffer, failure }, [m.buffer]);
  for (const f of m.files) {
    try {
      const fd = fs.openSync(f.path, ${CREATE_FLAGS}, f.createMode);
      try {
        let at = 0;
        while (at < f.size) at += fs.writeSync(fd, data, f.at + at, f.size - at);
        if (f.uid !== undefined) fs.fchownSync(fd, f.uid, f.gid);
        if (f.chmod !== undefined) fs.fchmodSync(fd, f.chmod);
        fs.futimesSync(fd, f.mtime, f.mtime);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      answer({ name: f.name, code: err.code, message: err.message });
      return;
    }
  }
  answer(undefined);
});
`;

/**
 * Writes the small files of a many-small-files layer on a helper thread, so that file creation
 * (the dominant, kernel-side cost of such layers) overlaps with inflating and parsing the tar.
 * The first {@link INLINE_FILES} files (and all of them on one core) are left to the caller. Contents
 * are packed into 1 MiB batch buffers that are transferred, not copied. The caller must call
 * {@link drain} before anything that removes, replaces or links to a path (no directory on an
 * in-flight file's path may change under it), and {@link close} when done, also on failure: it
 * waits for the thread, so nothing is written afterwards.
 */
export class FileWriter {
  private readonly threaded = availableParallelism() > 1;
  private inlineLeft = INLINE_FILES;
  private worker: Worker | undefined;
  private batch: BatchFile[] = [];
  private buf: Buffer | undefined;
  /** Batch buffers back from the helper thread, for reuse (at most MAX_BATCHES + 1 ever exist). */
  private readonly spare: ArrayBuffer[] = [];
  private used = 0;
  private inFlight = 0;
  private failure: WriteFailed | undefined;
  private waiters: (() => void)[] = [];

  /**
   * Counts one more small file and tells whether it goes to {@link write} (the helper thread); when
   * not, the caller writes it inline itself (straight from the tar's chunks, no copy).
   */
  takesNext(): boolean {
    if (this.worker !== undefined) return true;
    if (!this.threaded || this.inlineLeft > 0) {
      this.inlineLeft--;
      return false;
    }
    return true;
  }

  /** True when nothing is pending (callers skip awaiting {@link drain} then). */
  get idle(): boolean {
    return this.inFlight === 0 && this.batch.length === 0 && this.failure === undefined;
  }

  /**
   * Queues `f` for the helper thread; `fill` copies its content into the buffer it is given (exactly
   * f.size bytes, at the offset given). Throws an earlier write's failure.
   */
  async write(f: SmallFile, fill: (into: Buffer, at: number) => Promise<void>): Promise<void> {
    this.check();
    if (this.buf === undefined || this.used + f.size > this.buf.length || this.batch.length >= BATCH_FILES) await this.flush();
    const buf = this.buf ?? (this.buf = this.takeBuffer());
    await fill(buf, this.used);
    this.batch.push({
      path: f.path, name: f.name, at: this.used, size: f.size, createMode: f.createMode, chmod: f.chmod,
      uid: f.owner?.uid, gid: f.owner?.gid, mtime: f.mtime,
    });
    this.used += f.size;
  }

  /**
   * Queues `f` with its whole content `data` (f.size bytes, copied) when that needs no waiting;
   * false when the batch is full and {@link MAX_BATCHES} are in flight (then nothing was queued:
   * use {@link write}). Throws an earlier write's failure.
   */
  tryWrite(f: SmallFile, data: Buffer): boolean {
    this.check();
    if (this.buf === undefined || this.used + f.size > this.buf.length || this.batch.length >= BATCH_FILES) {
      if (this.batch.length > 0 && this.inFlight >= MAX_BATCHES) return false;
      this.post();
    }
    const buf = this.buf ?? (this.buf = this.takeBuffer());
    data.copy(buf, this.used, 0, f.size);
    this.batch.push({
      path: f.path, name: f.name, at: this.used, size: f.size, createMode: f.createMode, chmod: f.chmod,
      uid: f.owner?.uid, gid: f.owner?.gid, mtime: f.mtime,
    });
    this.used += f.size;
    return true;
  }

  /** Sends the current batch and waits until every file is written; throws the first failure. */
  async drain(): Promise<void> {
    await this.flush();
    while (this.inFlight > 0) await this.waitOne();
    this.check();
  }

  /** Waits for every batch sent (unsent ones are dropped) and stops the helper thread. */
  async close(): Promise<void> {
    this.batch = [];
    this.buf = undefined;
    while (this.inFlight > 0) await this.waitOne();
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private async flush(): Promise<void> {
    if (this.batch.length > 0) {
      while (this.inFlight >= MAX_BATCHES) await this.waitOne();
      this.check();
    }
    this.post();
  }

  /** Sends the current batch, if any (the caller made sure fewer than MAX_BATCHES are in flight), and starts a new one. */
  private post(): void {
    if (this.batch.length > 0) {
      const buffer = (this.buf as Buffer).buffer as ArrayBuffer;
      const worker = this.worker ?? this.startWorker();
      this.inFlight++;
      worker.postMessage({ buffer, files: this.batch }, [buffer]);
    }
    this.batch = [];
    this.buf = undefined;
    this.used = 0;
  }

  private takeBuffer(): Buffer {
    const spare = this.spare.pop();
    return spare === undefined ? Buffer.allocUnsafeSlow(BATCH_BYTES) : Buffer.from(spare);
  }

  private startWorker(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], env: {}, stdout: false, stderr: false });
    worker.on('message', (m: { buffer: ArrayBuffer; failure?: { name: string; code?: string; message: string } }) => {
      this.spare.push(m.buffer);
      if (m.failure !== undefined) this.failure ??= new WriteFailed(m.failure.name, Object.assign(new Error(m.failure.message), { code: m.failure.code }));
      this.settled();
    });
    worker.on('error', (err) => {
      this.failure ??= new WriteFailed('(helper thread)', err);
      this.inFlight = 1; // no batch will be answered any more
      this.settled();
    });
    this.worker = worker;
    return worker;
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private waitOne(): Promise<void> {
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private settled(): void {
    this.inFlight--;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
