import { TsbuildError } from '../core/index.js';

/** Size of a tar block; headers and data padding are multiples of it. */
export const BLOCK = 512;

/** Entry kinds of a layer tar (PAX/GNU meta entries are folded into the next real entry). */
export type EntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

/** One extended attribute carried in a `SCHILY.xattr.*` PAX record (value kept as raw bytes). */
export interface TarXattr {
  readonly name: string;
  readonly value: Buffer;
}

/** A decoded (or to-be-encoded) tar entry header; `mtime` in whole seconds. */
export interface TarHeader {
  readonly name: string;
  readonly type: EntryType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  readonly linkname: string;
  readonly devmajor: number;
  readonly devminor: number;
  readonly xattrs: readonly TarXattr[];
}

const TYPE_FLAG: Readonly<Record<EntryType, number>> = {
  file: 0x30, link: 0x31, symlink: 0x32, char: 0x33, block: 0x34, directory: 0x35, fifo: 0x36,
};

const MAX_OCTAL_8 = 0o7777777;
/** `ustar\0` and version `00`. */
const USTAR_MAGIC = Buffer.from('ustar\u000000', 'latin1');
const MAGIC_SUM = USTAR_MAGIC.reduce((a, b) => a + b, 0);
/** The checksum field counts as eight spaces in its own sum. */
const CHECKSUM_SPACES = 8 * 0x20;
const MAX_OCTAL_12 = 0o77777777777;

/** Rounds `size` up to the next multiple of 512. */
export function roundToBlock(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/** Sum of the bytes `block[from, to)`. */
function byteSum(block: Buffer, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += block[i] as number;
  return sum;
}

/**
 * Writes `value` as UTF-8 into a zeroed field of `width` bytes and returns the sum of the bytes
 * written. A longer value (it then lives in a PAX record) keeps its first `width` raw bytes.
 */
function writeString(block: Buffer, offset: number, width: number, value: string): number {
  if (value === '') return 0;
  const n = value.length * 3 > width ? Buffer.from(value, 'utf8').copy(block, offset, 0, width) : block.write(value, offset, width, 'utf8');
  return byteSum(block, offset, offset + n);
}

/**
 * Writes `value` (which must fit) as `width - 1` zero-padded octal digits and a NUL, and returns
 * the sum of the bytes written. Byte by byte, with no string: this runs seven times for every
 * entry of every layer.
 */
function writeOctal(block: Buffer, offset: number, width: number, value: number): number {
  let v = value;
  let sum = 0;
  for (let i = offset + width - 2; i >= offset; i--) {
    const digit = 0x30 + (v % 8);
    block[i] = digit;
    sum += digit;
    v = Math.floor(v / 8);
  }
  block[offset + width - 1] = 0;
  return sum;
}

function encodePaxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'ascii'), body]);
}

/** Whether `s` may take more than 100 bytes as UTF-8 (a UTF-16 unit is at most 3 bytes). */
function longerThan100(s: string): boolean {
  return s.length > 33 && Buffer.byteLength(s) > 100;
}

/** Cheap test for the common case: a short name and link, small numbers, no xattrs. */
function needsPax(h: TarHeader): boolean {
  return h.xattrs.length > 0 || h.size > MAX_OCTAL_12 || h.uid > MAX_OCTAL_8 || h.gid > MAX_OCTAL_8 || longerThan100(h.name) || longerThan100(h.linkname);
}

function buildPaxRecords(h: TarHeader): Buffer | undefined {
  if (!needsPax(h)) return undefined;
  const records: Array<[string, Buffer]> = [];
  if (Buffer.byteLength(h.name) > 100) records.push(['path', Buffer.from(h.name, 'utf8')]);
  if (Buffer.byteLength(h.linkname) > 100) records.push(['linkpath', Buffer.from(h.linkname, 'utf8')]);
  if (h.size > MAX_OCTAL_12) records.push(['size', Buffer.from(String(h.size))]);
  if (h.uid > MAX_OCTAL_8) records.push(['uid', Buffer.from(String(h.uid))]);
  if (h.gid > MAX_OCTAL_8) records.push(['gid', Buffer.from(String(h.gid))]);
  for (const x of h.xattrs) records.push([`SCHILY.xattr.${x.name}`, x.value]);
  if (records.length === 0) return undefined;
  records.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  return Buffer.concat(records.map(([k, v]) => encodePaxRecord(k, v)));
}

