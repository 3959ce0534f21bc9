import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, createReadStream, openSync, readSync, ReadStream } from 'node:fs';
import { delimiter, join } from 'node:path';
import { Readable, type TransformOptions } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createRequire } from 'node:module';
import type * as Zlib from 'node:zlib';
import type { ZlibOptions } from 'node:zlib';
import { TsbuildError } from '../core/index.js';

// node:zlib (~1-2 ms to load) on the first gzip stream, not at start: `run` of an unpacked image opens
// this module (findCompressionTools) but never inflates.
const requireFromHere = createRequire(import.meta.url);
const zlib = (): typeof Zlib => requireFromHere('node:zlib') as typeof Zlib;

/** Compression of a layer blob, as detected from its first bytes. */
export type Compression = 'gzip' | 'zstd' | 'none';

/** External (de)compressors found on the PATH; absent ones fall back to zlib or a clear error. */
export interface CompressionTools {
  readonly pigz?: string;
  readonly zstd?: string;
}

/** Options of {@link compressGzip}. */
export interface CompressOptions {
  readonly tools?: CompressionTools;
  /** gzip level 1-9; default 6. */
  readonly level?: number;
  /** pigz threads; default: pigz's own default (one per core). */
  readonly threads?: number;
}

/** Options of {@link decompress}. */
export interface DecompressOptions {
  readonly tools?: CompressionTools;
}

/** Finds `pigz` and `zstd` in the directories of `pathEnv` (a PATH value; the CLI passes process.env.PATH). */
export function findCompressionTools(pathEnv: string | undefined): CompressionTools {
  const find = (name: string): string | undefined => {
    for (const dir of (pathEnv ?? '').split(delimiter)) {
      if (dir === '') continue;
      const candidate = join(dir, name);
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not in this directory
      }
    }
    return undefined;
  };
  const pigz = find('pigz');
  const zstd = find('zstd');
  return { ...(pigz === undefined ? {} : { pigz }), ...(zstd === undefined ? {} : { zstd }) };
}

/** Detects gzip (1f 8b) and zstd (28 b5 2f fd) magic numbers; anything else is `none`. */
export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

async function* prependChunks(head: Buffer[], rest: AsyncIterator<unknown>): AsyncGenerator<Buffer> {
  yield* head;
  for (;;) {
    const r = await rest.next();
    if (r.done === true) return;
    yield r.value as Buffer;
  }
}

/**
 * Bytes of a filter's output read ahead of the consumer. A pipe holds only 64 KiB: without this the
 * tool stalls whenever the consumer is busy (e.g. writing files), and the two never run in parallel.
 */
const READ_AHEAD = 8 * 1024 * 1024;

/** Output chunk of zlib's inflate: large enough that per-chunk overhead vanishes, small enough to stay in cache. */
const INFLATE_CHUNK = 256 * 1024;

/**
 * Yields the chunks of `stream` as they arrive, reading up to `limit` bytes ahead of the consumer
 * (the stream is paused above it). Unlike a large highWaterMark, chunks are never concatenated.
 */
