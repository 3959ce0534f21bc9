/**
 * Content checksums of a context selection for the COPY/ADD cache key: one digest per entry
 * (content plus mode, ownership and type; never times) and one combined digest of the whole
 * selection. Files are hashed streamed with bounded parallelism; the stat cache skips reading
 * files whose lstat fingerprint is unchanged.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { TsbuildError, sha256Of, type Digest } from '../core/index.js';
import { StatCache } from './stat-cache.js';
import type { ContextEntry, ContextSelection, EntryType } from './walk.js';

/** Reads a file as a stream of chunks (injectable so tests can count reads). */
export type FileReader = (absPath: string) => AsyncIterable<Uint8Array>;

/** Options of {@link checksumSources}. */
export interface ChecksumOptions {
  /** The stat cache to consult and fill (see StatCache.load); an in-memory one when undefined. */
  readonly statCache?: StatCache | undefined;
  /** Files hashed at the same time (default 8). */
  readonly concurrency?: number | undefined;
  /** Replaces the built-in streamed reader. */
  readonly readFile?: FileReader | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** The digests of one selected entry. */
export interface EntryDigest {
  readonly rel: string;
  readonly type: EntryType;
  /** sha256 of the bytes (file) or of the link text (symlink); undefined for dirs and others. */
  readonly contentDigest: Digest | undefined;
  /** sha256 of the entry record: type, permission bits, uid, gid, device and content digest. */
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
  /** What it cost: entries seen, files read, bytes read, stat-cache hits. */
  readonly stats: { readonly entries: number; readonly filesRead: number; readonly bytesRead: number; readonly cacheHits: number };
}

const CHUNK = 1 << 20;
/** Files changed this close (ns) to the moment they were read are not cached: a later write in the same clock tick would go unnoticed. */
const RACY_NS = 50_000_000n;

/** The default reader: sequential reads into one reusable buffer per file. */
async function* readChunks(absPath: string, buf: Buffer): AsyncIterable<Uint8Array> {
  const fh = await open(absPath, 'r');
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

function entryRecord(e: ContextEntry, content: Digest | undefined): Digest {
  const st = e.stat;
  const perm = (st.mode & 0o7777n).toString(8);
  const dev = e.type === 'other' ? `${(st.mode & 0o170000n).toString(8)}:${st.rdev}` : '';
  return sha256Of(`tsbuild-context-entry/1\0${e.type}\0${perm}\0${st.uid}\0${st.gid}\0${dev}\0${content ?? ''}`);
}

/**
 * Computes per-entry and combined content digests of `selection` (from selectSources). Regular
 * files are read only when the stat cache has no entry with the same fingerprint; the caller
 * saves the cache afterwards (`statCache.save()`). Modification times never enter a digest.
 * Throws CTX_READ when a file cannot be read.
 */
export async function checksumSources(selection: ContextSelection, options: ChecksumOptions = {}): Promise<SelectionChecksum> {
  const cache = options.statCache ?? StatCache.inMemory();
  const concurrency = Math.max(1, options.concurrency ?? 8);
  const contents = new Map<string, Digest>();
  const pending: ContextEntry[] = [];
  let entries = 0;
  let cacheHits = 0;
  const queued = new Set<string>();
  for (const src of selection.sources) {
    for (const m of src.matches) {
      for (const e of m.entries) {
        entries++;
        if (e.type === 'symlink') contents.set(e.absPath, sha256Of(e.linkTarget ?? ''));
        if (e.type !== 'file' || contents.has(e.absPath) || queued.has(e.absPath)) continue;
        const hit = cache.lookup(e.absPath, e.stat);
        if (hit !== undefined) {
          contents.set(e.absPath, hit);
          cacheHits++;
        } else {
          queued.add(e.absPath);
          pending.push(e);
        }
      }
    }
  }

  let bytesRead = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    const buf = options.readFile === undefined ? Buffer.allocUnsafe(CHUNK) : Buffer.alloc(0);
    while (next < pending.length) {
      options.signal?.throwIfAborted();
      const e = pending[next++] as ContextEntry;
      const startNs = BigInt(Date.now()) * 1_000_000n;
      const hash = createHash('sha256');
      try {
        const chunks = options.readFile === undefined ? readChunks(e.absPath, buf) : options.readFile(e.absPath);
        for await (const chunk of chunks) {
          hash.update(chunk);
          bytesRead += chunk.byteLength;
        }
      } catch (err) {
        if (err instanceof TsbuildError) throw err;
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw new TsbuildError('CTX_READ', `cannot read build context file ${e.absPath}: ${code}`, { cause: err });
      }
      const digest = `sha256:${hash.digest('hex')}` as Digest;
      contents.set(e.absPath, digest);
      const changed = e.stat.mtimeNs > e.stat.ctimeNs ? e.stat.mtimeNs : e.stat.ctimeNs;
      if (changed < startNs - RACY_NS) cache.record(e.absPath, e.stat, digest);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, pending.length) }, worker));

  const total = createHash('sha256');
  total.update('tsbuild-context-selection/1\n');
  const sources = selection.sources.map((src) => {
    const srcHash = createHash('sha256');
    const matches = src.matches.map((m): MatchChecksum => {
      const mHash = createHash('sha256');
      const list = m.entries.map((e): EntryDigest => {
        const content = contents.get(e.absPath);
        const digest = entryRecord(e, content);
        mHash.update(`${e.rel}\0${digest}\n`);
        return { rel: e.rel, type: e.type, contentDigest: content, digest };
      });
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
    stats: { entries, filesRead: pending.length, bytesRead, cacheHits },
  };
}
