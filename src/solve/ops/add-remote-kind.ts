import { posix } from 'node:path';
import { TsbuildError } from '../../core/index.js';

/** What an ADD source names besides a local path: an http(s) file or a git repository. */
export type RemoteKind = 'http' | 'git';

/** A git source split as BuildKit does: `<remote>[#<ref>][:<subdir>]`. */
export interface GitSource {
  /** The repository URL given to git (fragment removed). */
  readonly remote: string;
  /** Branch, tag or commit; undefined for the remote's HEAD. */
  readonly ref?: string;
  /** Directory inside the repository to copy ('' for the root). */
  readonly subdir: string;
}

/**
 * Classifies an ADD source (BuildKit's rules): `git@host:path`, `git://` and `ssh://` URLs and
 * http(s) URLs whose path ends in `.git` are git repositories; other http(s) URLs are files;
 * anything else is a local path (undefined).
 */
export function remoteKindOf(src: string): RemoteKind | undefined {
  if (/^git@[^:/]+:/.test(src) || /^(git|ssh):\/\//i.test(src)) return 'git';
  const m = /^https?:\/\/[^#?]*/i.exec(src);
  if (m === null) return undefined;
  return m[0].replace(/\/+$/, '').endsWith('.git') ? 'git' : 'http';
}

/** Splits a git source into remote, ref and subdirectory (`https://h/r.git#v1.2:docs`). */
export function parseGitSource(src: string): GitSource {
  const hash = src.indexOf('#');
  const remote = hash < 0 ? src : src.slice(0, hash);
  const fragment = hash < 0 ? '' : src.slice(hash + 1);
  const colon = fragment.indexOf(':');
  const ref = colon < 0 ? fragment : fragment.slice(0, colon);
  const rawSubdir = colon < 0 ? '' : fragment.slice(colon + 1);
  const subdir = posix.normalize(`/${rawSubdir}`).slice(1).replace(/\/+$/, '');
  if (ref.startsWith('-') || /[\s\\~^:?*[]/.test(ref) || ref.includes('..')) {
    throw new TsbuildError('SOLVE_BAD_GIT_REF', `invalid git ref "${ref}" in ADD ${src}`);
  }
  return { remote, ...(ref === '' ? {} : { ref }), subdir };
}

/** The file name of an ADD of an http(s) URL: the URL path's base name, or `__unnamed__` (BuildKit). */
export function urlFileName(url: string): string {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return '__unnamed__';
  }
  let base: string;
  try {
    base = posix.basename(decodeURIComponent(path));
  } catch {
    base = posix.basename(path);
  }
  return base === '' || base === '.' || base === '..' || base === '/' || base.includes('/') ? '__unnamed__' : base;
}
