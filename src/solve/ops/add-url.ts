import { createHash } from 'node:crypto';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TsbuildError, type Digest, type SourceLocation } from '../../core/index.js';
import { readExtraCaFile, withNodeRoots } from '../../sys/index.js';
import { urlFileName } from './add-remote-kind.js';
import type { CopySource } from './copy.js';

/** A file downloaded for ADD, ready to copy. */
export interface DownloadedUrl {
  /** A one-file source named after the URL (mode 0600 as BuildKit, mtime from Last-Modified). */
  readonly source: CopySource;
  /** sha256 of the content. */
  readonly digest: Digest;
  /** Removes the downloaded file. */
  readonly cleanup: () => Promise<void>;
}

/** Options of {@link downloadUrl}. */
export interface DownloadOptions {
  readonly tmpDir: string;
  readonly signal: AbortSignal;
  /** `--checksum` (`sha256:…`, `sha384:…` or `sha512:…`): a mismatch fails the step. */
  readonly checksum?: string;
  /** The ADD's location, named in errors. */
  readonly loc?: SourceLocation;
  /** mtime (seconds) when the server sends no usable Last-Modified. */
  readonly fallbackMtime: number;
  /** A PEM file trusted beside Node's roots for https (NODE_EXTRA_CA_CERTS, deferred); ignored when unreadable, as Node does. */
  readonly extraCaFile?: string;
}

function fail(code: `SOLVE_${string}`, message: string, loc: SourceLocation | undefined, cause?: unknown, hint?: string): TsbuildError {
  return new TsbuildError(code, message, { ...(loc === undefined ? {} : { loc }), ...(cause === undefined ? {} : { cause }), ...(hint === undefined ? {} : { hint }) });
}

const MAX_REDIRECTS = 10;

/** Node's root CAs plus the PEM text of `file`; undefined (Node's defaults) without a readable file. */
async function trustedCas(file: string | undefined): Promise<string[] | undefined> {
  const pem = await readExtraCaFile(file);
  return withNodeRoots(pem === undefined ? [] : [pem]);
}

/** GETs `url`, following up to 10 redirects between http and https URLs; resolves with the final response. */
async function openUrl(url: string, signal: AbortSignal, extraCaFile: string | undefined): Promise<IncomingMessage> {
  let current = new URL(url);
  let ca: Promise<string[] | undefined> | undefined;
  for (let hop = 0; ; hop++) {
    const https = current.protocol === 'https:';
    const get = https ? httpsGet : httpGet;
    const tls = https ? await (ca ??= trustedCas(extraCaFile)) : undefined;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = get(current, { signal, headers: { 'user-agent': 'tsbuild', accept: '*/*' }, ...(tls === undefined ? {} : { ca: tls }) }, resolve);
      req.once('error', reject);
    });
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (status < 300 || status > 399 || location === undefined) return res;
    res.resume();
    if (hop >= MAX_REDIRECTS) throw new TsbuildError('SOLVE_ADD_DOWNLOAD', `more than ${MAX_REDIRECTS} redirects`);
    const next = new URL(location, current);
    // SECURITY: a redirect may only lead to another http(s) URL (never file: or anything else).
    if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new TsbuildError('SOLVE_ADD_DOWNLOAD', `redirect to a ${next.protocol} URL refused`);
    current = next;
  }
}

/**
 * Downloads an http(s) URL for ADD, streamed to a file under `tmpDir` while hashing (never held in
 * memory). Up to 10 redirects are followed (to http and https URLs only). Errors: SOLVE_ADD_DOWNLOAD (network,
 * HTTP status), SOLVE_ADD_CHECKSUM (content does not match `--checksum`), both naming the URL and
 * carrying the instruction's location.
 */
export async function downloadUrl(url: string, options: DownloadOptions): Promise<DownloadedUrl> {
  const { loc } = options;
  const dir = mkdtempSync(join(options.tmpDir, `add-url-${process.pid}-`));
  const cleanup = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
  };
  try {
    let res: IncomingMessage;
    try {
      res = await openUrl(url, options.signal, options.extraCaFile);
    } catch (e) {
      if (options.signal.aborted) throw e;
      if (e instanceof TsbuildError) throw fail('SOLVE_ADD_DOWNLOAD', `ADD ${url}: download failed: ${e.message}`, loc);
      const code = (e as NodeJS.ErrnoException).code;
      throw fail('SOLVE_ADD_DOWNLOAD', `ADD ${url}: download failed: ${code ?? (e as Error).message}`, loc, e);
    }
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      res.resume();
      throw fail('SOLVE_ADD_DOWNLOAD', `ADD ${url}: download failed: HTTP ${status} ${res.statusMessage ?? ''}`.trimEnd(), loc);
    }
    const sha256 = createHash('sha256');
    const algo = options.checksum?.slice(0, options.checksum.indexOf(':'));
    const extra = algo !== undefined && algo !== 'sha256' ? createHash(algo) : undefined;
    const file = join(dir, 'download');
    const hashing = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        sha256.update(chunk);
        extra?.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(res, hashing, createWriteStream(file, { mode: 0o600 }), { signal: options.signal });
    } catch (e) {
      if (options.signal.aborted) throw e;
      throw fail('SOLVE_ADD_DOWNLOAD', `ADD ${url}: download failed: ${(e as Error).message}`, loc, e);
    }
    const digest = `sha256:${sha256.digest('hex')}` as Digest;
    const got = extra === undefined ? digest : `${algo}:${extra.digest('hex')}`;
    if (options.checksum !== undefined && got !== options.checksum) {
      throw fail('SOLVE_ADD_CHECKSUM', `ADD ${url}: checksum mismatch: expected ${options.checksum}, got ${got}`, loc, undefined, 'the file on the server changed, or --checksum is wrong');
    }
    const lastModified = Date.parse(res.headers['last-modified'] ?? '');
    const mtime = Number.isFinite(lastModified) ? Math.floor(lastModified / 1000) : options.fallbackMtime;
    return {
      source: { name: urlFileName(url), entries: [{ rel: '', type: 'file', hostPath: file, mode: 0o600, uid: 0, gid: 0, mtime }] },
      digest,
      cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
