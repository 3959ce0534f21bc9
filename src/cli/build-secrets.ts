import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { notSupportedYet, TsbuildError } from '../core/index.js';

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

/**
 * Resolves `--ssh` flags to agent sockets: id -> absolute socket path (`$SSH_AUTH_SOCK` when no
 * path is given). Throws CLI_BAD_VALUE when the variable is unset or the path is missing, and
 * CLI_NOT_SUPPORTED for key files (only agent sockets are forwarded) or several paths per id.
 */
export function resolveSshAgents(values: readonly string[], env: Readonly<Record<string, string | undefined>>, cwd: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const value of values) {
    const spec = parseSshFlag(value);
    if (spec.paths.length > 1) throw withExit(notSupportedYet(`--ssh ${spec.id} with several sockets or keys`, 'give one agent socket per id'));
    const given = spec.paths[0] ?? env.SSH_AUTH_SOCK;
    if (given === undefined || given === '') throw bad(`--ssh ${spec.id}: SSH_AUTH_SOCK is not set`, 'start an ssh-agent or give the socket: --ssh default=/path/to/agent.sock');
    const path = resolve(cwd, given);
    let isSocket: boolean;
    try {
      isSocket = statSync(path).isSocket();
    } catch (err) {
      throw bad(`--ssh ${spec.id}: cannot use ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (!isSocket) throw withExit(notSupportedYet(`--ssh ${spec.id}=${path}: private key files`, 'only ssh-agent sockets are forwarded; load the key into an agent (ssh-add) and pass its socket'));
    out.set(spec.id, path);
  }
  return out;
}

function withExit(e: TsbuildError): TsbuildError {
  return new TsbuildError(e.code, e.message, { exitCode: 125, ...(e.hint === undefined ? {} : { hint: e.hint }) });
}
