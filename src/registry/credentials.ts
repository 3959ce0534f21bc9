import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DEFAULT_DOMAIN, TsbuildError } from '../core/index.js';
import { DOCKER_HUB_AUTH_KEY } from './hosts.js';
import { externalProgramEnv } from '../sys/index.js';

/** Credentials for one registry: a user and password, or an identity (refresh) token. */
export interface Credentials {
  readonly username?: string;
  readonly password?: string;
  /** OAuth2 refresh token (`identitytoken` in config.json, user `<token>` from a helper). */
  readonly identityToken?: string;
}

/** Where credentials are looked up, in this order; the CLI computes these from the environment. */
export interface CredentialSources {
  /** Docker's config directory (`$DOCKER_CONFIG` or `~/.docker`), holding config.json. */
  readonly dockerConfigDir: string;
  /** Containers auth files (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`...), first match wins. */
  readonly authFiles: readonly string[];
  /** The PATH used to find `docker-credential-NAME` helpers. */
  readonly path?: string;
}

interface AuthEntry {
  auth?: string;
  identitytoken?: string;
  username?: string;
  password?: string;
}

/** The part of docker's config.json tsbuild reads and writes (other keys are preserved). */
interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
  [key: string]: unknown;
}

/** The key a registry domain has in config.json (`https://index.docker.io/v1/` for Docker Hub). */
export function authKeyOf(domain: string): string {
  return domain === DEFAULT_DOMAIN ? DOCKER_HUB_AUTH_KEY : domain;
}

/** The domain an `auths` key stands for (`https://host:5000/v2/` -> `host:5000`). */
function domainOfKey(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? DEFAULT_DOMAIN : host;
}

async function readJsonFile<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TsbuildError('REG_CREDENTIALS', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    // SECURITY: the parse error may quote the file's content, which holds secrets.
    throw new TsbuildError('REG_CREDENTIALS', `${path} is not valid JSON`);
  }
}

function entryFor(auths: Record<string, AuthEntry> | undefined, domain: string): AuthEntry | undefined {
  if (auths === undefined) return undefined;
  const exact = auths[authKeyOf(domain)] ?? auths[domain];
  if (exact !== undefined) return exact;
  for (const [k, v] of Object.entries(auths)) if (domainOfKey(k) === domain) return v;
  return undefined;
}

function decodeEntry(entry: AuthEntry, file: string): Credentials | undefined {
  if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') {
    return { identityToken: entry.identitytoken, ...(typeof entry.username === 'string' ? { username: entry.username } : {}) };
  }
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon <= 0) throw new TsbuildError('REG_CREDENTIALS', `${file}: an "auth" entry is not base64 of "user:password"`);
    return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string') return { username: entry.username, password: entry.password };
  return undefined;
}

/** Runs `docker-credential-NAME ACTION` with `input` on stdin; resolves to stdout and exit code. */
async function runHelper(name: string, action: 'get' | 'store' | 'erase', input: string, path: string | undefined): Promise<{ code: number; stdout: string }> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new TsbuildError('REG_CREDENTIALS', `invalid credential helper name "${name}"`);
  // Loaded here: a push or pull without a credential helper never loads node:child_process (~5 ms of a no-op).
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(`docker-credential-${name}`, [action], { stdio: ['pipe', 'pipe', 'pipe'], env: externalProgramEnv(path === undefined ? process.env : { ...process.env, PATH: path }) });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.resume();
    child.on('error', (err) => reject(new TsbuildError('REG_CREDENTIALS', `cannot run credential helper docker-credential-${name}: ${err.message}`, { cause: err })));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

async function readDockerConfig(sources: CredentialSources): Promise<{ path: string; config: DockerConfig }> {
  const path = join(sources.dockerConfigDir, 'config.json');
  return { path, config: (await readJsonFile<DockerConfig>(path)) ?? {} };
}

/** The credential helper configured for `domain` (credHelpers first, then credsStore). */
function helperFor(config: DockerConfig, domain: string): string | undefined {
  const key = authKeyOf(domain);
  return config.credHelpers?.[key] ?? config.credHelpers?.[domain] ?? (config.credsStore === '' ? undefined : config.credsStore);
}

/**
 * Looks up the credentials of `domain` in docker's order: config.json credHelpers / credsStore
 * (`docker-credential-NAME get`), then config.json `auths`, then the containers auth files.
 * Resolves to undefined when none are configured. Throws `REG_CREDENTIALS` for unreadable files
 * or a failing helper; messages never contain secrets.
 */
