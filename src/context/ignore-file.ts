/**
 * Finding and reading the ignore file of a build: `<Dockerfile>.dockerignore` next to the
 * Dockerfile wins over `.dockerignore` at the context root (Docker/BuildKit's rule).
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { compileIgnore, parseDockerignore, type IgnoreMatcher } from './dockerignore.js';

/** The ignore rules of a build and where they came from. */
export interface LoadedIgnore {
  /** The file read, or undefined when there is none (then nothing is excluded). */
  readonly file: string | undefined;
  readonly patterns: readonly string[];
  readonly matcher: IgnoreMatcher;
}

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new TsbuildError('CTX_READ', `cannot read ignore file ${path}: ${code ?? (e as Error).message}`, { cause: e });
  }
}

/**
 * Loads the ignore rules for a build of `contextDir`: `<dockerfilePath>.dockerignore` when the
 * Dockerfile is a file (pass undefined for a Dockerfile from stdin) and that file exists, else
 * `<contextDir>/.dockerignore`, else no rules. Throws CTX_BAD_IGNORE_PATTERN for invalid patterns.
 */
export function loadIgnore(contextDir: string, dockerfilePath?: string): LoadedIgnore {
  const candidates: string[] = [];
  if (dockerfilePath !== undefined) candidates.push(join(dirname(dockerfilePath), `${basename(dockerfilePath)}.dockerignore`));
  candidates.push(join(contextDir, '.dockerignore'));
  for (const file of candidates) {
    const text = readIfPresent(file);
    if (text === undefined) continue;
    const patterns = parseDockerignore(text);
    return { file, patterns, matcher: compileIgnore(patterns, file) };
  }
  return { file: undefined, patterns: [], matcher: compileIgnore([]) };
}
