import { isAbsolute, resolve } from 'node:path';
import { formatReference, parseReference, TsbuildError, type ImageReference } from '../core/index.js';

/** A parsed `--cache-from`. */
export type CacheFromSpec =
  | { readonly type: 'registry'; readonly ref: ImageReference }
  | { readonly type: 'local'; readonly src: string; readonly tag: string };

/** A parsed `--cache-to`. */
export type CacheToSpec =
  | { readonly type: 'registry'; readonly ref: ImageReference; readonly mode: 'min' | 'max'; readonly ignoreError: boolean; readonly mounts: boolean }
  | { readonly type: 'local'; readonly dest: string; readonly tag: string; readonly mode: 'min' | 'max'; readonly ignoreError: boolean; readonly mounts: boolean };

/** BuildKit attributes accepted for compatibility and ignored (our cache is always an OCI image manifest). */
const IGNORED = new Set(['oci-mediatypes', 'image-manifest', 'compression', 'compression-level', 'force-compression']);

function bad(flag: string, text: string, why: string, hint?: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', `invalid ${flag} "${text}": ${why}`, { exitCode: 125, ...(hint === undefined ? {} : { hint }) });
}

/** Splits `k=v,k=v` (no quoting: values cannot hold commas); rejects empty and repeated keys. */
function attributes(flag: string, text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const k = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const v = eq < 0 ? '' : part.slice(eq + 1).trim();
    if (k === '' || eq < 0) throw bad(flag, text, `"${part}" is not KEY=VALUE`);
    if (v === '') throw bad(flag, text, `${k}= needs a value`);
    if (out.has(k)) throw bad(flag, text, `${k}= is given twice`);
    out.set(k, v);
  }
  return out;
}

function checkKnown(flag: string, text: string, attrs: Map<string, string>, known: readonly string[]): void {
  for (const k of attrs.keys()) {
    if (!known.includes(k) && !IGNORED.has(k)) throw bad(flag, text, `unknown option "${k}"`, `options: ${known.join(', ')}`);
  }
}

function typeOf(flag: string, text: string, attrs: Map<string, string>): 'registry' | 'local' {
  const type = attrs.get('type') ?? 'registry';
  if (type === 'registry' || type === 'local') return type;
  throw bad(flag, text, `cache type "${type}" is not supported`, 'tsbuild supports type=registry and type=local');
}

function refOf(flag: string, text: string, value: string | undefined, forExport: boolean): ImageReference {
  if (value === undefined) throw bad(flag, text, 'type=registry needs ref=REF');
  let ref: ImageReference;
  try {
    ref = parseReference(value);
  } catch (err) {
    throw bad(flag, text, (err as Error).message);
  }
  if (forExport && ref.digest !== undefined) throw bad(flag, text, `cannot export to a digest (${formatReference(ref)})`, 'name a tag, e.g. ref=registry.example/app:buildcache');
  return ref;
}

function pathOf(flag: string, text: string, value: string | undefined, key: string, cwd: string): string {
  if (value === undefined) throw bad(flag, text, `type=local needs ${key}=DIR`);
  return isAbsolute(value) ? value : resolve(cwd, value);
}

function tagOf(flag: string, text: string, value: string | undefined): string {
  const tag = value ?? 'latest';
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(tag)) throw bad(flag, text, `tag "${tag}" is not a valid tag`);
  return tag;
}

function boolOf(flag: string, text: string, key: string, value: string | undefined, fallback = false): boolean {
  if (value === undefined) return fallback;
  if (value === 'false') return false;
  if (value === 'true') return true;
  throw bad(flag, text, `${key}= takes true or false`);
}

/**
 * Parses one `--cache-from`: `type=registry,ref=REF`, `type=local,src=DIR[,tag=T]`, or a bare
 * `REF` (= type=registry,ref=REF). Relative directories resolve against `cwd`. Throws CLI_BAD_VALUE.
 */
export function parseCacheFrom(text: string, cwd: string): CacheFromSpec {
  const flag = '--cache-from';
  if (!text.includes('=')) return { type: 'registry', ref: refOf(flag, text, text.trim() === '' ? undefined : text.trim(), false) };
  const attrs = attributes(flag, text);
  const type = typeOf(flag, text, attrs);
  if (type === 'registry') {
    checkKnown(flag, text, attrs, ['type', 'ref']);
    return { type, ref: refOf(flag, text, attrs.get('ref'), false) };
  }
  checkKnown(flag, text, attrs, ['type', 'src', 'tag', 'digest']);
  if (attrs.has('digest')) throw bad(flag, text, 'digest= is not supported', 'name the cache with tag= (default latest)');
  return { type, src: pathOf(flag, text, attrs.get('src'), 'src', cwd), tag: tagOf(flag, text, attrs.get('tag')) };
}

/**
 * Parses one `--cache-to`: `type=registry,ref=REF[,mode=min|max]`, `type=local,dest=DIR[,tag=T]
 * [,mode=...]`, or a bare `REF`; `ignore-error=true` turns an export failure into a warning;
 * `cache-mounts=false` leaves the RUN cache mount directories out. mode defaults to min. Throws CLI_BAD_VALUE.
 */
export function parseCacheTo(text: string, cwd: string): CacheToSpec {
  const flag = '--cache-to';
  if (!text.includes('=')) return { type: 'registry', ref: refOf(flag, text, text.trim() === '' ? undefined : text.trim(), true), mode: 'min', ignoreError: false, mounts: true };
  const attrs = attributes(flag, text);
  const type = typeOf(flag, text, attrs);
  const mode = attrs.get('mode') ?? 'min';
  if (mode !== 'min' && mode !== 'max') throw bad(flag, text, `mode= takes min or max, not "${mode}"`);
  const ignoreError = boolOf(flag, text, 'ignore-error', attrs.get('ignore-error'));
  const mounts = boolOf(flag, text, 'cache-mounts', attrs.get('cache-mounts'), true);
  if (type === 'registry') {
    checkKnown(flag, text, attrs, ['type', 'ref', 'mode', 'ignore-error', 'cache-mounts']);
    return { type, ref: refOf(flag, text, attrs.get('ref'), true), mode, ignoreError, mounts };
  }
  checkKnown(flag, text, attrs, ['type', 'dest', 'tag', 'mode', 'ignore-error', 'cache-mounts']);
  return { type, dest: pathOf(flag, text, attrs.get('dest'), 'dest', cwd), tag: tagOf(flag, text, attrs.get('tag')), mode, ignoreError, mounts };
}

/** The parsed `--cache-from` / `--cache-to` flags of one build. */
export interface BuildCacheFlags {
  readonly from: readonly CacheFromSpec[];
  readonly to: readonly CacheToSpec[];
}

/** Parses every `--cache-from` and `--cache-to` (before anything is built). Throws CLI_BAD_VALUE. */
export function parseBuildCacheFlags(cacheFrom: readonly string[], cacheTo: readonly string[], cwd: string): BuildCacheFlags {
  return { from: cacheFrom.map((t) => parseCacheFrom(t, cwd)), to: cacheTo.map((t) => parseCacheTo(t, cwd)) };
}