export async function loadCredentials(domain: string, sources: CredentialSources): Promise<Credentials | undefined> {
  const { path, config } = await readDockerConfig(sources);
  const helper = helperFor(config, domain);
  if (helper !== undefined) {
    const { code, stdout } = await runHelper(helper, 'get', authKeyOf(domain), sources.path);
    if (code === 0) {
      let doc: { Username?: unknown; Secret?: unknown };
      try {
        doc = JSON.parse(stdout) as typeof doc;
      } catch {
        throw new TsbuildError('REG_CREDENTIALS', `credential helper docker-credential-${helper} printed something that is not JSON`);
      }
      if (typeof doc.Secret === 'string' && doc.Secret !== '') {
        if (doc.Username === '<token>') return { identityToken: doc.Secret };
        return { username: typeof doc.Username === 'string' ? doc.Username : '', password: doc.Secret };
      }
    }
    // Not found in the helper: docker falls back to the file entries.
  }
  const fromDocker = entryFor(config.auths, domain);
  const creds = fromDocker === undefined ? undefined : decodeEntry(fromDocker, path);
  if (creds !== undefined) return creds;
  for (const file of sources.authFiles) {
    const doc = await readJsonFile<{ auths?: Record<string, AuthEntry> }>(file);
    const e = entryFor(doc?.auths, domain);
    const c = e === undefined ? undefined : decodeEntry(e, file);
    if (c !== undefined) return c;
  }
  return undefined;
}

/** Writes config.json atomically with mode 0600 (its directory 0700 when created). */
async function writeDockerConfig(path: string, config: DockerConfig): Promise<void> {
  const tmp = join(dirname(path), `.config.json.${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    // SECURITY: the file holds credentials: created 0600 before anything is written.
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(config, null, '\t')}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await chmod(tmp, 0o600);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new TsbuildError('REG_CREDENTIALS', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Stores credentials for `domain`: through the configured credential helper when there is one
 * (config.json then only lists the registry), else base64 in config.json `auths` (mode 0600).
 * Resolves to where they went (a file path or `docker-credential-NAME`). Throws `REG_CREDENTIALS`.
 */
export async function saveCredentials(domain: string, creds: Credentials, sources: CredentialSources): Promise<string> {
  const { path, config } = await readDockerConfig(sources);
  const key = authKeyOf(domain);
  const helper = helperFor(config, domain);
  const auths = { ...(config.auths ?? {}) };
  if (helper !== undefined) {
    const input = JSON.stringify({ ServerURL: key, Username: creds.identityToken === undefined ? creds.username ?? '' : '<token>', Secret: creds.identityToken ?? creds.password ?? '' });
    const { code } = await runHelper(helper, 'store', input, sources.path);
    if (code !== 0) throw new TsbuildError('REG_CREDENTIALS', `credential helper docker-credential-${helper} failed to store the credentials (exit ${code})`);
    if (config.credHelpers?.[key] === undefined) {
      auths[key] = {};
      await writeDockerConfig(path, { ...config, auths });
    }
    return `docker-credential-${helper}`;
  }
  auths[key] = creds.identityToken !== undefined
    ? { auth: '', identitytoken: creds.identityToken }
    : { auth: Buffer.from(`${creds.username ?? ''}:${creds.password ?? ''}`, 'utf8').toString('base64') };
  await writeDockerConfig(path, { ...config, auths });
  return path;
}

/**
 * Removes the credentials of `domain` from config.json (and from its credential helper).
 * Resolves to false when none were stored. Throws `REG_CREDENTIALS`.
 */
export async function removeCredentials(domain: string, sources: CredentialSources): Promise<boolean> {
  const { path, config } = await readDockerConfig(sources);
  const key = authKeyOf(domain);
  let removed = false;
  const helper = helperFor(config, domain);
  if (helper !== undefined) {
    const { code } = await runHelper(helper, 'erase', key, sources.path);
    removed = code === 0;
  }
  const auths = { ...(config.auths ?? {}) };
  for (const k of Object.keys(auths)) {
    if (k === key || domainOfKey(k) === domain) {
      delete auths[k];
      removed = true;
    }
  }
  if (removed || config.auths !== undefined) await writeDockerConfig(path, { ...config, auths });
  return removed;
}
