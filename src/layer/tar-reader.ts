import { TsbuildError } from '../core/index.js';
import {
  BLOCK, decodePax, isZeroBlock, roundToBlock, parseNumeric, parseString, decodeTypeFlag, verifyChecksum,
  type EntryType, type TarHeader, type TarXattr,
} from './tar-header.js';

/** Limits enforced while reading a tar (a hostile archive fails with a LAYER_* code). */
export interface TarReadLimits {
  /** Maximum number of entries (meta entries not counted); default 1,000,000. */
  readonly maxEntries?: number;
  /** Maximum path or link-target length in bytes; default 4096. */
  readonly maxPathLength?: number;
  /** Maximum PAX / GNU long-name header size in bytes; default 1 MiB. */
  readonly maxMetaSize?: number;
}

/** One entry while reading: its header and its body (must be consumed before asking for the next entry, or it is skipped). */
export interface TarEntry {
  readonly header: TarHeader;
  readonly body: AsyncIterable<Buffer>;
}

function makeTruncatedError(what: string): TsbuildError {
  return new TsbuildError('LAYER_TRUNCATED', `the layer tar ends in the middle of ${what}`, { hint: 'the archive is truncated or corrupt' });
}

/** Pull-based reader over an async iterable of byte chunks (zero-copy where chunks allow). */
class ByteReader {
  private readonly it: AsyncIterator<unknown>;
  private chunks: Buffer[] = [];
  private avail = 0;