/**
 * Writes the ustar block of `h` with its checksum. The checksum is the sum of the bytes written
 * (the checksum field counted as spaces), gathered field by field instead of re-reading the block.
 */
function writeUstar(block: Buffer, offset: number, h: TarHeader, typeflag: number): void {
  block.fill(0, offset, offset + BLOCK);
  let sum = CHECKSUM_SPACES + MAGIC_SUM + typeflag;
  sum += writeString(block, offset, 100, h.name);
  sum += writeOctal(block, offset + 100, 8, h.mode & 0o7777);
  sum += writeOctal(block, offset + 108, 8, Math.min(h.uid, MAX_OCTAL_8));
  sum += writeOctal(block, offset + 116, 8, Math.min(h.gid, MAX_OCTAL_8));
  sum += writeOctal(block, offset + 124, 12, h.size > MAX_OCTAL_12 ? 0 : h.size);
  sum += writeOctal(block, offset + 136, 12, Math.max(0, Math.min(h.mtime, MAX_OCTAL_12)));
  block[offset + 156] = typeflag;
  sum += writeString(block, offset + 157, 100, h.linkname);
  USTAR_MAGIC.copy(block, offset + 257);
  sum += writeOctal(block, offset + 329, 8, h.devmajor);
  sum += writeOctal(block, offset + 337, 8, h.devminor);
  writeOctal(block, offset + 148, 7, sum);
  block[offset + 155] = 0x20;
}

/** Bytes {@link writeHeader} will write for `h` (512, or more when a PAX header is needed). */
export function measureHeader(h: TarHeader): number {
  if (!needsPax(h)) return BLOCK;
  const pax = buildPaxRecords(h);
  return pax === undefined ? BLOCK : 2 * BLOCK + roundToBlock(pax.length);
}

/**
 * Encodes `h` (plus a preceding deterministic PAX `x` entry when names, sizes, ids or xattrs need one)
 * into `out` at `offset`; `out` must have {@link measureHeader} bytes free. Returns bytes written.
 * Fixed fields only: no atime/ctime, empty uname/gname, integer mtime.
 */
export function writeHeader(h: TarHeader, out: Buffer, offset: number): number {
  const pax = buildPaxRecords(h);
  let at = offset;
  if (pax !== undefined) {
    const base = h.name.replace(/\/+$/, '').split('/').pop() ?? '';
    const paxName = Buffer.from(`PaxHeaders.0/${base}`, 'utf8').subarray(0, 100).toString('utf8').replace(/\uFFFD+$/, '');
    writeUstar(out, at, { ...h, name: paxName, mode: 0o644, uid: 0, gid: 0, size: pax.length, linkname: '', devmajor: 0, devminor: 0, xattrs: [] }, 0x78);
    at += BLOCK;
    pax.copy(out, at);
    out.fill(0, at + pax.length, at + roundToBlock(pax.length));
    at += roundToBlock(pax.length);
  }
  writeUstar(out, at, h, TYPE_FLAG[h.type]);
  return at + BLOCK - offset;
}

/** Returns `h` encoded as a new buffer (see {@link writeHeader}). */
export function encodeHeader(h: TarHeader): Buffer {
  const out = Buffer.alloc(measureHeader(h));
  writeHeader(h, out, 0);
  return out;
}

function makeBadHeaderError(message: string): TsbuildError {
  return new TsbuildError('LAYER_BAD_HEADER', message, { hint: 'the layer tar is malformed or not a tar archive' });
}

