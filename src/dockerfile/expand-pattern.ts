/**
 * Shell-pattern helpers of expand.ts, with the semantics of BuildKit's lex.go (which converts
 * patterns to Go regular expressions): `*`, `?`, `\`-escapes; brackets are literal.
 */

/** Internal expansion failure; expand.ts turns it into a TsbuildError. */
export class LexError extends Error {
  constructor(message: string, readonly required = false) {
    super(message);
  }
}

const REGEX_SPECIALS = new Set(['[', ']', '{', '}', '.', '+', '(', ')', '|', '^', '$']);

/**
 * Shell pattern (`*`, `?`, `\`-escapes; `[...]` is literal, as in BuildKit) to a RegExp with
 * Go semantics: `.` is any character but newline. `shown` names the pattern in errors.
 */
export function compilePattern(pattern: string, greedy: boolean, anchored: boolean, shown: string): RegExp {
  const any = '[^\\n]';
  const chars = Array.from(pattern);
  let out = anchored ? '^' : '';
  for (let i = 0; i < chars.length; i++) {
    let tok = chars[i] as string;
    if (tok === '*') {
      out += greedy ? `${any}*` : `${any}*?`;
      continue;
    }
    if (tok === '?') {
      out += any;
      continue;
    }
    if (tok === '\\') {
      const nx = chars[i + 1];
      if (nx === '}' || nx === '/') continue; // the escape protected ${} syntax only
      i++;
      if (nx !== '*' && nx !== '?' && nx !== '\\') {
        throw new LexError(`invalid pattern (${shown}) in substitution: invalid escape '\\${nx ?? '\ufffd'}'`);
      }
      out += '\\';
      tok = nx;
    } else if (REGEX_SPECIALS.has(tok)) {
      out += '\\';
    }
    out += tok;
  }
  return new RegExp(out, 'gu');
}

/** Removes the shortest (or longest, `greedy`) prefix matching `pattern` from `value`. */
export function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const re = compilePattern(pattern, greedy, true, pattern);
  re.lastIndex = 0;
  const m = re.exec(value);
  return m === null ? value : value.slice(m.index + m[0].length);
}

/** Reverses a pattern keeping `\x` escape pairs in order (`a\*c` -> `c\*a`). */
function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const out = new Array<string>(runes.length);
  const last = runes.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = runes[i] as string;
    const o = last - i;
    if (tok === '\\' && i !== last) {
      out[o - 1] = tok;
      out[o] = runes[i + 1] as string;
      i += 2;
    } else {
      out[o] = tok;
      i++;
    }
  }
  return out.join('');
}

function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

/** Removes a suffix by matching the reversed pattern against the reversed value (as BuildKit). */
export function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

/** Width in UTF-16 units of the code point at `i` (1 at the end, like Go's searchPos++). */
function measureCharWidth(s: string, i: number): number {
  const cp = s.codePointAt(i);
  return cp !== undefined && cp > 0xffff ? 2 : 1;
}

/** Go's Regexp.Expand for a pattern without groups: `$$`, `$0`/`${0}`; other names expand to ''. */
function expandTemplate(template: string, match: string): string {
  let out = '';
  let rest = template;
  for (;;) {
    const at = rest.indexOf('$');
    if (at === -1) break;
    out += rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (rest.startsWith('$')) {
      out += '$';
      rest = rest.slice(1);
      continue;
    }
    const m = /^(\{)?([\p{L}\p{Nd}_]+)/u.exec(rest);
    const brace = m?.[1] !== undefined;
    if (m === null || (brace && rest[m[0].length] !== '}')) {
      out += '$';
      continue;
    }
    const name = m[2] as string;
    rest = rest.slice(m[0].length + (brace ? 1 : 0));
    if (name === '0') out += match;
  }
  return out + rest;
}

/** Go's Regexp.ReplaceAllString (empty matches right after a match are not replaced). */
export function replaceAllGo(re: RegExp, src: string, template: string): string {
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= src.length) {
    re.lastIndex = searchPos;
    const m = re.exec(src);
    if (m === null) break;
    const start = m.index;
    const end = start + m[0].length;
    out += src.slice(lastMatchEnd, start);
    if (end > lastMatchEnd || start === 0) out += expandTemplate(template, m[0]);
    lastMatchEnd = end;
    const width = searchPos < src.length ? measureCharWidth(src, searchPos) : 0;
    if (searchPos + width > end) searchPos += width;
    else if (searchPos + 1 > end) searchPos++;
    else searchPos = end;
  }
  return out + src.slice(lastMatchEnd);
}

