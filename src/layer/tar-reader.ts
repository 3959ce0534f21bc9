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

/**
 * Reads a tar stream entry by entry (ustar, PAX `x` records incl. binary `SCHILY.xattr.*`, GNU
 * `L`/`K` long names). Bodies are yielded as slices; an unconsumed body is skipped. Throws
 * LAYER_BAD_HEADER, LAYER_TRUNCATED, LAYER_TOO_MANY_ENTRIES, LAYER_PATH_TOO_LONG,
 * LAYER_UNSUPPORTED_ENTRY. Trailing bytes after the end marker are drained so upstream
 * digests/decompressors see the whole input.
 */
export async function* readTar(source: AsyncIterable<unknown>, limits: TarReadLimits = {}): AsyncGenerator<TarEntry> {
  const maxEntries = limits.maxEntries ?? 1_000_000;
  const maxPath = limits.maxPathLength ?? 4096;
  const maxMeta = limits.maxMetaSize ?? 1024 * 1024;
  const reader = new ByteReader(source);
  let pending: Pending = { xattrs: [] };
  let count = 0;
  try {
    for (;;) {
      if (!(await reader.fill(BLOCK))) {
        if (reader.buffered === 0 && pending.path === undefined && pending.xattrs.length === 0 && count > 0) return;
        throw makeTruncatedError('a header');
      }
      const block = reader.take(BLOCK);
      if (isZeroBlock(block)) {
        await reader.drain();
        return;
      }
      verifyChecksum(block);
      const flag = block[156] as number;
      const type = decodeTypeFlag(flag);
      let size = parseNumeric(block, 124, 12, 'size');
      const isMeta = type === 'x' || type === 'g' || type === 'L' || type === 'K';
      if (isMeta) {
        if (size > maxMeta) throw new TsbuildError('LAYER_BAD_HEADER', `a ${type} meta header of ${size} bytes exceeds the limit of ${maxMeta}`);
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
          if (size > maxPath + 1) throw new TsbuildError('LAYER_PATH_TOO_LONG', `a GNU long ${type === 'L' ? 'name' : 'link'} of ${size} bytes exceeds ${maxPath}`);
          const end = body.indexOf(0);
          const value = body.toString('utf8', 0, end === -1 ? body.length : end);
          if (type === 'L') pending.path = value;
          else pending.linkpath = value;
        }
        continue;
      }
      if (typeof type === 'string' && type.length === 1 && !['file', 'link', 'symlink', 'char', 'block', 'directory', 'fifo'].includes(type)) {
        throw new TsbuildError('LAYER_UNSUPPORTED_ENTRY', `unsupported tar entry type "${type}" (${JSON.stringify(parseString(block, 0, 100))})`);
      }
      if (++count > maxEntries) throw new TsbuildError('LAYER_TOO_MANY_ENTRIES', `the layer has more than ${maxEntries} entries`);
      const magic = block.toString('latin1', 257, 263);
      let name = parseString(block, 0, 100);
      if (magic === 'ustar\0') {
        const prefix = parseString(block, 345, 155);
        if (prefix !== '') name = `${prefix}/${name}`;
      }
      if (pending.size !== undefined) size = pending.size;
      const entryType = type as EntryType;
      if (entryType !== 'file') size = 0; // header-only types carry no data (as Go's archive/tar reads them)
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
      pending = { xattrs: [] };
      if (Buffer.byteLength(header.name) > maxPath || Buffer.byteLength(header.linkname) > maxPath) {
        throw new TsbuildError('LAYER_PATH_TOO_LONG', `an entry name or link target exceeds ${maxPath} bytes`);
      }
      let left = size;
      const body = async function* (): AsyncGenerator<Buffer> {
        while (left > 0) {
          const chunk = await reader.takeSome(left);
          if (chunk === undefined) throw makeTruncatedError(`the content of ${JSON.stringify(header.name)}`);
          left -= chunk.length;
          yield chunk;
        }
      };
      yield { header, body: body() };
      while (left > 0) {
        const chunk = await reader.takeSome(left);
        if (chunk === undefined) throw makeTruncatedError(`the content of ${JSON.stringify(header.name)}`);
        left -= chunk.length;
      }
      const pad = roundToBlock(size) - size;
      if (pad > 0) {
        if (!(await reader.fill(pad))) throw makeTruncatedError('the padding of an entry');
        reader.take(pad);
      }
    }
  } finally {
    await reader.close();
  }
}
