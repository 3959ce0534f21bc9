/**
 * `.dockerignore` rules with Docker's exact semantics: the reader of moby/patternmatcher's
 * `ignorefile` (comments, trimming, `!` negation, clean + drop the leading `/`) and the matcher
 * of moby/patternmatcher (patterns become anchored regular expressions; `**` crosses directories;
 * later rules win; a rule matching a directory matches everything below it).
 */
import { TsbuildError } from '../core/index.js';
import { cleanGoPath, matchGoPattern } from './go-path.js';

/** One compiled ignore rule. */
export interface IgnoreRule {
  /** The cleaned pattern without its `!`. */
  readonly pattern: string;
  /** True for a `!` rule (re-includes what earlier rules excluded). */
  readonly negated: boolean;
  /** Tests a `/`-separated context-relative path against this rule alone (no parent logic). */
  readonly test: (path: string) => boolean;
}

/** Per-rule match state of a directory, handed to its children (patternmatcher's MatchInfo). */
export type ParentMatchInfo = readonly boolean[] | undefined;

/** Compiled `.dockerignore` rules. */
export interface IgnoreMatcher {
  readonly rules: readonly IgnoreRule[];
  /** True when some rule is a `!` rule. */
  readonly hasNegations: boolean;
  /**
   * Docker's MatchesUsingParentResults: whether `path` is excluded, given the state of its parent
   * directory (undefined for top-level entries or when unknown, then parents are checked by path).
   */
  matches(path: string, parent?: ParentMatchInfo): { excluded: boolean; info: readonly boolean[] };
  /** True when an excluded directory `dir` must still be walked because a `!` rule may re-include something below it. */
  mustDescend(dir: string): boolean;
}

/**
 * Parses `.dockerignore` text into patterns exactly as Docker's reader does: UTF-8 BOM dropped,
 * lines starting with `#` skipped, whitespace trimmed, empty lines skipped, patterns cleaned and
 * a leading `/` removed (also after `!`). Returns the patterns (negations keep their `!`).
 */
export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] as string;
    if (i === lines.length - 1 && line === '') break;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (i === 0 && line.startsWith('\uFEFF')) line = line.slice(1);
    if (line.startsWith('#')) continue;
    let pattern = line.trim();
    if (pattern === '') continue;
    const invert = pattern.startsWith('!');
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanGoPath(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    out.push(invert ? `!${pattern}` : pattern);
  }
  return out;
}

/** Characters escaped when building the regular expression (no meaning in filepath.Match). */
const ESCAPED = new Set(['.', '+', '(', ')', '|', '{', '}', '$']);
/** `?` and `*` of a pattern: any character but `/` (a surrogate pair counts as one character, as a Go rune). */
const ONE_CHAR = '(?:[\\uD800-\\uDBFF][\\uDC00-\\uDFFF]|[^/])';

/** Compiles one cleaned pattern as patternmatcher does (exact, prefix, suffix or regexp match). */
function compileTest(pattern: string): (path: string) => boolean {
  let re = '^';
  let kind: 'exact' | 'prefix' | 'suffix' | 'regexp' = 'exact';
  const chars = Array.from(pattern);
  for (let i = 0, k = 0; k < chars.length; i++) {
    const ch = chars[k++] as string;
    if (ch === '*') {
      if (chars[k] === '*') {
        k++;
        if (chars[k] === '/') k++;
        if (k >= chars.length) {
          if (kind === 'exact') kind = 'prefix';
          else {
            re += '[^\\n]*';
            kind = 'regexp';
          }
        } else {
          re += '(?:[^\\n]*/)?';
          kind = 'regexp';
        }
        if (i === 0) kind = 'suffix';
      } else {
        re += '[^/]*';
        kind = 'regexp';
      }
    } else if (ch === '?') {
      re += ONE_CHAR;
      kind = 'regexp';
    } else if (ESCAPED.has(ch)) {
      re += `\\${ch}`;
    } else if (ch === '\\') {
      if (k < chars.length) {
        re += `\\${chars[k++] as string}`;
        kind = 'regexp';
      } else {
        re += '\\\\';
      }
    } else if (ch === '[' || ch === ']') {
      re += ch;
      kind = 'regexp';
    } else {
      re += ch;
    }
  }
  switch (kind) {
    case 'exact':
      return (path) => path === pattern;
    case 'prefix': {
      const prefix = pattern.slice(0, -2);
      return (path) => path.startsWith(prefix);
    }
    case 'suffix': {
      const suffix = pattern.slice(2);
      return (path) => path.endsWith(suffix) || (suffix.startsWith('/') && path === suffix.slice(1));
    }
    default: {
      let rx: RegExp;
      try {
        rx = new RegExp(`${re}$`);
      } catch (e) {
        // Docker fails the build when its regexp does not compile (e.g. "[z-a]"); so do we, earlier.
        throw new TsbuildError('CTX_BAD_IGNORE_PATTERN', `invalid pattern "${pattern}": ${(e as Error).message}`, { cause: e });
      }
      return (path) => rx.test(path);
    }
  }
}

