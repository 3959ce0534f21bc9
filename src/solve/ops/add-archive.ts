import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { TsbuildError, type SourceLocation } from '../../core/index.js';
import { applyLayer, decompressFile, type CompressionTools } from '../../layer/index.js';
import type { HostTools } from './add-tools.js';
import type { CopySource, CopySources } from './copy.js';
import { hostTreeEntries } from './copy-host.js';

/** How a local ADD source file is compressed, by its first bytes (as Docker's DetectCompression). */
export type ArchiveCompression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

/** Detects gzip, bzip2, xz and zstd magic numbers; anything else is `none`. */
export function detectArchiveCompression(head: Buffer): ArchiveCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

/** True when `block` is a tar header with a valid checksum (what Go's tar reader accepts as a first entry). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  const field = block.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const want = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

function readHead(path: string, n: number): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const buf = Buffer.alloc(n);
    return buf.subarray(0, readSync(fd, buf, 0, n, 0));
  } catch (e) {
    throw new TsbuildError('SOLVE_IO', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Decompresses `path` through `tool -d -c` (its stdin is the file itself). */
function toolStream(tool: string, path: string, name: string): Readable {
  const gen = async function* (): AsyncGenerator<Buffer> {
    const fd = openSync(path, 'r');
    const child = spawn(tool, ['-d', '-c'], { stdio: [fd, 'pipe', 'pipe'] });
    let stderr = '';
    (child.stderr as Readable).on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', (cause) => reject(new TsbuildError('SOLVE_ADD_DECOMPRESS', `cannot run ${tool}: ${cause.message}`, { cause })));
      child.once('close', (status) => resolve(status));
    });
    exited.catch(() => undefined);
    let done = false;
    try {
      for await (const chunk of child.stdout as Readable) yield chunk as Buffer;
      const status = await exited;
      if (status !== 0) throw new TsbuildError('SOLVE_ADD_DECOMPRESS', `cannot decompress ${name}: ${tool} failed (exit ${status}): ${stderr.trim() || 'no message'}`);
      done = true;
    } finally {
      if (!done && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      closeSync(fd);
    }
  };
  return Readable.from(gen(), { objectMode: false });
}

/** The decompressed content of an archive candidate; SOLVE_ADD_TOOL_MISSING without bzip2/xz. */
function openDecompressed(path: string, name: string, kind: ArchiveCompression, tools: CompressionTools, host: HostTools): Readable {
  if (kind === 'bzip2' || kind === 'xz') {
    const tool = kind === 'bzip2' ? host.bzip2 : host.xz;
    if (tool === undefined) {
      throw new TsbuildError('SOLVE_ADD_TOOL_MISSING', `ADD ${name}: the file is ${kind}-compressed and the ${kind} program was not found on the PATH`, {
        hint: `install it (apt-get install ${kind === 'bzip2' ? 'bzip2' : 'xz-utils'}) or extract the archive before the build`,
      });
    }
    return toolStream(tool, path, name);
  }
  return decompressFile(path, { tools });
}

/** Reads the first `n` bytes of `stream`; returns them and a stream of everything (head included). */
async function peek(stream: Readable, n: number): Promise<{ head: Buffer; all: Readable }> {
  const it = stream[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < n) {
    const r = await it.next();
    if (r.done === true) {
      ended = true;
      break;
    }
    chunks.push(r.value as Buffer);
    have += (r.value as Buffer).length;
  }
  const head = Buffer.concat(chunks);
  const all = Readable.from(
    (async function* () {
      yield head;
      if (!ended) {
        for (;;) {
          const r = await it.next();
          if (r.done === true) return;
          yield r.value as Buffer;
        }
      }
    })(),
    { objectMode: false },
  );
  all.once('close', () => stream.destroy());
  return { head: head.subarray(0, n), all };
}

/** Options of {@link expandArchives}. */
export interface ExpandArchivesOptions {
  /** Where staging directories go (the store's tmp). */
  readonly tmpDir: string;
  readonly tools: CompressionTools;
  readonly hostTools: HostTools;
  readonly signal: AbortSignal;
  /** The ADD's location, attached to errors. */
  readonly loc?: SourceLocation;
}

/**
 * ADD of local files: every source file that is a tar archive (plain, gzip, bzip2, xz or zstd,
 * detected by content as Docker does) is extracted with the layer module's safe extractor into a
 * staging directory and becomes a directory source (its contents go into the destination).
 * Other files stay as they are. SECURITY: hostile members (absolute names, `..`, links out of the
 * archive) cannot leave the staging directory: applyLayer refuses or confines them. Returns the
 * new sources and a cleanup that removes the staging directories.
 */
export async function expandArchives(src: CopySources, options: ExpandArchivesOptions): Promise<{ sources: CopySources; cleanup: () => Promise<void> }> {
  const staged: string[] = [];
  const cleanup = async (): Promise<void> => {
    await Promise.all(staged.map((d) => rm(d, { recursive: true, force: true })));
  };
  const out: CopySource[] = [];
  try {
    for (const s of src.sources) {
      const root = s.entries[0];
      if (root?.type !== 'file' || s.entries.length !== 1) {
        out.push(s);
        continue;
      }
      const kind = detectArchiveCompression(readHead(root.hostPath, 6));
      if (kind === 'none' && !isTarHeader(readHead(root.hostPath, 512))) {
        out.push(s);
        continue;
      }
      const stream = openDecompressed(root.hostPath, s.name, kind, options.tools, options.hostTools);
      let head: Buffer;
      let all: Readable;
      try {
        ({ head, all } = await peek(stream, 512));
      } catch (e) {
        stream.destroy();
        if (e instanceof TsbuildError && e.code === 'SOLVE_ADD_TOOL_MISSING') throw e;
        out.push(s); // a compressed file that does not decompress is copied as it is (Docker)
        continue;
      }
      if (!isTarHeader(head)) {
        all.destroy();
        out.push(s); // compressed, but not a tar: copied as a file
        continue;
      }
      const dir = mkdtempSync(join(options.tmpDir, `add-${process.pid}-`));
      staged.push(dir);
      try {
        await applyLayer(all, join(dir, 'x'), { signal: options.signal });
      } catch (e) {
        const why = e instanceof TsbuildError ? e.message : String(e);
        throw new TsbuildError('SOLVE_ADD_EXTRACT', `ADD ${s.name}: cannot extract the archive: ${why}`, { cause: e, ...(options.loc === undefined ? {} : { loc: options.loc }) });
      }
      out.push({
        name: s.name,
        entries: hostTreeEntries(join(dir, 'x'), { rootMeta: { mode: 0o755, uid: 0, gid: 0 } }),
        ...(s.pivot === undefined ? {} : { pivot: s.pivot }),
      });
    }
  } catch (e) {
    await cleanup();
    throw e instanceof TsbuildError && e.loc === undefined && options.loc !== undefined ? new TsbuildError(e.code, e.message, { loc: options.loc, cause: e.cause, ...(e.hint === undefined ? {} : { hint: e.hint }) }) : e;
  }
  return { sources: { sources: out, wildcard: src.wildcard }, cleanup };
}
