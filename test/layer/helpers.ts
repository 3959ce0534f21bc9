import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { readXattrs, splitDev } from '../../src/sys/index.js';
import { BLOCK, encodeHeader, roundToBlock, type EntryType, type TarHeader } from '../../src/layer/tar-header.js';

/** One entry of a hand-made tar (content given inline). */
export interface RawEntry {
  readonly name: string;
  readonly type?: EntryType;
  readonly content?: string | Buffer;
  readonly linkname?: string;
  readonly mode?: number;
  /** Header size field override (content is written as given, so this can lie). */
  readonly size?: number;
  readonly xattrs?: ReadonlyArray<{ name: string; value: Buffer }>;
  readonly uid?: number;
  readonly gid?: number;
  readonly mtime?: number;
}

/** Builds a tar in memory from raw entries, without any validation (for hostile fixtures). */
export function buildTar(entries: readonly RawEntry[], options: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const content = typeof e.content === 'string' ? Buffer.from(e.content) : e.content ?? Buffer.alloc(0);
    const h: TarHeader = {
      name: e.name, type: e.type ?? 'file', mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0,
      size: e.size ?? content.length, mtime: e.mtime ?? 1_000_000, linkname: e.linkname ?? '', devmajor: 0, devminor: 0, xattrs: e.xattrs ?? [],
    };
    parts.push(encodeHeader(h), content, Buffer.alloc(roundToBlock(content.length) - content.length));
  }
  if (options.end !== false) parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** A readable over a buffer in small chunks (to exercise chunk boundaries). */
export function streamOf(buf: Buffer, chunk = 700): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) chunks.push(buf.subarray(i, i + chunk));
  return Readable.from(chunks, { objectMode: false });
}

/** Collects a stream into one buffer (tests only; small data). */
export async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** A comparable description of every entry below `root` (mtimes in whole seconds, hardlinks grouped). */
export function describeTree(root: string, options: { mtimes?: boolean; owners?: boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const inodes = new Map<string, string>();
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(abs);
      const fields: string[] = [(st.mode & 0o170000).toString(8), (st.mode & 0o7777).toString(8)];
      if (options.owners !== false) fields.push(`${st.uid}:${st.gid}`);
      if (options.mtimes !== false && !st.isDirectory()) fields.push(`t=${Math.floor(st.mtimeMs / 1000)}`);
      if (options.mtimes !== false && st.isDirectory()) fields.push(`t=${Math.floor(st.mtimeMs / 1000)}`);
      if (st.isFile()) {
        fields.push(createHash('sha256').update(readFileSync(abs)).digest('hex').slice(0, 16));
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          if (!inodes.has(key)) inodes.set(key, r);
          fields.push(`inode=${inodes.get(key)}`);
        }
      }
      if (st.isSymbolicLink()) fields.push(`-> ${readlinkSync(abs)}`);
      if (st.isCharacterDevice() || st.isBlockDevice()) fields.push(JSON.stringify(splitDev(st.rdev)));
      const xattrs = readXattrs(abs);
      if (xattrs.length > 0) fields.push(xattrs.map((x) => `${x.name}=${x.value.toString('hex')}`).join(','));
      out[r] = fields.join(' ');
      if (st.isDirectory()) walk(abs, r);
    }
  };
  walk(root, '');
  return out;
}
