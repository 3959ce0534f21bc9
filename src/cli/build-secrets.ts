import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { notSupportedYet, TsbuildError } from '../core/index.js';
import type { KeyAgent } from './ssh-key-agent.js';
import { parseSshPrivateKey, type SshKey } from './ssh-keys.js';

/** Largest secret accepted (BuildKit's limit). */
export const MAX_SECRET_BYTES = 500 * 1024;

/** Where a `--secret` value comes from. */
export type SecretSource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'env'; readonly name: string }
  /** `--secret id=X` alone: the environment variable X when set, else the file X (as buildx). */
  | { readonly kind: 'auto'; readonly name: string };

/** One parsed `--secret` flag. */
export interface SecretSpec {
  readonly id: string;
  readonly source: SecretSource;
}

/** One parsed `--ssh` flag: an id and the agent socket paths (none = $SSH_AUTH_SOCK). */
export interface SshSpec {
  readonly id: string;
  readonly paths: readonly string[];
}

function bad(message: string, hint?: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', message, { exitCode: 125, ...(hint === undefined ? {} : { hint }) });
}

/**
 * Parses `--secret id=ID[,src=FILE|source=FILE][,env=VAR][,type=file|env]` (buildx's syntax, pure).
 * Throws CLI_BAD_VALUE naming the flag on a missing id, an unknown key or a field without `=`.
 */
export function parseSecretFlag(value: string): SecretSpec {
  let id: string | undefined;
  let file: string | undefined;
  let env: string | undefined;
  let type: 'file' | 'env' | undefined;
  for (const field of value.split(',')) {
    if (field === '') continue;
    const eq = field.indexOf('=');
    if (eq < 0) throw bad(`invalid --secret "${value}": field "${field}" must be a key=value pair`, 'use --secret id=ID,src=FILE or --secret id=ID,env=VAR');
    const key = field.slice(0, eq).toLowerCase();
    const v = field.slice(eq + 1);
    if (key === 'id') id = v;
    else if (key === 'src' || key === 'source') file = v;
    else if (key === 'env') env = v;
    else if (key === 'type') {
      if (v !== 'file' && v !== 'env') throw bad(`invalid --secret "${value}": type must be file or env, not "${v}"`);
      type = v;
    } else throw bad(`invalid --secret "${value}": unknown key "${key}"`, 'keys: id, src (or source), env, type');
  }
  if (id === undefined || id === '') throw bad(`invalid --secret "${value}": it needs id=ID`);
  if (type === 'env' && env === undefined) env = file ?? id;
  if (type === 'env' || (env !== undefined && file === undefined)) return { id, source: { kind: 'env', name: env as string } };
  if (file !== undefined) return { id, source: { kind: 'file', path: file } };
  if (type === 'file') return { id, source: { kind: 'file', path: id } };
  return { id, source: { kind: 'auto', name: id } };
}

/**
 * Reads the secrets of `--secret` flags (files relative to `cwd`, variables from `env`) into a map
 * id -> content. Throws CLI_BAD_VALUE for a missing file or variable or a secret over 500 KiB; the
 * messages name the id and the file or variable, never the content.
 */
export function loadSecrets(values: readonly string[], env: Readonly<Record<string, string | undefined>>, cwd: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const value of values) {
    const spec = parseSecretFlag(value);
    const src = spec.source;
    let content: Buffer;
    if (src.kind === 'env' || (src.kind === 'auto' && env[src.name] !== undefined)) {
      const name = src.kind === 'env' ? src.name : src.name;
      const v = env[name];
      if (v === undefined) throw bad(`secret "${spec.id}": the environment variable ${name} is not set`);
      content = Buffer.from(v, 'utf8');
    } else {
      const path = resolve(cwd, src.kind === 'file' ? src.path : src.name);
      try {
        const st = statSync(path);
        if (!st.isFile()) throw bad(`secret "${spec.id}": ${path} is not a regular file`);
        if (st.size > MAX_SECRET_BYTES) throw bad(`secret "${spec.id}": ${path} is larger than ${MAX_SECRET_BYTES / 1024} KiB`);
        content = readFileSync(path);
      } catch (err) {
        if (err instanceof TsbuildError) throw err;
        const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw bad(`secret "${spec.id}": cannot read ${path}: ${why}`, src.kind === 'auto' ? `neither a variable ${src.name} nor a file ${path}; use --secret id=${spec.id},src=FILE or env=VAR` : undefined);
      }
    }
    if (content.length > MAX_SECRET_BYTES) throw bad(`secret "${spec.id}" is larger than ${MAX_SECRET_BYTES / 1024} KiB`);
    out.set(spec.id, content);
  }
  return out;
}