/**
 * Compiles `.dockerignore` patterns (as returned by {@link parseDockerignore}) into a matcher.
 * Throws `CTX_BAD_IGNORE_PATTERN` for `!` alone or a pattern Go's filepath.Match rejects.
 */
export function compileIgnore(patterns: readonly string[], file = '.dockerignore'): IgnoreMatcher {
  const rules: IgnoreRule[] = [];
  for (const raw of patterns) {
    let p = raw.trim();
    if (p === '') continue;
    p = cleanGoPath(p);
    let negated = false;
    if (p.startsWith('!')) {
      if (p.length === 1) throw new TsbuildError('CTX_BAD_IGNORE_PATTERN', `${file}: illegal exclusion pattern "!"`);
      negated = true;
      p = p.slice(1);
    }
    if (matchGoPattern(p, '.').bad) {
      throw new TsbuildError('CTX_BAD_IGNORE_PATTERN', `${file}: syntax error in pattern "${raw}"`, {
        hint: 'patterns use Go filepath.Match syntax: * ? [a-z] [^a-z] \\x and **',
      });
    }
    rules.push({ pattern: p, negated, test: compileTest(p) });
  }
  return createMatcher(rules);
}

/** A pattern without a trailing `/**` and then `/*` (fsutil's patternWithoutTrailingGlob). */
function withoutTrailingGlob(pattern: string): string {
  let p = pattern.endsWith('/**') ? pattern.slice(0, -3) : pattern;
  if (p.endsWith('/*')) p = p.slice(0, -2);
  return p;
}

function createMatcher(rules: readonly IgnoreRule[]): IgnoreMatcher {
  const hasNegations = rules.some((r) => r.negated);
  // fsutil: an exception "has wildcards" when, without its trailing glob, it contains one of *[]?^\
  const negationPrefixes = rules.filter((r) => r.negated).map((r) => withoutTrailingGlob(r.pattern));
  const onlyPrefixNegations = negationPrefixes.every((p) => !/[*[\]?^\\]/.test(p));
  return {
    rules,
    hasNegations,
    matches(path, parent) {
      const info: boolean[] = new Array<boolean>(rules.length).fill(false);
      let excluded = false;
      for (let i = 0; i < rules.length; i++) {
        const rule = rules[i] as IgnoreRule;
        let match = parent !== undefined && parent.length > 0 ? (parent[i] ?? false) : false;
        if (!match) {
          if (rule.negated !== excluded) continue;
          match = rule.test(path);
          if (!match && (parent === undefined || parent.length === 0)) match = testParents(rule, path);
        }
        info[i] = match;
        if (match) excluded = !rule.negated;
      }
      return { excluded, info };
    },
    mustDescend(dir) {
      if (!hasNegations) return false;
      // As BuildKit's sender (fsutil): an excluded directory is walked whenever some exception has
      // wildcards; otherwise only when an exception lies below (or is) this directory.
      if (!onlyPrefixNegations) return true;
      const dirSlash = `${dir}/`;
      return negationPrefixes.some((p) => `${p}/`.startsWith(dirSlash));
    },
  };
}

/** True when `rule` matches one of the ancestors of `path` (patternmatcher's parent check). */
function testParents(rule: IgnoreRule, path: string): boolean {
  let idx = path.indexOf('/');
  while (idx !== -1) {
    if (rule.test(path.slice(0, idx))) return true;
    idx = path.indexOf('/', idx + 1);
  }
  return false;
}