async function* readAhead(stream: Readable, limit: number): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let head = 0;
  let queued = 0;
  let ended = false;
  let failure: Error | undefined;
  let sinceTurn = 0;
  let wake: (() => void) | undefined;
  const signal = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer): void => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= limit) stream.pause();
    signal();
  };
  const onEnd = (): void => {
    ended = true;
    signal();
  };
  const onError = (err: Error): void => {
    failure = err;
    signal();
  };
  stream.on('data', onData);
  stream.once('end', onEnd);
  stream.once('close', onEnd);
  stream.once('error', onError);
  try {
    for (;;) {
      if (head < queue.length) {
        const chunk = queue[head] as Buffer;
        queue[head++] = EMPTY_BUFFER;
        if (head > 1024) {
          queue.splice(0, head);
          head = 0;
        }
        queued -= chunk.length;
        if (queued < limit / 2 && stream.isPaused()) stream.resume();
        yield chunk;
        // The pipe is only read while the event loop polls; a consumer that resumes us from
        // microtasks alone would never let it, so pass through the loop every so often.
        sinceTurn += chunk.length;
        if (sinceTurn >= TURN_EVERY && !ended) {
          sinceTurn = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('close', onEnd);
    stream.off('error', onError);
  }
}

const EMPTY_BUFFER = Buffer.alloc(0);

/** Bytes yielded by {@link readAhead} between two passes through the event loop. */
const TURN_EVERY = 128 * 1024;

/**
 * Runs `argv` as a filter: `input` goes to its stdin, its stdout is yielded. A non-zero exit fails
 * with `code` and the tool's stderr; when the consumer stops early the child is killed.
 */
async function* runFilter(argv: readonly string[], input: AsyncIterable<Buffer> | number, code: `LAYER_${string}`): AsyncGenerator<Buffer> {
  const [cmd, ...args] = argv as [string, ...string[]];
  // A file descriptor input is handed to the child directly: the data never passes through Node.
  const child: ChildProcess = spawn(cmd, args, { stdio: [typeof input === 'number' ? input : 'pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (cause) => reject(new TsbuildError(code, `cannot run ${cmd}: ${cause.message}`, { cause })));
    child.once('close', (status) => resolve(status));
  });
  exited.catch(() => undefined);
  const feeding = typeof input === 'number' ? Promise.resolve() : pipeline(Readable.from(input, { objectMode: false }), child.stdin as NodeJS.WritableStream);
  feeding.catch(() => undefined);
  let finished = false;
  try {
    yield* readAhead(child.stdout as Readable, READ_AHEAD);
    const status = await exited;
    try {
      await feeding;
    } catch (cause) {
      if (status === 0) throw cause;
    }
    if (status !== 0) throw new TsbuildError(code, `${cmd} ${args.join(' ')} failed (exit ${status}): ${stderr.trim() || 'no message'}`);
    finished = true;
  } finally {
    if (!finished && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/**
 * Returns `input` gzip-compressed, through pigz (parallel, `-n`: no name or time stored) when
 * `options.tools.pigz` is set, else zlib. The returned stream owns `input` (destroying it kills
 * pigz and destroys `input`); failures surface as errors on it (`LAYER_COMPRESS_FAILED`).
 */
export function compressGzip(input: Readable, options: CompressOptions = {}): Readable {
  const level = options.level ?? 6;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new TsbuildError('LAYER_COMPRESS_FAILED', `gzip level ${level} is not 1-9`);
  const pigz = options.tools?.pigz;
  const out = pigz !== undefined
    ? Readable.from(runFilter([pigz, '-c', '-n', `-${level}`, ...(options.threads === undefined ? [] : ['-p', String(options.threads)])], input, 'LAYER_COMPRESS_FAILED'), { objectMode: false })
    : wrapCompressErrors(input.pipe(zlib().createGzip({ level })), input, 'LAYER_COMPRESS_FAILED');
  out.once('close', () => input.destroy());
  return out;
}

function wrapCompressErrors(stream: Readable, input: Readable, code: `LAYER_${string}`): Readable {
  input.once('error', (err) => stream.destroy(err));
  return Readable.from(
    (async function* () {
      try {
        for await (const chunk of stream) yield chunk as Buffer;
      } catch (cause) {
        if (cause instanceof TsbuildError) throw cause;
        throw new TsbuildError(code, (cause as Error).message, { cause });
      } finally {
        stream.destroy();
      }
    })(),
    { objectMode: false },
  );
}

/**
 * Returns `input` decompressed, detecting gzip, zstd or an uncompressed stream by its magic bytes.
 * gzip is inflated by zlib on the libuv thread pool (cheaper than `pigz -d` through a pipe); zstd needs the `zstd` binary (`options.tools.zstd`), else it fails with
 * LAYER_ZSTD_UNAVAILABLE. Corrupt input fails with LAYER_DECOMPRESS_FAILED. The returned stream
 * owns `input`; destroying it stops any child process.
 */
export function decompress(input: Readable, options: DecompressOptions = {}): Readable {
  const path = untouchedFilePath(input);
  if (path !== undefined && options.tools?.zstd !== undefined) {
    // A whole file not read yet (a store blob): the tool reads the file itself, nothing passes through Node.
    let out: Readable | undefined;
    try {
      out = decompressFile(path, options);
    } catch {
      // cannot reopen it: stream it below
    }
    // Outside the try: a throw from destroy() must not send us on to stream a half-destroyed input.
    if (out !== undefined) {
      input.destroy();
      return out;
    }
  }
  return decompressStream(input, options);
}

/** {@link decompress} of a stream read through Node (never handed to a tool as a file). */
function decompressStream(input: Readable, options: DecompressOptions): Readable {
  const source = input[Symbol.asyncIterator]();
  const gen = async function* (): AsyncGenerator<Buffer> {
    try {
      const head: Buffer[] = [];
      let have = 0;
      while (have < 4) {
        const r = await source.next();
        if (r.done === true) break;
        head.push(r.value as Buffer);
        have += (r.value as Buffer).length;
      }
      const kind = detectCompression(Buffer.concat(head));
      const all = prependChunks(head, source);
      if (kind === 'none') {
        yield* all;
      } else if (kind === 'zstd') {
        const zstd = options.tools?.zstd;
        if (zstd === undefined) {
          throw new TsbuildError('LAYER_ZSTD_UNAVAILABLE', 'the layer is zstd-compressed and the zstd program was not found on the PATH', { hint: 'install it: apt-get install zstd' });
        }
        yield* runFilter([zstd, '-d', '-c', '-q'], all, 'LAYER_DECOMPRESS_FAILED');
      } else {
        // Not pigz -d: zlib inflates on the libuv thread pool (parallel with the consumer) and,
        // measured on a 338 MB image, takes 1.2 s of CPU where pigz -d through a pipe takes 3.0 s
        // (pigz's extra threads and two copies of every byte through the pipe).
        // Inflate up to READ_AHEAD ahead of the consumer (the default 16 KiB would keep zlib idle while files are written).
        const zopts: ZlibOptions & TransformOptions = { chunkSize: INFLATE_CHUNK, readableHighWaterMark: READ_AHEAD };
        const gunzip = zlib().createGunzip(zopts);
        const feeding = pipeline(Readable.from(all, { objectMode: false }), gunzip);
        feeding.catch(() => undefined);
        try {
          for await (const chunk of gunzip) yield chunk as Buffer;
          await feeding;
        } catch (cause) {
          if (cause instanceof TsbuildError) throw cause;
          throw new TsbuildError('LAYER_DECOMPRESS_FAILED', `corrupt gzip stream: ${(cause as Error).message}`, { cause });
        } finally {
          gunzip.destroy();
        }
      }
    } catch (cause) {
      if (cause instanceof TsbuildError) throw cause;
      throw new TsbuildError('LAYER_READ_FAILED', `cannot read the layer stream: ${(cause as Error).message}`, { cause });
    } finally {
      input.destroy();
    }
  };
  return Readable.from(gen(), { objectMode: false });
}

/** The path of `input` when it is a file stream over a whole file that nobody has read from yet. */
function untouchedFilePath(input: Readable): string | undefined {
  if (!(input instanceof ReadStream)) return undefined;
  const rs = input as ReadStream & { start?: number; end?: number };
  const whole = (rs.start === undefined || rs.start === 0) && (rs.end === undefined || rs.end === Infinity);
  const untouched = rs.bytesRead === 0 && rs.readableLength === 0 && rs.readableFlowing === null && !rs.destroyed
    && rs.listenerCount('data') === 0 && rs.listenerCount('readable') === 0;
  return whole && untouched && typeof rs.path === 'string' ? rs.path : undefined;
}

/**
 * Returns the decompressed content of the file at `path` (gzip, zstd or uncompressed, detected by
 * magic). With zstd the file is given to the tool as its stdin, so the compressed bytes never
 * pass through Node; gzip is read with 1 MiB reads and inflated in-process. Same errors as
 * {@link decompress}, plus LAYER_READ_FAILED when the file cannot be opened.
 */
export function decompressFile(path: string, options: DecompressOptions = {}): Readable {
  let fd: number | undefined;
  const head = Buffer.alloc(4);
  let kind: Compression;
  try {
    fd = openSync(path, 'r');
    kind = detectCompression(head.subarray(0, readSync(fd, head, 0, 4, 0)));
  } catch (cause) {
    if (fd !== undefined) closeSync(fd); // opened but unreadable (e.g. a directory): do not leak the fd
    throw new TsbuildError('LAYER_READ_FAILED', `cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  // gzip is inflated in-process (see decompressStream); only zstd needs a tool.
  const tool = kind === 'zstd' ? options.tools?.zstd : undefined;
  if (tool === undefined) {
    closeSync(fd);
    // Not decompress(): it would hand this untouched file stream straight back here, without end.
    return decompressStream(createReadStream(path, { highWaterMark: 1024 * 1024 }), options);
  }
  const owned = fd;
  const argv = [tool, '-d', '-c', '-q'];
  const gen = async function* (): AsyncGenerator<Buffer> {
    try {
      yield* runFilter(argv, owned, 'LAYER_DECOMPRESS_FAILED');
    } finally {
      closeSync(owned); // runFilter has ended (child exited or killed)
    }
  };
  return Readable.from(gen(), { objectMode: false });
}

/**
 * Returns the file at `path` gzip-compressed; with pigz the file is pigz's stdin (no data through
 * Node). Errors: LAYER_READ_FAILED (cannot open), LAYER_COMPRESS_FAILED. Destroying the stream stops pigz.
 */
export function compressGzipFile(path: string, options: CompressOptions = {}): Readable {
  const pigz = options.tools?.pigz;
  if (pigz === undefined) return compressGzip(createReadStream(path, { highWaterMark: 1024 * 1024 }), options);
  const level = options.level ?? 6;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new TsbuildError('LAYER_COMPRESS_FAILED', `gzip level ${level} is not 1-9`);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (cause) {
    throw new TsbuildError('LAYER_READ_FAILED', `cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  const argv = [pigz, '-c', '-n', `-${level}`, ...(options.threads === undefined ? [] : ['-p', String(options.threads)])];
  const gen = async function* (): AsyncGenerator<Buffer> {
    try {
      yield* runFilter(argv, fd, 'LAYER_COMPRESS_FAILED');
    } finally {
      closeSync(fd);
    }
  };
  return Readable.from(gen(), { objectMode: false });
}