/** Parses `--ssh default|ID[=SOCKET[,SOCKET...]]` (buildx's syntax, pure). */
export function parseSshFlag(value: string): SshSpec {
  const eq = value.indexOf('=');
  const id = eq < 0 ? value : value.slice(0, eq);
  if (id === '' || /[,\s]/.test(id)) throw bad(`invalid --ssh "${value}": expected default, ID or ID=SOCKET`);
  const paths = eq < 0 ? [] : value.slice(eq + 1).split(',').filter((p) => p !== '');
  if (eq >= 0 && paths.length === 0) throw bad(`invalid --ssh "${value}": no socket path after "="`);
  return { id, paths };
}

/** What an `--ssh` id forwards: an agent's socket, or keys read from files (served by our own agent). */
export type SshSource = { readonly kind: 'socket'; readonly path: string } | { readonly kind: 'keys'; readonly keys: readonly SshKey[] };

/**
 * Resolves `--ssh` flags (`$SSH_AUTH_SOCK` when no path is given): each id gets one agent socket, or
 * one or more private key files (read and checked here, served later by {@link startSshAgents}).
 * Throws CLI_BAD_VALUE when the variable is unset, a path is missing or a key unusable, and
 * CLI_NOT_SUPPORTED for several sockets per id or sockets mixed with keys.
 */
export function resolveSshAgents(values: readonly string[], env: Readonly<Record<string, string | undefined>>, cwd: string): Map<string, SshSource> {
  const out = new Map<string, SshSource>();
  for (const value of values) {
    const spec = parseSshFlag(value);
    const given = spec.paths.length > 0 ? spec.paths : [env.SSH_AUTH_SOCK ?? ''];
    if (given[0] === '') throw bad(`--ssh ${spec.id}: SSH_AUTH_SOCK is not set`, 'start an ssh-agent or give the socket or key: --ssh default=/path/to/agent.sock');
    const sockets: string[] = [];
    const keys: SshKey[] = [];
    for (const p of given) {
      const path = resolve(cwd, p);
      let isSocket: boolean;
      try {
        const st = statSync(path);
        isSocket = st.isSocket();
        // (A fifo or device would block the read or never end.)
        if (!isSocket && !st.isFile()) throw bad(`--ssh ${spec.id}: ${path} is neither an agent socket nor a key file`);
        if (!isSocket) keys.push(parseSshPrivateKey(readFileSync(path, 'utf8'), path));
      } catch (err) {
        if (err instanceof TsbuildError) throw err;
        throw bad(`--ssh ${spec.id}: cannot use ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (isSocket) sockets.push(path);
    }
    if (sockets.length > 1 || (sockets.length > 0 && keys.length > 0)) {
      throw withExit(notSupportedYet(`--ssh ${spec.id} with several agent sockets, or sockets and keys together`, 'give one agent socket, or key files, per id'));
    }
    out.set(spec.id, sockets[0] !== undefined ? { kind: 'socket', path: sockets[0] } : { kind: 'keys', keys });
  }
  return out;
}

/** The agent sockets of a build, and how to stop the agents started for key files. */
export interface SshAgents {
  /** id -> agent socket path. */
  readonly sockets: Map<string, string>;
  close(): Promise<void>;
}

/** Starts an agent for each id given key files; sockets pass through. close() stops the agents and removes their sockets. */
export async function startSshAgents(sources: ReadonlyMap<string, SshSource>): Promise<SshAgents> {
  const sockets = new Map<string, string>();
  const agents: KeyAgent[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(agents.map((a) => a.close()));
  };
  try {
    for (const [id, source] of sources) {
      if (source.kind === 'socket') {
        sockets.set(id, source.path);
        continue;
      }
      const { startKeyAgent } = await import('./ssh-key-agent.js');
      const agent = await startKeyAgent(source.keys);
      agents.push(agent);
      sockets.set(id, agent.socket);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { sockets, close };
}

function withExit(e: TsbuildError): TsbuildError {
  return new TsbuildError(e.code, e.message, { exitCode: 125, ...(e.hint === undefined ? {} : { hint: e.hint }) });
}
