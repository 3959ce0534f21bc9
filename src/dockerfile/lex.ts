/**
 * Low-level lexing helpers shared by the parser: word splitting that keeps quotes, leading
 * `--flag` extraction, JSON-form detection. All pure, no expansion.
 */

/** Returns true when `c` is parser whitespace (BuildKit's `[\t\v\f\r ]` plus newline). */
export function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
}

/** Splits on runs of whitespace (no quote handling), dropping empty words. */
export function splitWhitespace(text: string): string[] {
  return text.split(/[\t\v\f\r\n ]+/).filter((w) => w !== '');
}

/**
 * Splits `text` into words on unquoted whitespace, keeping quotes and escapes in the words
 * (BuildKit's parseWords, used by ENV, LABEL and ARG). `escape` is the directive's escape char.
 */
export function splitWordsKeepQuotes(text: string, escape: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote: string | undefined;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote === undefined && isSpace(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === escape && quote !== "'") {
      // BuildKit drops an escape character at the very end of the text.
      if (i + 1 < text.length) word += c + (text[i + 1] as string);
      i++;
      continue;
    }
    if (quote === undefined && (c === '"' || c === "'")) quote = c;
    else if (quote === c) quote = undefined;
    word += c;
  }
  if (inWord) words.push(word);
  return words;
}

/** One leading `--name[=value]` flag of an instruction. */
export interface RawFlag {
  readonly name: string;
  /** undefined for a bare `--name`. Quotes removed. */
  readonly value: string | undefined;
  /** The flag as written (for messages). */
  readonly text: string;
}

/**
 * Extracts the leading `--flag[=value]` words of an instruction's arguments (BuildKit's
 * extractBuilderFlags: quotes inside a flag word group and are removed). Returns the flags
 * and the remaining text (leading whitespace trimmed, otherwise untouched).
 */
export function extractFlags(text: string): { flags: RawFlag[]; rest: string } {
  const flags: RawFlag[] = [];
  let pos = 0;
  for (;;) {
    while (pos < text.length && isSpace(text[pos])) pos++;
    if (!text.startsWith('--', pos)) break;
    const start = pos;
    let word = '';
    let quote: string | undefined;
    while (pos < text.length) {
      const c = text[pos] as string;
      if (quote === undefined && isSpace(c)) break;
      if (quote === undefined && (c === '"' || c === "'")) quote = c;
      else if (quote === c) quote = undefined;
      else if (c === '\\' && quote === '"' && pos + 1 < text.length) {
        pos++;
        word += text[pos] as string;
      } else word += c;
      pos++;
    }
    const body = word.slice(2);
    const eq = body.indexOf('=');
    flags.push({
      name: eq < 0 ? body : body.slice(0, eq),
      value: eq < 0 ? undefined : body.slice(eq + 1),
      text: text.slice(start, pos),
    });
  }
  return { flags, rest: text.slice(pos) };
}

/** Result of looking at an instruction's arguments for a JSON (exec) form. */
export type JsonForm =
  | { readonly kind: 'json'; readonly values: string[] }
  | { readonly kind: 'bad'; readonly reason: string }
  | { readonly kind: 'none' };

/**
 * Decides whether `text` is a JSON array of strings (exec form), text that is clearly meant
 * as one but is malformed (`['a', 'b']`, a missing comma, a trailing comma), or shell text
 * (e.g. `[ -f x ] && y`, which is a valid shell command).
 */
export function detectJsonForm(text: string): JsonForm {
  const t = text.trim();
  if (!t.startsWith('[')) return { kind: 'none' };
  try {
    const parsed: unknown = JSON.parse(t);
    if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) return { kind: 'json', values: parsed as string[] };
  } catch {
    // fall through to the structural check
  }
  return looksLikeJsonList(t) ? { kind: 'bad', reason: jsonProblem(t) } : { kind: 'none' };
}

/** `[` quoted items separated by commas and/or spaces (optionally a trailing comma) `]`. */
function looksLikeJsonList(t: string): boolean {
  if (!t.endsWith(']')) return false;
  let i = 1;
  let items = 0;
  const skip = (): void => {
    while (i < t.length && isSpace(t[i])) i++;
  };
  for (;;) {
    skip();
    const c = t[i];
    if (c === ']') return items > 0 && i === t.length - 1;
    if (c === ',') {
      i++;
      continue;
    }
    if (c !== '"' && c !== "'") return false;
    i++;
    while (i < t.length && t[i] !== c) i += t[i] === '\\' ? 2 : 1;
    if (i >= t.length) return false;
    i++;
    items++;
  }
}

function jsonProblem(t: string): string {
  if (t.includes("'")) return 'JSON strings must use double quotes, not single quotes';
  if (/"\s+"/.test(t)) return 'the JSON array is missing a comma between items';
  if (/,\s*\]$/.test(t)) return 'the JSON array has a trailing comma';
  return 'the JSON array is malformed';
}