  constructor(source: AsyncIterable<unknown>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Ensures `n` bytes are buffered; false when the input ended first. */
  async fill(n: number): Promise<boolean> {
    while (this.avail < n) {
      const r = await this.next();
      if (r.done === true) return false;
      const chunk = r.value as Buffer;
      if (chunk.length === 0) continue;
      this.chunks.push(chunk);
      this.avail += chunk.length;
    }
    return true;
  }

  get buffered(): number {
    return this.avail;
  }

  /** Takes exactly `n` buffered bytes (call fill first). */
  take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length === n) {
      this.chunks.shift();
      this.avail -= n;
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      this.avail -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0] as Buffer;
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.avail -= n;
    return out;
  }

  /** The first `n` buffered bytes without taking them (a copy only when they span chunks; call fill first). */
  peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    for (const c of this.chunks) {
      if (at >= n) break;
      at += c.copy(out, at, 0, Math.min(c.length, n - at));
    }
    return out;
  }

  /** Takes up to `n` bytes as they come (at least 1 byte); undefined at end of input. */
  async takeSome(n: number): Promise<Buffer | undefined> {
    if (this.avail === 0 && !(await this.fill(1))) return undefined;
    const first = this.chunks[0] as Buffer;
    return this.take(Math.min(n, first.length));
  }

  async drain(): Promise<void> {
    this.chunks = [];
    this.avail = 0;
    for (;;) {
      const r = await this.next();
      if (r.done === true) return;
    }
  }

  private async next(): Promise<IteratorResult<unknown>> {
    try {
      return await this.it.next();
    } catch (cause) {
      if (cause instanceof TsbuildError) throw cause;
      throw new TsbuildError('LAYER_READ_FAILED', `cannot read the layer stream: ${(cause as Error).message}`, { cause });
    }
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

interface Pending {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  xattrs: TarXattr[];
}

function parsePaxNumber(value: string, field: string): number {
  if (!/^\d+(\.\d*)?$/.test(value)) throw new TsbuildError('LAYER_BAD_HEADER', `invalid PAX ${field} "${value.slice(0, 40)}"`);
  const n = Math.floor(Number(value));
  if (!Number.isSafeInteger(n)) throw new TsbuildError('LAYER_BAD_HEADER', `PAX ${field} is too large`);
  return n;
}

/** An entry whose header and whole body were already buffered (see {@link TarReader.nextBuffered}). */
export interface BufferedTarEntry {
  readonly header: TarHeader;
  /** The whole body (header.size bytes; a slice of the input unless it spanned two chunks). */
  readonly data: Buffer;
}

const ENTRY_TYPES: ReadonlySet<string> = new Set(['file', 'link', 'symlink', 'char', 'block', 'directory', 'fifo']);

/**
 * Reads a tar stream entry by entry (ustar, PAX `x` records incl. binary `SCHILY.xattr.*`, GNU
 * `L`/`K` long names), pull-based: {@link next} waits for input; {@link nextBuffered} returns an
 * entry at once when it is in memory already, so a consumer unpacking many small files pays no
 * promise per entry. Bodies are slices; an unconsumed body is skipped by the next call. Throws
 * LAYER_BAD_HEADER, LAYER_TRUNCATED, LAYER_TOO_MANY_ENTRIES, LAYER_PATH_TOO_LONG,
 * LAYER_UNSUPPORTED_ENTRY. Trailing bytes after the end marker are drained so upstream
 * digests/decompressors see the whole input. Call {@link close} when done (also on failure).
 */
export class TarReader {
  private readonly reader: ByteReader;
  private readonly maxEntries: number;
  private readonly maxPath: number;
  private readonly maxMeta: number;
  private pending: Pending = { xattrs: [] };
  private count = 0;
  /** Body bytes of the current entry not read yet. */
  private left = 0;
  /** Padding after the current entry's body, not read yet. */
  private pad = 0;
  private ended = false;
  /** Counts entries handed out, so that a body iterator kept past its entry reads nothing more. */
  private entry = 0;
  /** Name of the current entry, for a truncation error while skipping its body. */
  private current = '';

  constructor(source: AsyncIterable<unknown>, limits: TarReadLimits = {}) {
    this.reader = new ByteReader(source);
    this.maxEntries = limits.maxEntries ?? 1_000_000;
    this.maxPath = limits.maxPathLength ?? 4096;
    this.maxMeta = limits.maxMetaSize ?? 1024 * 1024;
  }

  /**
   * The next entry if it is an ordinary entry (no meta header before it) of at most `maxBody`
   * bytes whose header, body and padding are all buffered, with its body read; otherwise undefined
   * and nothing is consumed (call {@link next}). The previous entry's body must have been read.
   */
  nextBuffered(maxBody: number): BufferedTarEntry | undefined {
    const reader = this.reader;
    if (this.ended || this.left > 0) return undefined;
    this.entry++;
    if (this.pad > 0) {
      if (reader.buffered < this.pad) return undefined;
      reader.take(this.pad);
      this.pad = 0;
    }
    if (reader.buffered < BLOCK || this.pending.path !== undefined || this.pending.xattrs.length > 0) return undefined;
    const peeked = reader.peek(BLOCK);
    const type = decodeTypeFlag(peeked[156] as number);
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K' || isZeroBlock(peeked)) return undefined;
    verifyChecksum(peeked);
    const size = type === 'file' ? parseNumeric(peeked, 124, 12, 'size') : 0;
    if (size > maxBody || reader.buffered < BLOCK + roundToBlock(size)) return undefined;
    const header = this.parseEntry(reader.take(BLOCK), type);
    const data = size === 0 ? EMPTY : reader.take(size);
    const pad = roundToBlock(size) - size;
    if (pad > 0) reader.take(pad);
    return { header, data };
  }

  /** The next entry (its body is read from the input as it is consumed), or undefined at the end. */
  async next(): Promise<TarEntry | undefined> {
    if (this.ended) return undefined;
    const reader = this.reader;
    this.entry++;
    while (this.left > 0) {
      const chunk = await reader.takeSome(this.left);
      if (chunk === undefined) throw makeTruncatedError(`the content of ${JSON.stringify(this.current)}`);
      this.left -= chunk.length;
    }
    if (this.pad > 0) {
      if (!(await reader.fill(this.pad))) throw makeTruncatedError('the padding of an entry');
      reader.take(this.pad);
      this.pad = 0;
    }
    const pending = this.pending;
    for (;;) {
      if (!(await reader.fill(BLOCK))) {
        if (reader.buffered === 0 && pending.path === undefined && pending.xattrs.length === 0 && this.count > 0) {
          this.ended = true;
          return undefined;
        }
        throw makeTruncatedError('a header');
      }
      const block = reader.take(BLOCK);
      if (isZeroBlock(block)) {
        this.ended = true;
        await reader.drain();
        return undefined;
      }
      verifyChecksum(block);
      const type = decodeTypeFlag(block[156] as number);
      if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
        const size = parseNumeric(block, 124, 12, 'size');
        if (size > this.maxMeta) throw new TsbuildError('LAYER_BAD_HEADER', `a ${type} meta header of ${size} bytes exceeds the limit of ${this.maxMeta}`);
        if (!(await reader.fill(roundToBlock(size)))) throw makeTruncatedError('a meta header');
        const body = reader.take(roundToBlock(size)).subarray(0, size);
        if (type === 'x') {
          const pax = decodePax(body);
          const f = pax.fields;
          if (f.has('path')) pending.path = f.get('path') as string;
          if (f.has('linkpath')) pending.linkpath = f.get('linkpath') as string;
          if (f.has('size')) pending.size = parsePaxNumber(f.get('size') as string, 'size');
          if (f.has('uid')) pending.uid = parsePaxNumber(f.get('uid') as string, 'uid');
          if (f.has('gid')) pending.gid = parsePaxNumber(f.get('gid') as string, 'gid');
          if (f.has('mtime')) pending.mtime = parsePaxNumber(f.get('mtime') as string, 'mtime');
          pending.xattrs.push(...pax.xattrs);
        } else if (type === 'L' || type === 'K') {
          if (size > this.maxPath + 1) throw new TsbuildError('LAYER_PATH_TOO_LONG', `a GNU long ${type === 'L' ? 'name' : 'link'} of ${size} bytes exceeds ${this.maxPath}`);
          const end = body.indexOf(0);
          const value = body.toString('utf8', 0, end === -1 ? body.length : end);
          if (type === 'L') pending.path = value;
          else pending.linkpath = value;
        }
        continue;
      }
      const header = this.parseEntry(block, type);
      this.left = header.size;
      this.pad = roundToBlock(header.size) - header.size;
      this.current = header.name;
      return { header, body: this.body(header, this.entry) };
    }
  }

  /** Stops reading the input. */
  async close(): Promise<void> {
    await this.reader.close();
  }

  /** The header of an ordinary entry from its (checksum-verified) block and the pending meta records; enforces the limits. */
  private parseEntry(block: Buffer, type: EntryType | string): TarHeader {
    if (!ENTRY_TYPES.has(type)) {
      throw new TsbuildError('LAYER_UNSUPPORTED_ENTRY', `unsupported tar entry type "${type}" (${JSON.stringify(parseString(block, 0, 100))})`);
    }
    if (++this.count > this.maxEntries) throw new TsbuildError('LAYER_TOO_MANY_ENTRIES', `the layer has more than ${this.maxEntries} entries`);
    const pending = this.pending;
    const magic = block.toString('latin1', 257, 263);
    let name = parseString(block, 0, 100);
    if (magic === 'ustar\0') {
      const prefix = parseString(block, 345, 155);
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    const entryType = type as EntryType;
    // Header-only types carry no data (as Go's archive/tar reads them).
    const size = entryType !== 'file' ? 0 : pending.size ?? parseNumeric(block, 124, 12, 'size');
    const header: TarHeader = {
      name: pending.path ?? name,
      type: entryType,
      mode: parseNumeric(block, 100, 8, 'mode') & 0o7777,
      uid: pending.uid ?? parseNumeric(block, 108, 8, 'uid'),
      gid: pending.gid ?? parseNumeric(block, 116, 8, 'gid'),
      size,
      mtime: pending.mtime ?? parseNumeric(block, 136, 12, 'mtime'),
      linkname: pending.linkpath ?? parseString(block, 157, 100),
      devmajor: entryType === 'char' || entryType === 'block' ? parseNumeric(block, 329, 8, 'devmajor') : 0,
      devminor: entryType === 'char' || entryType === 'block' ? parseNumeric(block, 337, 8, 'devminor') : 0,
      xattrs: pending.xattrs,
    };
    this.pending = { xattrs: [] };
    if (Buffer.byteLength(header.name) > this.maxPath || Buffer.byteLength(header.linkname) > this.maxPath) {
      throw new TsbuildError('LAYER_PATH_TOO_LONG', `an entry name or link target exceeds ${this.maxPath} bytes`);
    }
    return header;
  }

  /** The body of the current entry, read as it is consumed (until the next call to next or nextBuffered). */
  private async *body(header: TarHeader, entry: number): AsyncGenerator<Buffer> {
    while (this.left > 0 && this.entry === entry) {
      const chunk = await this.reader.takeSome(this.left);
      if (chunk === undefined) throw makeTruncatedError(`the content of ${JSON.stringify(header.name)}`);
      this.left -= chunk.length;
      yield chunk;
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** {@link TarReader} as an async iterable of entries (each body must be consumed before the next entry, or it is skipped). */
export async function* readTar(source: AsyncIterable<unknown>, limits: TarReadLimits = {}): AsyncGenerator<TarEntry> {
  const reader = new TarReader(source, limits);
  try {
    for (;;) {
      const entry = await reader.next();
      if (entry === undefined) return;
      yield entry;
    }
  } finally {
    await reader.close();
  }
}
