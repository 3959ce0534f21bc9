/**
 * Ports of the two Go library functions Docker's context rules are defined by:
 * `path/filepath.Clean` and `path/filepath.Match` (Unix flavour: `/` separator, `\` escapes).
 * Pure functions; no I/O.
 */

/** Thrown-free result of {@link matchGoPattern}: `bad` is true when the pattern is malformed (Go's ErrBadPattern). */
export interface GoMatchResult {
  readonly matched: boolean;
  readonly bad: boolean;
}

/** Returns Go's `filepath.Clean(p)` for a `/`-separated path (lexical: `.`, `..` and repeated slashes). */
export function cleanGoPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  if (rooted) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

/** True when `segment` contains a character Go's `filepath.Match` treats specially (`*`, `?`, `[`, `\`). */
export function hasGoWildcards(segment: string): boolean {
  return /[*?[\\]/.test(segment);
}

class BadPattern extends Error {}

/** One code point of `s` at index `i` (a UTF-16 index), and its UTF-16 length. */
function codePointAt(s: string, i: number): [number, number] {
  const cp = s.codePointAt(i) as number;
  return [cp, cp > 0xffff ? 2 : 1];
}

/** Splits off a leading run of `*` and the following chunk up to the next unbracketed `*`. */
function scanChunk(pattern: string): { star: boolean; chunk: string; rest: string } {
  let star = false;
  let p = pattern;
  while (p.startsWith('*')) {
    p = p.slice(1);
    star = true;
  }
  let inRange = false;
  let i = 0;
  scan: for (; i < p.length; i++) {
    switch (p[i]) {
      case '\\':
        if (i + 1 < p.length) i++;
        break;
      case '[':
        inRange = true;
        break;
      case ']':
        inRange = false;
        break;
      case '*':
        if (!inRange) break scan;
        break;
      default:
        break;
    }
  }
  return { star, chunk: p.slice(0, i), rest: p.slice(i) };
}

/** Reads one possibly escaped character of a class; throws BadPattern like Go's getEsc. */
function getEsc(chunk: string): [number, string] {
  if (chunk.length === 0 || chunk[0] === '-' || chunk[0] === ']') throw new BadPattern();
  let c = chunk;
  if (c[0] === '\\') {
    c = c.slice(1);
    if (c.length === 0) throw new BadPattern();
  }
  const [r, n] = codePointAt(c, 0);
  const next = c.slice(n);
  if (next.length === 0) throw new BadPattern();
  return [r, next];
}

/** Go's matchChunk: the rest of `s` after matching `chunk` at its start, or null. Throws BadPattern. */
function matchChunk(chunkIn: string, sIn: string): string | null {
  let chunk = chunkIn;
  let s = sIn;
  let failed = false;
  while (chunk.length > 0) {
    if (!failed && s.length === 0) failed = true;
    const c = chunk[0];
    if (c === '[') {
      let r = -1;
      if (!failed) {
        const [cp, n] = codePointAt(s, 0);
        r = cp;
        s = s.slice(n);
      }
      chunk = chunk.slice(1);
      let negated = false;
      if (chunk.startsWith('^')) {
        negated = true;
        chunk = chunk.slice(1);
      }
      let match = false;
      let nrange = 0;
      for (;;) {
        if (chunk.startsWith(']') && nrange > 0) {
          chunk = chunk.slice(1);
          break;
        }
        let lo: number;
        let hi: number;
        [lo, chunk] = getEsc(chunk);
        hi = lo;
        if (chunk[0] === '-') [hi, chunk] = getEsc(chunk.slice(1));
        if (lo <= r && r <= hi) match = true;
        nrange++;
      }
      if (match === negated) failed = true;
    } else if (c === '?') {
      if (!failed) {
        if (s[0] === '/') failed = true;
        s = s.slice(codePointAt(s, 0)[1]);
      }
      chunk = chunk.slice(1);
    } else {
      if (c === '\\') {
        chunk = chunk.slice(1);
        if (chunk.length === 0) throw new BadPattern();
      }
      if (!failed) {
        if (chunk[0] !== s[0]) failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    }
  }
  return failed ? null : s;
}

function matchOrThrow(patternIn: string, nameIn: string): boolean {
  let pattern = patternIn;
  let name = nameIn;
  outer: while (pattern.length > 0) {
    const sc = scanChunk(pattern);
    pattern = sc.rest;
    if (sc.star && sc.chunk === '') return !name.includes('/');
    let err: unknown;
    try {
      const t = matchChunk(sc.chunk, name);
      if (t !== null && (t.length === 0 || pattern.length > 0)) {
        name = t;
        continue;
      }
    } catch (e) {
      err = e;
    }
    if (err !== undefined) throw err;
    if (sc.star) {
      for (let i = 0; i < name.length && name[i] !== '/'; i++) {
        const t = matchChunk(sc.chunk, name.slice(i + 1));
        if (t !== null) {
          if (pattern.length === 0 && t.length > 0) continue;
          name = t;
          continue outer;
        }
      }
    }
    while (pattern.length > 0) {
      const more = scanChunk(pattern);
      pattern = more.rest;
      matchChunk(more.chunk, '');
    }
    return false;
  }
  return name.length === 0;
}

/** Go's `filepath.Match(pattern, name)` on Unix: `*` and `?` never match `/`, `[...]` classes, `\` escapes. */
export function matchGoPattern(pattern: string, name: string): GoMatchResult {
  try {
    return { matched: matchOrThrow(pattern, name), bad: false };
  } catch (e) {
    if (e instanceof BadPattern) return { matched: false, bad: true };
    throw e;
  }
}
