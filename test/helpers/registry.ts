import type { ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSign, randomBytes, X509Certificate } from 'node:crypto';
import { access, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Debian's distribution registry binary. */
export const REGISTRY_BIN = '/usr/bin/docker-registry';

/** Why registry tests cannot run here, or undefined when they can. */
export async function registryMissing(): Promise<string | undefined> {
  for (const [bin, pkg] of [[REGISTRY_BIN, 'docker-registry'], ['/usr/bin/htpasswd', 'apache2-utils'], ['/usr/bin/openssl', 'openssl']] as const) {
    try {
      await access(bin);
    } catch {
      return `${bin} is missing (apt-get install ${pkg})`;
    }
  }
  return undefined;
}

/** Why skopeo interop tests cannot run here, or undefined. */
export async function skopeoMissing(): Promise<string | undefined> {
  try {
    await access('/usr/bin/skopeo');
    return undefined;
  } catch {
    return 'skopeo is not installed (apt-get install skopeo)';
  }
}

/** A free TCP port on 127.0.0.1 (bound and released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
    });
  });
}

/** A test user of the basic/token flavours: password and the actions granted per repository. */
export interface TestUser {
  readonly password: string;
  /** Actions granted on a repository (default: pull and push everywhere). */
  readonly grants?: (repository: string) => readonly string[];
}

/** Options of {@link startRegistry}. */
export interface RegistryOptions {
  /** `none`: open over HTTP; `basic`: htpasswd over TLS; `token`: Bearer tokens from a token server of the test. */
  readonly auth?: 'none' | 'basic' | 'token';
  readonly users?: Readonly<Record<string, TestUser>>;
  /** Actions anonymous token requests get (token flavour; default none). */
  readonly anonymousGrants?: (repository: string) => readonly string[];
  /** Token lifetime in seconds (default 300). */
  readonly tokenLifetime?: number;
  /** Seconds added to the `exp` claim of the n-th token (0-based), e.g. to issue one already expired. */
  readonly expShift?: (n: number) => number;
}

/** One token request the token server saw. */
export interface TokenRequest {
  readonly account: string | undefined;
  readonly scopes: readonly string[];
  readonly granted: readonly string[];
  readonly status: number;
}

/** A running registry (stopped by the test's teardown). */
export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  readonly host: string;
  readonly url: string;
  /** The CA file to trust (basic flavour, TLS). */
  readonly caFile: string | undefined;
  /** A directory with `ca.crt` (docker's certs.d layout, for --cert-dir / skopeo --*-cert-dir). */
  readonly certDir: string | undefined;
  readonly storageDir: string;
  readonly tokenRequests: TokenRequest[];
  /** Everything the registry logged so far (access log lines included). */
  logs(): string;
  stop(): Promise<void>;
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

/** A CA and a server certificate for 127.0.0.1 signed by it, written into `dir` (needs openssl). */
export async function makeTls(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=tsbuild test CA'], dir);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  await writeFile(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  await openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf'], dir);
  await mkdir(join(dir, 'certs'));
  await copyFile(join(dir, 'ca.crt'), join(dir, 'certs', 'ca.crt'));
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

