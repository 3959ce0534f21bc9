import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { TsbuildError } from '../../core/index.js';
import { isValidVolumeName, type VolumeRequest } from '../../runner/index.js';
import type { MountSpec } from '../../sandbox/index.js';

function bad(message: string, hint?: string): TsbuildError {
  return new TsbuildError('SANDBOX_BAD_MOUNT', message, { exitCode: 125, ...(hint === undefined ? {} : { hint }) });
}

/** Storage of a container: bind and tmpfs mounts, and volumes (named or anonymous). */
export interface StorageFlags {
  readonly mounts: MountSpec[];
  readonly volumes: VolumeRequest[];
}

function bindMount(source: string, destination: string, readonly: boolean): MountSpec {
  return { destination, type: 'bind', source, options: ['rbind', 'rprivate', ...(readonly ? ['ro'] : [])] };
}

/**
 * Parses `-v` as docker: `HOST:CTR[:ro|rw]` (HOST absolute or ./relative to `cwd`) is a bind
 * mount, `NAME:CTR[:ro|rw]` a named volume, `CTR` alone an anonymous volume. Throws SANDBOX_BAD_MOUNT.
 */
export function parseVolumeFlag(value: string, cwd: string): MountSpec | VolumeRequest {
  const parts = value.split(':');
  if (parts.length === 1) {
    if (!isAbsolute(value)) throw bad(`invalid volume "${value}": the destination must be an absolute path`);
    return { name: undefined, destination: value, readonly: false };
  }
  const [src, dst, mode, ...extra] = parts;
  if (src === undefined || dst === undefined || src === '' || extra.length > 0 || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
    throw bad(`invalid volume "${value}": expected SRC:DST[:ro|rw]`);
  }
  if (!isAbsolute(dst)) throw bad(`volume destination "${dst}" must be an absolute path`);
  if (isAbsolute(src) || src.startsWith('.')) return bindMount(resolve(cwd, src), dst, mode === 'ro');
  if (!isValidVolumeName(src)) {
    throw bad(`"${src}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed`, 'a host directory must be an absolute path or start with ./');
  }
  return { name: src, destination: dst, readonly: mode === 'ro' };
}

/** True for a parsed `-v`/`--mount` that is a volume request rather than a mount. */
export function isVolumeRequest(x: MountSpec | VolumeRequest): x is VolumeRequest {
  return !('type' in x);
}

