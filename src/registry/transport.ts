import type { Readable } from 'node:stream';
import { TsbuildError } from '../core/index.js';
import { basicAuthorization, parseChallenge, tokenFromResponse, type AuthChallenge, type CachedToken, type TokenResponse } from './auth.js';
import type { Credentials } from './credentials.js';
import { isRetryableNetError, MAX_ERROR_BODY, netCodeOf, networkError, redact, responseError } from './errors.js';
import { hasExplicitPort, isLoopbackHost, isPlainHttpAllowed } from './hosts.js';
import { drainBody, HttpPool, readBodyText, type HttpAnswer } from './http.js';
import { TokenCache } from './token-cache.js';

/** How long the plain-HTTP probe of a loopback registry waits for an answer. */
const PLAIN_HTTP_PROBE_MS = 3000;

/** Options of a {@link RegistryTransport}; every field has a default. */
export interface TransportOptions {
  /** Credentials per API host (resolved lazily, once per host). */
  readonly credentials?: (host: string) => Promise<Credentials | undefined>;
  /** Hosts (`host` or `host:port`) that may be spoken to over plain HTTP. */
  readonly insecureRegistries?: readonly string[];
  /** Docker's per-registry CA directory (default `/etc/docker/certs.d`): `<dir>/<host>/*.crt`. */
  readonly certsDir?: string;
  /** Extra CA files (PEM) trusted for every registry (`--tls-ca`). */
  readonly caFiles?: readonly string[];
  /** The file of NODE_EXTRA_CA_CERTS (deferred by bin/tsbuild.js), trusted for every registry; ignored when unreadable. */
  readonly nodeExtraCaFile?: string;
  /** Attempts after the first one on 429/5xx/resets (default 4). */
  readonly retries?: number;
  /** First backoff delay in ms (default 250; doubled per attempt, plus jitter). */
  readonly retryBaseMs?: number;
  /** Longest wait honoured from Retry-After (default 30 s). */
  readonly maxRetryAfterMs?: number;
  readonly connectTimeoutMs?: number;
  /** Longest silence while waiting for headers or body bytes (default 60 s). */
  readonly idleTimeoutMs?: number;
  /** Debug trace; lines never contain secrets. */
  readonly log?: (line: string) => void;
  readonly userAgent?: string;
}

/** One request to a registry. */
export interface RegistryRequest {
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** API host (`registry-1.docker.io`, `127.0.0.1:5000`). */
  readonly host: string;
  /** Path and query below the host (`/v2/...`), or an absolute URL (upload locations). */
  readonly path: string;
  /** Token scopes this request needs (`repository:a/b:pull`). */
  readonly scopes: readonly string[];
  readonly headers?: Readonly<Record<string, string>>;
  /** A body factory, called again for each attempt. */
  readonly body?: () => Promise<Readable | Buffer | string> | Readable | Buffer | string;
  /** Retry on 429/5xx/resets (default true; false for requests that are not idempotent). */
  readonly retry?: boolean;
  /** Follow redirects (GET/HEAD only). */
  readonly followRedirects?: boolean;
  readonly signal?: AbortSignal;
}

/** A response; the caller consumes or dumps `body`. */
export interface RegistryResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Every value of each header, unjoined. */
  readonly headersDistinct: Readonly<Record<string, string[] | undefined>>;
  readonly body: Readable;
  /** The final URL (after redirects). */
  readonly url: URL;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
/** Largest token-server answer read. */
const TOKEN_BODY_LIMIT = 1024 * 1024;