/** A token server on 127.0.0.1 issuing RS256 JWTs (x5c header) with the scopes each user is granted. */
async function startTokenServer(dir: string, options: RegistryOptions, requests: TokenRequest[]): Promise<{ server: Server; realm: string; bundle: string }> {
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'token.key', '-out', 'token.crt', '-days', '2', '-subj', '/CN=tsbuild test token issuer'], dir);
  const key = await readFile(join(dir, 'token.key'), 'utf8');
  const certDer = new X509Certificate(await readFile(join(dir, 'token.crt'))).raw;
  const users = options.users ?? {};
  const server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter((s) => s !== '');
    const auth = req.headers.authorization;
    let account: string | undefined;
    let grants = options.anonymousGrants ?? (() => []);
    if (auth !== undefined) {
      const [user, ...rest] = Buffer.from(auth.replace(/^Basic /i, ''), 'base64').toString('utf8').split(':');
      const u = users[user ?? ''];
      if (!/^Basic /i.test(auth) || u === undefined || u.password !== rest.join(':')) {
        requests.push({ account: user, scopes, granted: [], status: 401 });
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] }));
        return;
      }
      account = user;
      grants = u.grants ?? (() => ['pull', 'push']);
    }
    const access: { type: string; name: string; actions: string[] }[] = [];
    const granted: string[] = [];
    for (const s of scopes) {
      const [type, name, actions] = s.split(':');
      if (type !== 'repository' || name === undefined || actions === undefined) continue;
      const ok = actions.split(',').filter((a) => grants(name).includes(a));
      access.push({ type, name, actions: ok });
      granted.push(`${type}:${name}:${ok.join(',')}`);
    }
    requests.push({ account, scopes, granted, status: 200 });
    const now = Math.floor(Date.now() / 1000);
    const lifetime = options.tokenLifetime ?? 300;
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const shift = options.expShift?.(requests.length - 1) ?? 0;
    const claims = { iss: 'tsbuild-test-issuer', sub: account ?? '', aud: 'tsbuild-test-registry', exp: now + lifetime + shift, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(key);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${input}.${b64url(sig)}`, expires_in: lifetime, issued_at: new Date(now * 1000).toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return { server, realm: `http://127.0.0.1:${port}/token`, bundle: join(dir, 'token.crt') };
}