function parseBoolOption(key: string, value: string | undefined): boolean {
  if (value === undefined || value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw bad(`invalid value for ${key}: "${value}"`);
}

/** Docker's `--tmpfs` options: size (bytes or k/m/g), mode (octal), ro/rw, exec/noexec, suid/nosuid, dev/nodev. */
function tmpfsOptions(opts: readonly string[], context: string): string[] {
  const out = new Map<string, string>([['nosuid', 'nosuid'], ['nodev', 'nodev'], ['noexec', 'noexec'], ['mode', 'mode=1777']]);
  for (const o of opts) {
    if (o === '') continue;
    const [k, v] = o.split('=', 2) as [string, string | undefined];
    if (k === 'size' && v !== undefined && /^\d+[kmg]?$/i.test(v)) out.set('size', `size=${v.toLowerCase()}`);
    else if (k === 'mode' && v !== undefined && /^[0-7]{1,4}$/.test(v)) out.set('mode', `mode=${v}`);
    else if (k === 'ro' || k === 'rw') out.set('ro', k);
    else if (['exec', 'noexec'].includes(k)) out.set('noexec', k);
    else if (['suid', 'nosuid'].includes(k)) out.set('nosuid', k);
    else if (['dev', 'nodev'].includes(k)) out.set('nodev', k);
    else throw bad(`invalid tmpfs option "${o}" in ${context}`, 'tmpfs options: size=N[k|m|g], mode=OCTAL, ro, rw, exec, noexec, suid, nosuid, dev, nodev');
  }
  return [...out.values()].filter((v) => v !== 'rw' && v !== 'exec' && v !== 'suid' && v !== 'dev');
}

/** Parses `--tmpfs PATH[:OPTIONS]` (options comma-separated, as docker). Throws SANDBOX_BAD_MOUNT. */
export function parseTmpfsFlag(value: string): MountSpec {
  const colon = value.indexOf(':');
  const dst = colon === -1 ? value : value.slice(0, colon);
  if (!isAbsolute(dst)) throw bad(`--tmpfs destination "${dst}" must be an absolute path`);
  const opts = colon === -1 ? [] : value.slice(colon + 1).split(',');
  return { destination: dst, type: 'tmpfs', source: 'tmpfs', options: tmpfsOptions(opts, `--tmpfs ${value}`) };
}

/**
 * Parses `--mount type=bind|volume|tmpfs,source=...,destination=...[,readonly]` (docker's keys:
 * src/source, dst/destination/target, ro/readonly, volume-nocopy, tmpfs-size, tmpfs-mode).
 * A bind source must exist. Throws SANDBOX_BAD_MOUNT.
 */
export function parseMountFlag(value: string, cwd: string): MountSpec | VolumeRequest {
  const kv = new Map<string, string | undefined>();
  for (const field of value.split(',')) {
    if (field === '') continue;
    const eq = field.indexOf('=');
    const key = (eq === -1 ? field : field.slice(0, eq)).trim().toLowerCase();
    const val = eq === -1 ? undefined : field.slice(eq + 1);
    const canonical = ({ src: 'source', dst: 'destination', target: 'destination', ro: 'readonly' } as Record<string, string>)[key] ?? key;
    if (!['type', 'source', 'destination', 'readonly', 'volume-nocopy', 'tmpfs-size', 'tmpfs-mode', 'bind-propagation', 'consistency'].includes(canonical)) {
      throw bad(`invalid field "${key}" in --mount ${value}`, 'fields: type, source|src, destination|dst|target, readonly|ro, volume-nocopy, tmpfs-size, tmpfs-mode');
    }
    kv.set(canonical, val);
  }
  const type = kv.get('type') ?? 'volume';
  const dst = kv.get('destination');
  if (dst === undefined || dst === '') throw bad(`--mount ${value}: a destination (dst=) is required`);
  if (!isAbsolute(dst)) throw bad(`--mount destination "${dst}" must be an absolute path`);
  const readonly = kv.has('readonly') ? parseBoolOption('readonly', kv.get('readonly')) : false;
  const src = kv.get('source');
  if (type === 'bind') {
    if (src === undefined || src === '') throw bad(`--mount ${value}: a bind mount needs a source (src=)`);
    const host = resolve(cwd, src);
    if (!existsSync(host)) throw bad(`invalid mount config for type "bind": bind source path does not exist: ${host}`);
    return bindMount(host, dst, readonly);
  }
  if (type === 'volume') {
    if (src !== undefined && src !== '' && !isValidVolumeName(src)) throw bad(`"${src}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed`);
    const noCopy = kv.has('volume-nocopy') ? parseBoolOption('volume-nocopy', kv.get('volume-nocopy')) : false;
    return { name: src === '' ? undefined : src, destination: dst, readonly, noCopy };
  }
  if (type === 'tmpfs') {
    if (src !== undefined) throw bad(`--mount ${value}: a tmpfs mount takes no source`);
    const opts: string[] = [];
    if (kv.get('tmpfs-size') !== undefined) opts.push(`size=${kv.get('tmpfs-size') as string}`);
    if (kv.get('tmpfs-mode') !== undefined) opts.push(`mode=${kv.get('tmpfs-mode') as string}`);
    if (readonly) opts.push('ro');
    return { destination: dst, type: 'tmpfs', source: 'tmpfs', options: tmpfsOptions(opts, `--mount ${value}`) };
  }
  throw bad(`--mount ${value}: unknown type "${type}"`, 'types: bind, volume, tmpfs');
}

/**
 * Reads docker env files: `KEY=VALUE` lines (value verbatim), `KEY` alone takes the value from
 * `env` (skipped when unset), `#` comments and blank lines are ignored. Throws CLI_BAD_ENV_FILE
 * naming the file and line.
 */
export function readEnvFiles(files: readonly string[], cwd: string, env: Readonly<Record<string, string | undefined>>): string[] {
  const out: string[] = [];
  for (const f of files) {
    const path = resolve(cwd, f);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new TsbuildError('CLI_BAD_ENV_FILE', `cannot read env file ${f}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`, { cause: err, exitCode: 125 });
    }
    for (const [i, raw] of text.split(/\r?\n/).entries()) {
      const line = raw.replace(/^\s+/, '');
      if (line === '' || line.startsWith('#')) continue;
      const eq = line.indexOf('=');
      const key = eq === -1 ? line.replace(/\s+$/, '') : line.slice(0, eq);
      if (key === '' || /[\s\0]/.test(key)) {
        throw new TsbuildError('CLI_BAD_ENV_FILE', `${f}:${i + 1}: invalid variable "${eq === -1 ? key : line.slice(0, eq)}": names cannot be empty or contain whitespace`, { exitCode: 125 });
      }
      if (eq !== -1) out.push(line);
      else if (env[key] !== undefined) out.push(`${key}=${env[key] as string}`);
    }
  }
  return out;
}