/** Reads one header value (the first when repeated). */
export function headerOf(res: Pick<RegistryResponse, 'headers'>, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Discards a response body (keeping its connection when the body is small); never throws. */
export async function dumpBody(res: Pick<RegistryResponse, 'body'>): Promise<void> {
  await drainBody(res.body);
}

/** Reads a small response body as text (at most {@link MAX_ERROR_BODY} bytes, the rest discarded). */
export async function readSmallBody(res: RegistryResponse): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of res.body) {
      const b = chunk as Buffer;
      if (n < MAX_ERROR_BODY) chunks.push(b.subarray(0, MAX_ERROR_BODY - n));
      n += b.length;
    }
  } catch {
    // a broken error body still gives the status
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Throws the `REG_*` error of a failed response (reads its error body). */
export async function failResponse(res: RegistryResponse, what: string): Promise<never> {
  throw responseError(what, res.status, await readSmallBody(res));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) return reject(abortError());
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function abortError(): TsbuildError {
  return new TsbuildError('REG_ABORTED', 'the transfer was interrupted');
}

/** The wait before retry `attempt` (0-based): Retry-After when given, else exponential backoff with full jitter. */
export function retryDelay(attempt: number, baseMs: number, retryAfter: string | undefined, maxRetryAfterMs: number): number {
  if (retryAfter !== undefined) {
    const secs = Number(retryAfter);
    const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(retryAfter) - Date.now();
    if (Number.isFinite(ms) && ms >= 0) return Math.min(ms, maxRetryAfterMs);
  }
  const cap = baseMs * 2 ** attempt;
  return cap / 2 + Math.random() * (cap / 2);
}

/**
 * HTTP to registries over node:http/node:https with keep-alive: scheme choice (HTTPS; HTTP only
 * for loopback and insecure hosts), per-host CAs, Bearer/Basic auth with an in-memory per-scope
 * token cache, retries, redirects. One instance per command; {@link close} releases the connections.
 */
export class RegistryTransport {
  private readonly http: HttpPool;
  private readonly schemes = new Map<string, Promise<'https' | 'http'>>();
  private readonly challenges = new Map<string, AuthChallenge>();
  private readonly tokens = new TokenCache();
  private readonly creds = new Map<string, Promise<Credentials | undefined>>();
  private readonly o: Required<Omit<TransportOptions, 'credentials' | 'log' | 'nodeExtraCaFile'>> & Pick<TransportOptions, 'credentials' | 'log' | 'nodeExtraCaFile'>;

  constructor(options: TransportOptions = {}) {
    this.o = {
      insecureRegistries: [], certsDir: '/etc/docker/certs.d', caFiles: [], retries: 4, retryBaseMs: 250, maxRetryAfterMs: 30_000,
      connectTimeoutMs: 30_000, idleTimeoutMs: 60_000, userAgent: 'tsbuild/0.1', ...options,
    };
    this.http = new HttpPool({ certsDir: this.o.certsDir, caFiles: this.o.caFiles, ...(this.o.nodeExtraCaFile === undefined ? {} : { nodeExtraCaFile: this.o.nodeExtraCaFile }), connectTimeoutMs: this.o.connectTimeoutMs, idleTimeoutMs: this.o.idleTimeoutMs });
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    this.http.close();
  }

  private log(line: string): void {
    this.o.log?.(redact(line));
  }

  /** The credentials of `host` (looked up once). */
  credentialsOf(host: string): Promise<Credentials | undefined> {
    let p = this.creds.get(host);
    if (p === undefined) {
      p = this.o.credentials === undefined ? Promise.resolve(undefined) : this.o.credentials(host);
      this.creds.set(host, p);
    }
    return p;
  }

  /**
   * `https` unless plain HTTP is allowed for `host` and HTTPS does not answer there (docker's fallback).
   * A loopback host with an explicit port is asked over plain HTTP first (the same socket either way;
   * without a port, HTTP would ask :80 and HTTPS :443, two different servers): a registry answering `/v2/` there (200, 401, 403)
   * is used so, without a TLS attempt (TLS set-up, loading the roots and node:tls cost ~40 ms of CPU,
   * most of a no-op push or pull); anything else (a TLS server's 400, no answer) goes on as below.
   * The probe carries no credentials and never leaves the machine.
   */
  schemeOf(host: string, signal?: AbortSignal): Promise<'https' | 'http'> {
    let p = this.schemes.get(host);
    if (p === undefined) {
      p = (async () => {
        if (!isPlainHttpAllowed(host, this.o.insecureRegistries)) return 'https' as const;
        if (isLoopbackHost(host) && hasExplicitPort(host) && await this.answersPlainHttp(host, signal)) return 'http' as const;
        try {
          const res = await this.http.send(new URL(`https://${host}/v2/`), { method: 'GET', headers: { 'user-agent': this.o.userAgent }, ...(signal === undefined ? {} : { signal }) });
          await drainBody(res.body);
          return 'https' as const;
        } catch (err) {
          // A certificate problem means the host speaks TLS: stay on HTTPS so the TLS error shows.
          if (/certificate|self.signed|CERT_|unable to verify/i.test(`${netCodeOf(err) ?? ''} ${(err as Error).message}`)) return 'https' as const;
          this.log(`https://${host}/v2/ does not answer; using plain HTTP (allowed for ${host})`);
          return 'http' as const;
        }
      })();
      this.schemes.set(host, p);
      // A probe ended by the caller's signal decides nothing: the next request probes again.
      const probe = p;
      probe.catch(() => {
        if (this.schemes.get(host) === probe) this.schemes.delete(host);
      });
    }
    return p;
  }

  /**
   * Whether a registry answers `GET http://host/v2/` (200, 401 or 403); false on any error, and after
   * 3 s without an answer (a TLS server that waits for a handshake): the HTTPS probe follows then.
   */
  private async answersPlainHttp(host: string, signal?: AbortSignal): Promise<boolean> {
    const timeout = AbortSignal.timeout(PLAIN_HTTP_PROBE_MS);
    try {
      const res = await this.http.send(new URL(`http://${host}/v2/`), { method: 'GET', headers: { 'user-agent': this.o.userAgent }, signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]) });
      await drainBody(res.body);
      return (res.status >= 200 && res.status < 300) || res.status === 401 || res.status === 403;
    } catch {
      signal?.throwIfAborted();
      return false;
    }
  }

  /**
   * The Authorization header for a request to `host` needing `scopes`, from the known challenge;
   * `cached` is the bearer token when it came from the cache (it may be stale).
   */
  private async authorization(host: string, scopes: readonly string[], signal?: AbortSignal): Promise<{ header: string; cached?: string } | undefined> {
    const ch = this.challenges.get(host);
    if (ch === undefined) return undefined;
    const creds = await this.credentialsOf(host);
    if (ch.scheme === 'basic') return creds?.username !== undefined ? { header: basicAuthorization(creds) } : undefined;
    const cached = this.tokens.find(ch, scopes, Date.now());
    if (cached !== undefined) return { header: `Bearer ${cached.token}`, cached: cached.token };
    const token = await this.fetchToken(host, ch, scopes, creds, signal);
    this.tokens.add(ch, scopes, token);
    return { header: `Bearer ${token.token}` };
  }

  /** Gets a token from the challenge's realm (GET with Basic auth, or POST with a refresh token). */
  private async fetchToken(host: string, ch: AuthChallenge, scopes: readonly string[], creds: Credentials | undefined, signal?: AbortSignal): Promise<CachedToken> {
    if (ch.realm === undefined) throw new TsbuildError('REG_BAD_CHALLENGE', `registry ${host} asked for a bearer token without naming a realm`);
    let realm: URL;
    try {
      realm = new URL(ch.realm);
    } catch {
      throw new TsbuildError('REG_BAD_CHALLENGE', `registry ${host} named an invalid token realm`);
    }
    // SECURITY: credentials go to a token server over plain HTTP only where the registry itself may use it.
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && isPlainHttpAllowed(realm.host, this.o.insecureRegistries))) {
      throw new TsbuildError('REG_BAD_CHALLENGE', `refusing the token realm ${realm.origin} of ${host}: not HTTPS`, { hint: `use --insecure-registry ${realm.host} if that is intended` });
    }
    const headers: Record<string, string> = { 'user-agent': this.o.userAgent };
    let method: 'GET' | 'POST' = 'GET';
    let body: string | undefined;
    const url = new URL(realm);
    if (creds?.identityToken !== undefined) {
      method = 'POST';
      const form = new URLSearchParams({ grant_type: 'refresh_token', client_id: 'tsbuild', refresh_token: creds.identityToken });
      if (ch.service !== undefined) form.set('service', ch.service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      body = form.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = String(Buffer.byteLength(body));
    } else {
      if (ch.service !== undefined) url.searchParams.set('service', ch.service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (creds?.username !== undefined) {
        headers.authorization = basicAuthorization(creds);
        url.searchParams.set('account', creds.username);
      }
    }
    this.log(`token ${method} ${url.origin}${url.pathname} scopes=${scopes.join(' ')}`);
    let status: number;
    let text: string;
    try {
      const res = await this.http.send(url, { method, headers, ...(body === undefined ? {} : { body }), ...(signal === undefined ? {} : { signal }) });
      status = res.status;
      text = await readBodyText(res.body, TOKEN_BODY_LIMIT, `getting a token from ${url.origin}`);
    } catch (err) {
      if (err instanceof TsbuildError) throw err;
      throw networkError(url.host, `getting a token from ${url.origin}`, err);
    }
    if (status !== 200) {
      throw responseError(`authentication at ${url.origin}${url.pathname} for ${host}`, status === 403 ? 403 : status === 400 ? 401 : status, text);
    }
    try {
      return tokenFromResponse(JSON.parse(text) as TokenResponse, Date.now());
    } catch (err) {
      if (err instanceof TsbuildError) throw err;
      throw new TsbuildError('REG_BAD_TOKEN', `the token server ${url.origin} answered something that is not JSON`);
    }
  }

  /**
   * Sends `req` with auth, retries (on 429, 5xx and connection resets, with backoff) and redirects.
   * Resolves to the final response whatever its status (the caller checks it). Throws
   * `REG_UNREACHABLE`, `REG_TLS`, `REG_TIMEOUT`, `REG_NETWORK`, `REG_TOO_MANY_REDIRECTS`, `REG_ABORTED`.
   */
  async send(req: RegistryRequest): Promise<RegistryResponse> {
    const retries = req.retry === false ? 0 : this.o.retries;
    let authRetried = false;
    for (let attempt = 0; ; attempt++) {
      let res: RegistryResponse & { cachedToken: string | undefined };
      try {
        res = await this.sendOnce(req);
      } catch (err) {
        if (req.signal?.aborted === true) throw abortError();
        if (attempt < retries && isRetryableNetError(err)) {
          const wait = retryDelay(attempt, this.o.retryBaseMs, undefined, this.o.maxRetryAfterMs);
          this.log(`${req.method} ${req.path}: ${(err as Error).message}; retry in ${Math.round(wait)} ms`);
          await sleep(wait, req.signal);
          continue;
        }
        throw networkError(req.host, `${req.method} ${req.path.split('?')[0] ?? ''}`, err);
      }
      // A 401 is answered once by authenticating; again whenever the token used came from the cache (it may have expired or been revoked).
      if (res.status === 401 && (!authRetried || res.cachedToken !== undefined)) {
        const ch = parseChallenge(res.headersDistinct['www-authenticate']);
        if (ch !== undefined) {
          authRetried = true;
          this.challenges.set(req.host, ch);
          // A 401 with a cached token means it expired or lacks scope: drop it and ask again.
          if (res.cachedToken !== undefined) this.tokens.drop(res.cachedToken);
          const creds = await this.credentialsOf(req.host);
          if (ch.scheme === 'bearer' || creds?.username !== undefined) {
            await dumpBody(res);
            attempt--;
            continue;
          }
        }
      }
      if ((res.status === 429 || res.status >= 500) && attempt < retries) {
        const wait = retryDelay(attempt, this.o.retryBaseMs, headerOf(res, 'retry-after'), this.o.maxRetryAfterMs);
        this.log(`${req.method} ${req.path.split('?')[0] ?? ''}: ${res.status}; retry in ${Math.round(wait)} ms`);
        await dumpBody(res);
        await sleep(wait, req.signal);
        continue;
      }
      return res;
    }
  }

  /** One attempt, following redirects. */
  private async sendOnce(req: RegistryRequest): Promise<RegistryResponse & { cachedToken: string | undefined }> {
    const scheme = await this.schemeOf(req.host, req.signal);
    let url = /^https?:\/\//.test(req.path) ? new URL(req.path) : new URL(`${scheme}://${req.host}${req.path}`);
    if (url.protocol === 'http:' && !isPlainHttpAllowed(url.host, this.o.insecureRegistries)) {
      throw new TsbuildError('REG_INSECURE', `refusing plain HTTP to ${url.host}`, { hint: `use --insecure-registry ${url.host} if that is intended` });
    }
    const origin = url.origin;
    let method: string = req.method;
    let cachedToken: string | undefined;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': this.o.userAgent, ...req.headers };
      // SECURITY: the Authorization header goes only to the registry's own origin, never to a redirect target elsewhere.
      if (url.origin === origin) {
        const auth = await this.authorization(req.host, req.scopes, req.signal);
        if (auth !== undefined) headers.authorization = auth.header;
        cachedToken = auth?.cached;
      }
      const body = hop === 0 && req.body !== undefined ? await req.body() : undefined;
      this.log(`${method} ${url.origin}${url.pathname}`);
      let r: HttpAnswer;
      try {
        r = await this.http.send(url, { method, headers, ...(body === undefined ? {} : { body }), ...(req.signal === undefined ? {} : { signal: req.signal }) });
      } catch (err) {
        if (body !== undefined && typeof body === 'object' && !Buffer.isBuffer(body)) body.destroy();
        throw err;
      }
      const res = { status: r.status, headers: r.headers, headersDistinct: r.headersDistinct, body: r.body, url, cachedToken };
      this.log(`  -> ${r.status}`);
      const location = headerOf(res, 'location');
      if (req.followRedirects !== true || !REDIRECTS.has(r.status) || location === undefined) return res;
      await dumpBody(res);
      if (hop >= MAX_REDIRECTS) throw new TsbuildError('REG_TOO_MANY_REDIRECTS', `${req.method} ${req.path.split('?')[0] ?? ''}: more than ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, url);
      if (next.protocol === 'http:' && url.protocol === 'https:' && !isPlainHttpAllowed(next.host, this.o.insecureRegistries)) {
        throw new TsbuildError('REG_INSECURE', `refusing a redirect from HTTPS to plain HTTP (${next.host})`);
      }
      url = next;
      if (r.status === 303) method = 'GET';
    }
  }
}
