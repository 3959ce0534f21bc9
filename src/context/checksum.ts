/**
 * Content checksums of a context selection for the COPY/ADD cache key: one digest per entry
 * (content plus mode, ownership and type; never times) and one combined digest of the whole
 * selection. Files are hashed streamed with bounded parallelism; the stat cache skips reading
 * files whose lstat fingerprint is unchanged.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { TsbuildError, sha256Of, type Digest } from '../core/index.js';
import type { HashThread, ThreadResult } from './hash-thread.js';
import { StatCache } from './stat-cache.js';
import type { ContextEntry, ContextSelection, EntryType } from './walk.js';

/** Reads a file as a stream of chunks (injectable so tests can count reads). */
export type FileReader = (absPath: string) => AsyncIterable<Uint8Array>;

/** Options of {@link checksumSources}. */
export interface ChecksumOptions {
  /** The stat cache to consult and fill (see StatCache.load); an in-memory one when undefined. */
  readonly statCache?: StatCache | undefined;
  /**
   * Large files (over 256 KiB) read at the same time (default 4). With many files or bytes to read,
   * up to 2 worker threads hash large files and batches of small ones while the main thread hashes
   * small ones synchronously; else small files are read synchronously in turn.
   */
  readonly concurrency?: number | undefined;
  /** Replaces the built-in streamed reader. */
  readonly readFile?: FileReader | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** The digest of one selected entry. */
export interface EntryDigest {
  readonly rel: string;
  readonly type: EntryType;
  /**
   * sha256 of the bytes (file), of the link text (symlink), or of a fixed record of type, permission
   * bits, uid, gid and device (dir, other). The combined digests also cover mode and ownership of files.
   */
  readonly digest: Digest;
}

/** Checksums of one match of a source. */
export interface MatchChecksum {
  readonly source: string;
  readonly digest: Digest;
  readonly entries: readonly EntryDigest[];
}

/** The result of {@link checksumSources}. */
export interface SelectionChecksum {
  /** One digest over every source, match and entry (names relative to the match, entry digests). */
  readonly digest: Digest;
  readonly sources: readonly { readonly pattern: string; readonly digest: Digest; readonly matches: readonly MatchChecksum[] }[];
  /** What it cost: entries seen, files read (of them on worker threads), bytes read, stat-cache hits. */
  readonly stats: { readonly entries: number; readonly filesRead: number; readonly threadFiles: number; readonly bytesRead: number; readonly cacheHits: number };
}

const CHUNK = 1 << 20;
/** Files changed this close (ms) to the moment they were read are not cached: a later write in the same clock tick would go unnoticed. */
const RACY_MS = 50;

/** Large files are hashed in worker threads when they add up to at least this many bytes. */
const THREAD_MIN_BYTES = 32 * 1024 * 1024;
/** ... or when at least this many small files are to be read. */
const THREAD_MIN_FILES = 2048;
/** Worker threads at most (the machines we target have few cores; the main thread hashes small files too). */
const THREADS = 2;
/** Small files handed out at a time (to a thread in one message, or hashed by the main thread before it yields). */
const BATCH = 256;
// SECURITY: a file swapped for a symlink after the walk must not make us read outside the context.
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;

/** Files up to this size are read synchronously in one call (no per-file promise overhead). */
const SMALL = 256 * 1024;

/** The default reader for large files: sequential reads into one reusable buffer. */
async function* readChunks(absPath: string, buf: Buffer): AsyncIterable<Uint8Array> {
  const fh = await open(absPath, READ_FLAGS);
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** Hashes a small file synchronously through `buf`; returns the byte count. */
function hashSmallFile(absPath: string, buf: Buffer, hash: ReturnType<typeof createHash>): number {
  const fd = openSync(absPath, READ_FLAGS);
  let total = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      total += n;
      if (n < buf.length) break; // a short read of a regular file is its end
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

const TYPE_INDEX: Readonly<Record<EntryType, number>> = { file: 0, dir: 1, symlink: 2, other: 3 };

/** The metadata of an entry that enters the combined digests (never times). */
function metaOf(e: ContextEntry, seen: Map<number, string>): string {
  const st = e.stat;
  const mode = st.mode;
  // Most entries share a few (type, permissions, owner) combinations: their text is made once.
  const key = e.type !== 'other' && st.uid < 0x10000 && st.gid < 0x10000 ? ((st.uid * 0x10000 + st.gid) * 4 + TYPE_INDEX[e.type]) * 0x1000 + (mode & 0o7777) : -1;
  if (key >= 0) {
    const text = seen.get(key);
    if (text !== undefined) return text;
  }
  const dev = e.type === 'other' ? `${(mode & 0o170000).toString(8)}:${st.rdev}` : '';
  const text = `${e.type}\0${(mode & 0o7777).toString(8)}\0${st.uid}\0${st.gid}\0${dev}`;
  if (key >= 0) seen.set(key, text);
  return text;
}

function readFailure(absPath: string, err: unknown): TsbuildError {
  if (err instanceof TsbuildError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return new TsbuildError('CTX_READ', `cannot read build context file ${absPath}: ${code}`, { cause: err });
}

/**
 * Computes per-entry and combined content digests of `selection` (from selectSources). Regular
 * files are read only when the stat cache has no entry with the same fingerprint; the caller
 * saves the cache afterwards (`statCache.save()`). Small files are read synchronously, large ones
 * streamed by up to `concurrency` readers. Modification times never enter a digest; permission
 * bits, uid, gid and type do. Throws CTX_READ when a file cannot be read.
 */
export async function checksumSources(selection: ContextSelection, options: ChecksumOptions = {}): Promise<SelectionChecksum> {
  const cache = options.statCache ?? StatCache.inMemory();
  const concurrency = Math.max(1, options.concurrency ?? 4);
  // Digests of files by entry, in selection order (stat-cache hits straight away); `contents`
  // holds only the files to read, so a file named by several sources is read once.
  const hits: (Digest | undefined)[] = [];
  const contents = new Map<string, Digest>();
  const small: ContextEntry[] = [];
  const large: ContextEntry[] = [];
  let entries = 0;
  let cacheHits = 0;
  for (const src of selection.sources) {
    for (const m of src.matches) {
      for (const e of m.entries) {
        const hit = e.type === 'file' && !contents.has(e.absPath) ? cache.lookup(e.absPath, e.stat) : undefined;
        hits[entries++] = hit;
        if (e.type !== 'file' || hit !== undefined || contents.has(e.absPath)) {
          if (hit !== undefined) cacheHits++;
          continue;
        }
        contents.set(e.absPath, '' as Digest); // queued once
        if (options.readFile === undefined && e.stat.size <= SMALL) small.push(e);
        else large.push(e);
      }
    }
  }

  let bytesRead = 0;
  const finish = (e: ContextEntry, startMs: number, digest: Digest): void => {
    contents.set(e.absPath, digest);
    const changed = e.stat.mtimeMs > e.stat.ctimeMs ? e.stat.mtimeMs : e.stat.ctimeMs;
    if (changed < startMs - RACY_MS) cache.record(e.absPath, e.stat, digest);
  };

  let next = 0;
  // Small files in batches, taken by the main thread and the hash threads alike.
  const batches: ContextEntry[][] = [];
  for (let i = 0; i < small.length; i += BATCH) batches.push(small.slice(i, i + BATCH));
  let nextBatch = 0;
  let threadFiles = 0;
  /** Records the outcomes of `list` hashed in a thread (started at `startMs`). */
  const finishThreaded = (list: readonly ContextEntry[], results: readonly ThreadResult[], startMs: number): void => {
    list.forEach((e, i) => {
      const r = results[i];
      if (r === undefined) throw readFailure(e.absPath, new Error('no result from the hash thread'));
      if ('error' in r) throw readFailure(e.absPath, r.error);
      bytesRead += r.bytes;
      threadFiles++;
      finish(e, startMs, `sha256:${r.hex}` as Digest);
    });
  };
  /** The next unit for a thread: a large file (only threads take them), else a batch of small ones. */
  const claim = (): { list: readonly ContextEntry[]; small: boolean } | undefined => {
    const e = large[next];
    if (e !== undefined) {
      next++;
      return { list: [e], small: false };
    }
    const list = batches[nextBatch];
    if (list === undefined) return undefined;
    nextBatch++;
    return { list, small: true };
  };
  // node:worker_threads loads only when files are hashed in threads (a cached build never needs it).
  const threadWorker = async (): Promise<void> => {
    // The first unit is taken before the thread starts (and before the main thread takes any).
    let unit = claim();
    if (unit === undefined) return;
    const thread: HashThread = new (await import('./hash-thread.js')).HashThread();
    try {
      while (unit !== undefined) {
        options.signal?.throwIfAborted();
        const startMs = Date.now();
        finishThreaded(unit.list, await thread.hashMany(unit.list.map((x) => x.absPath), unit.small), startMs);
        unit = claim();
      }
    } finally {
      await thread.close();
    }
  };
  const worker = async (): Promise<void> => {
    const buf = options.readFile === undefined ? Buffer.allocUnsafe(CHUNK) : Buffer.alloc(0);
    while (next < large.length) {
      options.signal?.throwIfAborted();
      const e = large[next++] as ContextEntry;
      const startMs = Date.now();
      const hash = createHash('sha256');
      try {
        const chunks = options.readFile === undefined ? readChunks(e.absPath, buf) : options.readFile(e.absPath);
        for await (const chunk of chunks) {
          hash.update(chunk);
          bytesRead += chunk.byteLength;
        }
      } catch (err) {
        throw readFailure(e.absPath, err);
      }
      finish(e, startMs, `sha256:${hash.digest('hex')}` as Digest);
    }
  };
  const smallPass = async (): Promise<void> => {
    const buf = Buffer.allocUnsafe(SMALL + 1);
    for (;;) {
      const list = batches[nextBatch++];
      if (list === undefined) return;
      for (const e of list) {
        const startMs = Date.now();
        const hash = createHash('sha256');
        try {
          bytesRead += hashSmallFile(e.absPath, buf, hash);
        } catch (err) {
          throw readFailure(e.absPath, err);
        }
        finish(e, startMs, `sha256:${hash.digest('hex')}` as Digest);
      }
      // Let the hash threads' results and the rest of the process run between batches.
      options.signal?.throwIfAborted();
      await new Promise<void>((r) => setImmediate(r));
    }
  };
  // Worker threads (other cores) hash large files and help with small ones when there is enough
  // to pay for starting them; the main thread hashes small files meanwhile.
  const largeBytes = large.reduce((n, e) => n + e.stat.size, 0);
  const enough = largeBytes >= THREAD_MIN_BYTES || small.length >= THREAD_MIN_FILES;
  const threads = options.readFile === undefined && enough ? Math.min(concurrency, THREADS, large.length + batches.length) : 0;
  // The readers start (and the threads take their first units) before the main thread's pass.
  const readers = threads > 0 ? Array.from({ length: threads }, threadWorker) : Array.from({ length: Math.min(concurrency, large.length) }, worker);
  await Promise.all([smallPass(), ...readers].map((p) => p.catch((err: unknown) => {
    // The first failure stops the others at their next file or batch.
    next = large.length;
    nextBatch = batches.length;
    throw err;
  })));

  const total = createHash('sha256');
  total.update('tsbuild-context-selection/1\n');
  let at = 0;
  const metaTexts = new Map<number, string>();
  const sources = selection.sources.map((src) => {
    const srcHash = createHash('sha256');
    const matches = src.matches.map((m): MatchChecksum => {
      const mHash = createHash('sha256');
      let pendingText = '';
      const list = m.entries.map((e): EntryDigest => {
        const meta = metaOf(e, metaTexts);
        const hit = hits[at++];
        const digest =
          e.type === 'file' ? (hit ?? (contents.get(e.absPath) as Digest))
          : e.type === 'symlink' ? sha256Of(e.linkTarget ?? '')
          : sha256Of(`tsbuild-context-entry/1\0${meta}`);
        // Batched: one update per ~64 KB instead of one per entry (same bytes hashed).
        pendingText += `${e.rel}\0${meta}\0${digest}\n`;
        if (pendingText.length > 65536) {
          mHash.update(pendingText);
          pendingText = '';
        }
        return { rel: e.rel, type: e.type, digest };
      });
      mHash.update(pendingText);
      const digest = `sha256:${mHash.digest('hex')}` as Digest;
      srcHash.update(`${m.source}\0${digest}\n`);
      return { source: m.source, digest, entries: list };
    });
    const digest = `sha256:${srcHash.digest('hex')}` as Digest;
    total.update(`${src.pattern}\0${digest}\n`);
    return { pattern: src.pattern, digest, matches };
  });
  return {
    digest: `sha256:${total.digest('hex')}` as Digest,
    sources,
    stats: { entries, filesRead: small.length + large.length, threadFiles, bytesRead, cacheHits },
  };
}