async function waitReady(url: string, ca: string | undefined, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}:\n${logs()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = (url.startsWith('https') ? httpsRequest : httpRequest)(`${url}/v2/`, { ...(ca === undefined ? {} : { ca }), timeout: 1000 }, (res: IncomingMessage) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.end();
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not become ready at ${url}:\n${logs()}`);
}

/**
 * Starts Debian's docker-registry on 127.0.0.1 (free port, temporary storage) in the chosen auth
 * flavour; waits until it answers; registers a teardown that stops it and removes every file
 * (also when the test fails).
 */
export async function startRegistry(t: ExecutionContext, options: RegistryOptions = {}): Promise<TestRegistry> {
  const flavour = options.auth ?? 'none';
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-registry-'));
  const tokenRequests: TokenRequest[] = [];
  let tokenServer: Server | undefined;
  let child: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    // A registry killed by a signal has exitCode null but signalCode set: it has exited, and
    // waiting for another 'exit' (a second stop(), e.g. the test's own and then the teardown) would hang.
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const c = child;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGTERM');
        setTimeout(() => c.kill('SIGKILL'), 3000).unref();
      });
    }
    if (tokenServer !== undefined) await new Promise<void>((resolve) => (tokenServer as Server).close(() => resolve()));
    tokenServer = undefined;
    await rm(dir, { recursive: true, force: true });
  };
  t.teardown(stop);
  const port = await freePort();
  const storageDir = join(dir, 'storage');
  let tls: { ca: string; cert: string; key: string } | undefined;
  let authYaml = '';
  if (flavour === 'basic') {
    tls = await makeTls(dir);
    const lines: string[] = [];
    for (const [user, u] of Object.entries(options.users ?? {})) {
      lines.push((await run('htpasswd', ['-Bbn', user, u.password])).stdout.trim());
    }
    await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
    authYaml = `auth:\n  htpasswd:\n    realm: tsbuild-test\n    path: ${join(dir, 'htpasswd')}\n`;
  } else if (flavour === 'token') {
    const ts = await startTokenServer(dir, options, tokenRequests);
    tokenServer = ts.server;
    authYaml = `auth:\n  token:\n    realm: ${ts.realm}\n    service: tsbuild-test-registry\n    issuer: tsbuild-test-issuer\n    rootcertbundle: ${ts.bundle}\n`;
  }
  const config = [
    'version: 0.1',
    'log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false',
    `storage:\n  filesystem:\n    rootdirectory: ${storageDir}\n  delete:\n    enabled: true`,
    `http:\n  addr: 127.0.0.1:${port}\n  secret: ${randomBytes(16).toString('hex')}${tls === undefined ? '' : `\n  tls:\n    certificate: ${tls.cert}\n    key: ${tls.key}`}`,
    authYaml.trimEnd(),
  ].filter((s) => s !== '').join('\n');
  await writeFile(join(dir, 'config.yml'), `${config}\n`);
  let log = '';
  child = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (log += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (log += d));
  const url = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`;
  const ca = tls === undefined ? undefined : await readFile(tls.ca, 'utf8');
  await waitReady(url, ca, child, () => log);
  return {
    host: `127.0.0.1:${port}`, url, caFile: tls?.ca, certDir: tls === undefined ? undefined : join(dir, 'certs'), storageDir, tokenRequests,
    logs: () => log,
    stop,
  };
}

/** How {@link TestProxy} forwards one exchange. */
export interface ForwardOptions {
  /** Rewrites the whole upstream body (buffered; content-length adjusted). */
  readonly transform?: (body: Buffer) => Buffer;
  /** Sends this many body bytes, then destroys the connection. */
  readonly cutAfter?: number;
  /** Sends this many body bytes, then goes silent until the client gives up. */
  readonly stallAfter?: number;
}

/** One request seen by the proxy, with a way to forward it to the registry. */
export interface ProxyExchange {
  readonly req: IncomingMessage;
  readonly res: import('node:http').ServerResponse;
  /** `METHOD path` */
  readonly key: string;
  /** How many requests with this key came before (0 for the first). */
  readonly seen: number;
  forward(options?: ForwardOptions): Promise<void>;
}

/** A recorded request of the proxy. */
export interface ProxyRecord {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** A hostile or recording HTTP proxy in front of a registry, on 127.0.0.1. */
export interface TestProxy {
  readonly host: string;
  readonly url: string;
  readonly requests: ProxyRecord[];
}

/**
 * Starts an HTTP proxy on 127.0.0.1 in front of `upstream` (an http:// registry URL): `handle`
 * decides per request (default: forward unchanged). Location headers pointing at the upstream
 * are rewritten to the proxy. Closed by the test's teardown.
 */
export async function startProxy(t: ExecutionContext, upstream: string, handle?: (x: ProxyExchange) => Promise<void> | void): Promise<TestProxy> {
  const up = new URL(upstream);
  const counts = new Map<string, number>();
  const requests: ProxyRecord[] = [];
  let self = '';
  const server = createHttpServer((req, res) => {
    const key = `${req.method ?? 'GET'} ${(req.url ?? '/').split('?')[0] ?? ''}`;
    const seen = counts.get(key) ?? 0;
    counts.set(key, seen + 1);
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    const forward = (o: ForwardOptions = {}): Promise<void> => new Promise((resolve) => {
      const headers = { ...req.headers, host: up.host };
      const upReq = httpRequest({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers }, (upRes) => {
        const h = { ...upRes.headers };
        if (typeof h.location === 'string') h.location = h.location.replace(up.origin, self);
        if (o.transform !== undefined) {
          const chunks: Buffer[] = [];
          upRes.on('data', (c: Buffer) => chunks.push(c));
          upRes.on('end', () => {
            const body = (o.transform as (b: Buffer) => Buffer)(Buffer.concat(chunks));
            res.writeHead(upRes.statusCode ?? 502, { ...h, 'content-length': String(body.length) }).end(body);
            resolve();
          });
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, h);
        const limit = o.cutAfter ?? o.stallAfter;
        if (limit === undefined) {
          upRes.pipe(res);
          upRes.on('end', () => resolve());
          return;
        }
        let sent = 0;
        upRes.on('data', (c: Buffer) => {
          if (sent >= limit) return;
          const part = c.subarray(0, limit - sent);
          sent += part.length;
          res.write(part);
          if (sent >= limit) {
            upRes.destroy();
            if (o.cutAfter !== undefined) res.socket?.destroy();
            resolve();
          }
        });
        upRes.on('end', () => resolve());
      });
      upReq.on('error', () => {
        res.destroy();
        resolve();
      });
      req.pipe(upReq);
    });
    void Promise.resolve(handle === undefined ? forward() : handle({ req, res, key, seen, forward })).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  self = `http://127.0.0.1:${port}`;
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return { host: `127.0.0.1:${port}`, url: self, requests };
}
