/**
 * Reading the small files of a streamed COPY layer ahead, on a worker thread: the thread opens,
 * reads and closes each file (three system calls the thread that writes the tar no longer makes)
 * into batch buffers of {@link BATCH_BYTES} that go back and forth between the threads (a few
 * MiB in all, whatever the number of files), in the order the layer tar takes them. A file that
 * is not what the walk saw (it grew past its size) is left to the consumer, which reads it itself.
 */
import { Worker } from 'node:worker_threads';

/** Files in one batch at most. */
const BATCH_FILES = 512;
/** Bytes of a batch buffer: a batch holds files whose sizes (plus one byte each) add up to at most this. */
const BATCH_BYTES = 1024 * 1024;
/** Batch buffers: one being consumed, the others being filled (they go back and forth, never reallocated). */
const BUFFERS = 3;

/** The thread allocates next to nothing on its heap: a small one keeps its memory small. */
const THREAD_LIMITS = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 };

// Inline plain JavaScript so that it runs the same from sources and from the bundle.
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync, constants } = require('node:fs');
// SECURITY: never follow a symlink swapped in for a source file, never block on a fifo.
const FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
parentPort.on('message', ({ id, paths, sizes, data }) => {
  const buf = Buffer.from(data);
  const lens = new Int32Array(paths.length);
  const errors = [];
  let at = 0;
  for (let i = 0; i < paths.length; i++) {
    let fd;
    try {
      fd = openSync(paths[i], FLAGS);
      // One byte more than the walk saw: reading it means the file grew (the consumer reads it then).
      const want = sizes[i] + 1;
      let n = 0;
      for (;;) {
        const k = readSync(fd, buf, at + n, want - n, null);
        n += k;
        if (k === 0 || n === want) break;
      }
      lens[i] = n === want ? -1 : n;
      if (n !== want) at += n;
    } catch (e) {
      lens[i] = -2;
      errors.push({ index: i, code: e.code, message: e.message });
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  parentPort.postMessage({ id, data, lens, errors }, [data, lens.buffer]);
});
`;

/** What the reader says about one file, in order. */
export type Prefetched =
  | { readonly kind: 'data'; readonly data: Buffer }
  | { readonly kind: 'changed' }
  | { readonly kind: 'error'; readonly error: Error & { code?: string } };

interface Batch {
  readonly paths: string[];
  readonly sizes: number[];
}

interface BatchResult {
  /** The batch buffer, filled from its start with the bytes of the files read. */
  readonly data: ArrayBuffer;
  readonly lens: Int32Array;
  readonly errors: readonly { readonly index: number; readonly code?: string; readonly message: string }[];
}

const EMPTY_BATCH: Batch = { paths: [], sizes: [] };

/** Reads `files` (`source` paths and the sizes the walk saw, each small) ahead on a worker thread; call `close()` when done. */
export class SmallFileReader {
  /** The batches in order (each replaced by an empty one once sent). */
  private readonly batches: Batch[] = [];
  private readonly pending = new Map<number, { resolve: (r: BatchResult) => void; reject: (e: Error) => void }>();
  private readonly results = new Map<number, Promise<BatchResult>>();
  private readonly free: ArrayBuffer[] = [];
  private readonly worker: Worker;
  private failure: Error | undefined;
  /** The batch being consumed and the position in it. */
  private current: { result: BatchResult; index: number; offset: number; errors: Map<number, Error & { code?: string }> } | undefined;
  private nextBatch = 0;
  private requested = 0;

  constructor(files: readonly { readonly source: string; readonly size: number }[]) {
    let batch: Batch = { paths: [], sizes: [] };
    let bytes = 0;
    for (const f of files) {
      if (f.size + 1 > BATCH_BYTES) throw new Error(`${f.source} is too big to be read ahead`);
      if (batch.paths.length === BATCH_FILES || bytes + f.size + 1 > BATCH_BYTES) {
        this.batches.push(batch);
        batch = { paths: [], sizes: [] };
        bytes = 0;
      }
      batch.paths.push(f.source);
      batch.sizes.push(f.size);
      bytes += f.size + 1;
    }
    if (batch.paths.length > 0) this.batches.push(batch);
    for (let i = 0; i < Math.min(BUFFERS, this.batches.length); i++) this.free.push(new ArrayBuffer(BATCH_BYTES));
    this.worker = new Worker(SOURCE, { eval: true, resourceLimits: THREAD_LIMITS });
    this.worker.unref();
    this.worker.on('message', (msg: BatchResult & { id: number }) => {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      p?.resolve(msg);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', () => this.fail(new Error('the file reader thread stopped')));
    this.fill();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }

  /** Requests the next batches while a buffer is free. */
  private fill(): void {
    while (this.requested < this.batches.length && this.free.length > 0 && this.failure === undefined) {
      const id = this.requested++;
      const b = this.batches[id] as Batch;
      this.batches[id] = EMPTY_BATCH; // the thread has its own copy
      const data = this.free.pop() as ArrayBuffer;
      const p = new Promise<BatchResult>((resolve, reject) => this.pending.set(id, { resolve, reject }));
      p.catch(() => undefined); // awaited in turn by load()
      this.results.set(id, p);
      this.worker.postMessage({ id, paths: b.paths, sizes: b.sizes, data }, [data]);
    }
  }

  /** The next file's outcome, synchronously when its batch is here (else undefined: await {@link load}). */
  take(): Prefetched | undefined {
    const c = this.current;
    if (c === undefined || c.index === c.result.lens.length) return undefined;
    const i = c.index++;
    const n = c.result.lens[i] as number;
    if (n === -1) return { kind: 'changed' };
    if (n === -2) return { kind: 'error', error: c.errors.get(i) ?? new Error('unreadable') };
    // A view into the batch buffer: valid until the next load() (the caller copies it at once).
    const data = Buffer.from(c.result.data, c.offset, n);
    c.offset += n;
    return { kind: 'data', data };
  }

  /** Waits for the next batch; the current one (and every view {@link take} gave of it) is given back. */
  async load(): Promise<void> {
    if (this.current !== undefined) {
      this.free.push(this.current.result.data);
      this.current = undefined;
    }
    this.fill();
    const p = this.results.get(this.nextBatch);
    if (p === undefined) throw this.failure ?? new Error('no more files to read ahead');
    this.results.delete(this.nextBatch++);
    const result = await p;
    this.current = { result, index: 0, offset: 0, errors: new Map(result.errors.map((e) => [e.index, Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code })])) };
  }

  /** Stops the thread. */
  async close(): Promise<void> {
    this.failure ??= new Error('closed');
    await this.worker.terminate();
  }
}
