import { closeSync, openSync, writeSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { TsbuildError } from '../core/index.js';

/** One line of a container log file (docker's json-file driver). */
export interface LogRecord {
  readonly log: string;
  readonly stream: 'stdout' | 'stderr';
  readonly time: string;
}

/** A log file being written: one Writable per stream, each line becomes a JSON record. */
export interface LogWriter {
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** Flushes partial lines and closes the file. */
  close(): Promise<void>;
}

/** Docker's timestamp: RFC 3339 with nanoseconds (the last digits from the monotonic clock). */
function nowText(): string {
  const iso = new Date().toISOString();
  const ns = String(process.hrtime.bigint() % 1_000_000n).padStart(6, '0');
  return `${iso.slice(0, -1)}${ns}Z`;
}

/** The longest record of a line without a newline (characters, as docker's 16 KiB). */
const MAX_RECORD = 16 * 1024;

/**
 * Appends the container's output to `path` as JSON lines `{"log","stream","time"}`. A record ends at
 * each newline (kept in `log`, as docker); a final partial line is written on close. `tee` receives
 * the raw bytes too (the foreground terminal). The file is made by the first record, and opened and appended to synchronously
 * (appends to the page cache; a write stream cost ~0.5 ms of CPU to set up and a thread-pool round
 * trip per open, write and close); a log that cannot be opened or written loses records, never the run.
 */
export function createLogWriter(path: string, tee?: { stdout?: Writable; stderr?: Writable }): LogWriter {
  // The file is made by the first record (readers take a missing log for an empty one): a silent container, as a
  // `run --rm IMAGE true`, makes none (its creation and removal cost ~0.3 ms of such a run).
  let fd: number | undefined;
  let opened = false;
  const append = (text: string): void => {
    if (text === '') return;
    if (!opened) {
      opened = true;
      try {
        fd = openSync(path, 'a', 0o640);
      } catch {
        fd = undefined;
      }
    }
    if (fd === undefined) return;
    try {
      const bytes = Buffer.from(text, 'utf8');
      for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off);
    } catch {
      // a full disk or a removed file: the records are lost, the run goes on
    }
  };
  const makeStream = (stream: 'stdout' | 'stderr'): { w: Writable; flush: () => void } => {
    let pending = '';
    const decoder = new StringDecoder('utf8');
    const out = tee?.[stream];
    const flush = (): void => {
      pending += decoder.end();
      if (pending !== '') append(`${JSON.stringify({ log: pending, stream, time: nowText() })}\n`);
      pending = '';
    };
    const w = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const text = pending + decoder.write(chunk);
        const logs = text.split('\n');
        pending = logs.pop() as string;
        for (let i = 0; i < logs.length; i++) logs[i] += '\n';
        // A line without a newline is cut into records of MAX_RECORD characters (docker's json-file
        // splits at 16 KiB): without it, output without newlines re-splits a growing string per chunk.
        while (pending.length >= MAX_RECORD) {
          logs.push(pending.slice(0, MAX_RECORD));
          pending = pending.slice(MAX_RECORD);
        }
        const time = nowText();
        const records = logs.map((l) => `${JSON.stringify({ log: l, stream, time })}\n`).join('');
        append(records);
        if (out === undefined) cb();
        else if (out.write(chunk)) cb();
        else out.once('drain', () => cb());
      },
      final(cb) {
        flush();
        cb();
      },
    });
    return { w, flush };
  };
  const o = makeStream('stdout');
  const e = makeStream('stderr');
  return {
    stdout: o.w,
    stderr: e.w,
    async close() {
      o.flush();
      e.flush();
      // Nothing is written after this, not even a first record.
      opened = true;
      if (fd === undefined) return;
      const f = fd;
      fd = undefined;
      try {
        closeSync(f);
      } catch {
        // closed already
      }
    },
  };
}

/** Options of {@link readLogs}. */
export interface ReadLogsOptions {
  /** Only the last N records (undefined: all). */
  readonly tail?: number;
  /** Keep reading new records until `isDone()` says the writer has finished. */
  readonly follow?: boolean;
  readonly isDone?: () => Promise<boolean>;
  readonly signal?: AbortSignal;
  /** How long to wait between polls when following (ms, default 100). */
  readonly pollMs?: number;
  /** Only records at or after this time (nanoseconds since the epoch), as docker's --since. */
  readonly sinceNs?: bigint;
  /** Only records at or before this time (nanoseconds since the epoch); following ends once the clock passes it (docker's --until). */
  readonly untilNs?: bigint;
  /** Start reading at this byte offset of the file (default 0): `start -a` shows only the new run's output. */
  readonly startOffset?: number;
  /** The current time in ms (default Date.now), for following with `untilNs`. */
  readonly now?: () => number;
}

/** A record's time (`...T15:04:05.123456789Z`) in nanoseconds since the epoch; undefined when unreadable. */
export function logRecordNs(time: string): bigint | undefined {
  const m = /^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(time);
  if (m === null) return undefined;
  const ms = Date.parse(`${m[1] as string}${m[3] as string}`);
  return Number.isFinite(ms) ? BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').slice(0, 9).padEnd(9, '0')) : undefined;
}

/** Calls `emit` for each record of the log file at `path` (missing file: none). Throws RUN_IO. */
export async function readLogs(path: string, emitAll: (r: LogRecord) => void, options: ReadLogsOptions = {}): Promise<void> {
  const { sinceNs, untilNs } = options;
  // As docker's json-file reader: --tail picks the last records, then --since/--until filter them.
  const emit = sinceNs === undefined && untilNs === undefined ? emitAll : (r: LogRecord): void => {
    const ns = logRecordNs(r.time);
    if (ns === undefined || (sinceNs !== undefined && ns < sinceNs) || (untilNs !== undefined && ns > untilNs)) return;
    emitAll(r);
  };
  const now = options.now ?? Date.now;
  let offset = options.startOffset ?? 0;
  let partial = '';
  const decoder = new StringDecoder('utf8');
  const readNew = async (limit?: number): Promise<void> => {
    const size = await stat(path).then((s) => s.size, () => 0);
    if (size <= offset) return;
    const fh = await open(path, 'r').catch((err: unknown) => {
      throw new TsbuildError('RUN_IO', `cannot read the log ${path}: ${(err as Error).message}`, { cause: err });
    });
    // With a limit, only the last `limit` records are kept while reading (a bounded ring).
    const ring: LogRecord[] = [];
    try {
      const buf = Buffer.alloc(1024 * 1024);
      while (offset < size) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - offset), offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (partial + decoder.write(buf.subarray(0, bytesRead))).split('\n');
        partial = lines.pop() as string;
        for (const l of lines) {
          let r: LogRecord;
          try {
            r = JSON.parse(l) as LogRecord;
          } catch {
            continue; // a torn line after a crash: skipped
          }
          if (limit === undefined) emit(r);
          else {
            ring.push(r);
            if (ring.length > limit) ring.shift();
          }
        }
      }
    } finally {
      await fh.close();
    }
    for (const r of ring) emit(r);
  };
  await readNew(options.tail);
  if (options.follow !== true) return;
  const wait = options.pollMs ?? 100;
  for (;;) {
    if (options.signal?.aborted === true) return;
    const done = (options.isDone === undefined ? false : await options.isDone()) || (untilNs !== undefined && BigInt(now()) * 1_000_000n > untilNs);
    await readNew();
    if (done) return;
    await new Promise((r) => setTimeout(r, wait));
  }
}