/** Parses a numeric header field (octal, or GNU base-256); throws LAYER_BAD_HEADER when invalid or unsafe. */
export function parseNumeric(block: Buffer, offset: number, width: number, field: string): number {
  const first = block[offset] as number;
  if (first & 0x80) {
    if (first !== 0x80) throw makeBadHeaderError(`negative or oversized base-256 ${field} in a tar header`);
    let value = 0;
    for (let i = offset + 1; i < offset + width; i++) {
      value = value * 256 + (block[i] as number);
      if (value > Number.MAX_SAFE_INTEGER) throw makeBadHeaderError(`tar header ${field} is too large`);
    }
    return value;
  }
  let end = offset + width;
  let start = offset;
  while (start < end && (block[start] === 0x20 || block[start] === 0)) start++;
  while (end > start && (block[end - 1] === 0x20 || block[end - 1] === 0)) end--;
  if (start === end) return 0;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = block[i] as number;
    if (c < 0x30 || c > 0x37) throw makeBadHeaderError(`invalid octal ${field} in a tar header`);
    value = value * 8 + (c - 0x30);
  }
  if (value > Number.MAX_SAFE_INTEGER) throw makeBadHeaderError(`tar header ${field} is too large`);
  return value;
}

/** Reads a NUL-terminated string field as UTF-8. */
export function parseString(block: Buffer, offset: number, width: number): string {
  const end = block.indexOf(0, offset);
  return block.toString('utf8', offset, end === -1 || end > offset + width ? offset + width : end);
}

/** True when the block is all zeros (end-of-archive marker). */
export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** Verifies the header checksum (unsigned or historic signed sum); throws LAYER_BAD_HEADER on mismatch. */
export function verifyChecksum(block: Buffer): void {
  const stored = parseNumeric(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  if (stored !== unsigned && stored !== signed) throw makeBadHeaderError('tar header checksum mismatch');
}

/** Decoded PAX records: string fields plus raw xattr values. */
export interface PaxRecords {
  readonly fields: Map<string, string>;
  readonly xattrs: TarXattr[];
}

/** Decodes a PAX extended header body; throws LAYER_BAD_HEADER on malformed records. */
export function decodePax(buf: Buffer): PaxRecords {
  const fields = new Map<string, string>();
  const xattrs: TarXattr[] = [];
  let at = 0;
  while (at < buf.length) {
    if (buf[at] === 0) break;
    const space = buf.indexOf(0x20, at);
    if (space === -1 || space - at > 20) throw makeBadHeaderError('malformed PAX record length');
    const len = Number(buf.toString('ascii', at, space));
    if (!Number.isSafeInteger(len) || len <= space - at + 1 || at + len > buf.length || buf[at + len - 1] !== 0x0a) throw makeBadHeaderError('malformed PAX record');
    const eq = buf.indexOf(0x3d, space + 1);
    if (eq === -1 || eq >= at + len - 1) throw makeBadHeaderError('PAX record without "="');
    const key = buf.toString('utf8', space + 1, eq);
    const value = buf.subarray(eq + 1, at + len - 1);
    if (key.startsWith('SCHILY.xattr.')) xattrs.push({ name: key.slice('SCHILY.xattr.'.length), value: Buffer.from(value) });
    else fields.set(key, value.toString('utf8'));
    at += len;
  }
  return { fields, xattrs };
}

/** Maps a typeflag byte to an entry type, or returns the raw flag character for meta/unknown entries. */
export function decodeTypeFlag(flag: number): EntryType | string {
  switch (flag) {
    case 0: case 0x30: case 0x37: return 'file';
    case 0x31: return 'link';
    case 0x32: return 'symlink';
    case 0x33: return 'char';
    case 0x34: return 'block';
    case 0x35: return 'directory';
    case 0x36: return 'fifo';
    default: return String.fromCharCode(flag);
  }
}
