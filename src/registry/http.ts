import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { TsbuildError } from '../core/index.js';
import { readExtraCaFile, withNodeRoots } from '../sys/index.js';

/** Options of an {@link HttpPool}. */
export interface HttpPoolOptions {
  /** Docker's per-registry CA directory: `<certsDir>/<host>/*.crt`. */
  readonly certsDir: string;
  /** Extra CA files (PEM) trusted for every registry. */
  readonly caFiles: readonly string[];
  /**
   * NODE_EXTRA_CA_CERTS, which bin/tsbuild.js defers (src/sys/node-ca.ts): trusted for every registry
   * beside Node's roots; ignored when it cannot be read, as Node ignores it.
   */
  readonly nodeExtraCaFile?: string;
  /** Longest wait for a TCP (and TLS) connection. */
  readonly connectTimeoutMs: number;
  /** Longest silence while waiting for response headers or body bytes. */
  readonly idleTimeoutMs: number;
}

/** One HTTP exchange to send. */
export interface HttpExchange {
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Readable | Buffer | string;
  readonly signal?: AbortSignal;
}

/** The answer of an exchange: status, headers (lower-case names) and the body stream to consume or dump. */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Every value of each header, unjoined (`WWW-Authenticate` may come several times). */
  readonly headersDistinct: Readonly<Record<string, string[] | undefined>>;
  readonly body: Readable;
}

/** Sockets kept per origin (as many parallel transfers as make sense). */
const MAX_SOCKETS = 16;
/** How long an idle keep-alive socket is kept. */
const KEEP_ALIVE_MS = 30_000;
/** Bytes of a body {@link drainBody} reads before it gives up the connection instead. */
const DRAIN_LIMIT = 256 * 1024;

/** A network error with a code of its own (timeouts of this client). */
function codedError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * HTTP/1.1 exchanges over node:http / node:https with keep-alive agents (one per HTTPS host, so
 * each gets its own CA list; one for plain HTTP), connect and idle timeouts, abort signals.
 * node:https (TLS) is loaded on the first HTTPS exchange only. {@link close} drops the sockets.
 */
export class HttpPool {
  private readonly agents = new Map<string, Promise<HttpAgent | HttpsAgent>>();
  private httpsModule: Promise<typeof import('node:https')> | undefined;

  constructor(private readonly o: HttpPoolOptions) {}

  /** Destroys every socket (idle or not). */
  close(): void {
    for (const a of this.agents.values()) void a.then((agent) => agent.destroy(), () => undefined);
    this.agents.clear();
  }

  private https(): Promise<typeof import('node:https')> {
    this.httpsModule ??= import('node:https');
    return this.httpsModule;
  }

  private agentFor(url: URL): Promise<HttpAgent | HttpsAgent> {
    const key = url.protocol === 'https:' ? url.host : 'http';
    let agent = this.agents.get(key);
    if (agent === undefined) {
      agent = url.protocol === 'https:'
        ? Promise.all([this.caFor(url.host), this.https()]).then(([ca, https]) => new https.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, timeout: KEEP_ALIVE_MS, ...(ca === undefined ? {} : { ca }) }))
        : Promise.resolve(new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS, timeout: KEEP_ALIVE_MS }));
      this.agents.set(key, agent);
      // A failed CA read is reported by this exchange and retried by the next.
      agent.catch(() => this.agents.delete(key));
    }
    return agent;
  }

  /** Node's CAs plus `certsDir/<host>/*.crt`, NODE_EXTRA_CA_CERTS's file and the `caFiles`; undefined when there are no extras. */
  private async caFor(host: string): Promise<string[] | undefined> {
    const extra: string[] = [];
    const dir = join(this.o.certsDir, host);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names.filter((x) => x.endsWith('.crt')).sort()) extra.push(await readFile(join(dir, n), 'utf8'));
    const nodeExtra = await readExtraCaFile(this.o.nodeExtraCaFile);
    if (nodeExtra !== undefined) extra.push(nodeExtra);
    for (const f of this.o.caFiles) {
      extra.push(await readFile(f, 'utf8').catch((err: unknown) => {
        throw new TsbuildError('REG_TLS', `cannot read CA file ${f}: ${(err as Error).message}`, { cause: err });
      }));
    }
    return withNodeRoots(extra);
  }

  /**
   * Sends one request and resolves once the response headers are in. Rejects with Node's network
   * errors (`ECONNREFUSED`, `ECONNRESET`, TLS codes...), `CONNECT_TIMEOUT` or `HEADERS_TIMEOUT`;
   * the body stream errors with `BODY_TIMEOUT` when it goes silent for the idle timeout.
   */
  async send(url: URL, x: HttpExchange): Promise<HttpAnswer> {
    const agent = await this.agentFor(url);
    const request = url.protocol === 'https:' ? (await this.https()).request : httpRequest;
    return new Promise<HttpAnswer>((resolve, reject) => {
      const req = request(url, { method: x.method, headers: x.headers as OutgoingHttpHeaders, agent, ...(x.signal === undefined ? {} : { signal: x.signal }) });
      let response: IncomingMessage | undefined;
      let done = false;
      req.once('socket', (socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(() => req.destroy(codedError('CONNECT_TIMEOUT', `connecting to ${url.host} timed out after ${this.o.connectTimeoutMs} ms`)), this.o.connectTimeoutMs);
        const clear = (): void => clearTimeout(timer);
        socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', clear);
        socket.once('close', clear);
      });
      req.setTimeout(this.o.idleTimeoutMs, () => {
        if (done) return;
        const silent = `no data from ${url.host} for ${this.o.idleTimeoutMs} ms`;
        if (response === undefined) req.destroy(codedError('HEADERS_TIMEOUT', silent));
        else response.destroy(codedError('BODY_TIMEOUT', silent));
      });
      req.once('error', (err) => {
        done = true;
        reject(err);
      });
      req.once('response', (res) => {
        response = res;
        const finish = (): void => {
          done = true;
        };
        res.once('end', finish);
        res.once('close', finish);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, headersDistinct: res.headersDistinct, body: res });
      });
      const body = x.body;
      if (body === undefined) req.end();
      else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
      // A failing body (or request) destroys both; the request's error rejects above.
      else pipeline(body, req).catch((err: unknown) => req.destroy(err as Error));
    });
  }
}

/**
 * Discards the rest of a body so its connection can be reused; a body larger than 256 KiB is
 * destroyed instead (the connection is dropped). Never throws.
 */
export async function drainBody(body: Readable): Promise<void> {
  if (body.readableEnded || body.destroyed) return;
  await new Promise<void>((resolve) => {
    let n = 0;
    body.on('data', (chunk: Buffer) => {
      n += chunk.length;
      if (n > DRAIN_LIMIT) {
        body.destroy();
        resolve();
      }
    });
    body.once('end', resolve);
    body.once('close', resolve);
    body.once('error', () => resolve());
  });
}

/** Reads a whole body of at most `limit` bytes as text. Throws `REG_BAD_RESPONSE` beyond (and drops the rest). */
export async function readBodyText(body: Readable, limit: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    n += (chunk as Buffer).length;
    if (n > limit) {
      body.destroy();
      throw new TsbuildError('REG_BAD_RESPONSE', `${what}: the answer is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
