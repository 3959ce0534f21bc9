import { TsbuildError, type SourceLocation } from '../core/index.js';
import { LexError, compilePattern, replaceAllGo, trimPrefix, trimSuffix } from './expand-pattern.js';
import type { InstructionKind } from './instructions.js';

/**
 * Docker's shell-word expansion, written to behave exactly like BuildKit's
 * `frontend/dockerfile/shell/lex.go` (its quirks included, see fixtures/expand/words.txt):
 * `$VAR`, `${VAR}`, `${VAR:-w}` `${VAR-w}` `${VAR:+w}` `${VAR+w}` `${VAR:?m}` `${VAR?m}`,
 * `${VAR#p}` `${VAR##p}` `${VAR%p}` `${VAR%%p}`, `${VAR/p/r}` `${VAR//p/r}`; single and double
 * quotes are removed; the escape character (`\` or `` ` ``) escapes the next character.
 */

/** Looks a variable up; undefined means unset (distinct from set-but-empty). */
export type VarLookup = (name: string) => string | undefined;

/** Options of {@link expandWord} / {@link expandWords}. */
export interface ExpandOptions {
  /** The escape character from the `# escape=` directive (default backslash). */
  readonly escape?: '\\' | '`';
  /** Location attached to errors. */
  readonly loc?: SourceLocation;
}

/** Result of {@link expandWord}. */
export interface Expansion {
  readonly value: string;
  /** Names referenced, in textual order, unique. */
  readonly used: readonly string[];
  /** Names referenced for which the lookup returned undefined, in textual order. */
  readonly unset: readonly string[];
}

/** Result of {@link expandWords}. */
export interface WordsExpansion {
  readonly values: readonly string[];
  readonly used: readonly string[];
  readonly unset: readonly string[];
}

const EOF = undefined;
type Char = string | undefined;

/** Go's unicode.IsSpace. */
function isSpace(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 128) return c === 32 || (c >= 9 && c <= 13);
  return /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u.test(ch);
}

/** Go's unicode.IsDigit (category Nd). */
function isDigit(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 128) return c >= 48 && c <= 57;
  return /^\p{Nd}$/u.test(ch);
}

/** Go's unicode.IsLetter. */
function isLetter(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 128) return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  return /^\p{L}$/u.test(ch);
}

/** POSIX special parameters (`$@`, `$#`, ...), read as one-character names. */
function isSpecialParam(ch: string): boolean {
  return '@*#?-$!0'.includes(ch);
}

/** Word accumulator for field splitting (ProcessWords). */
class Fields {
  private word = '';
  private inWord = false;
  readonly words: string[] = [];

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.word.length > 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }

  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }

  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** One expansion run over one word (per call; no shared state). */
class Lexer {
  private readonly chars: string[];
  private pos = 0;
  private rawEscapes = false;
  /** Name -> whether it was set, in first-reference order. */
  readonly refs = new Map<string, boolean>();

  constructor(
    word: string,
    private readonly lookup: VarLookup,
    private readonly escape: string,
  ) {
    this.chars = Array.from(word);
  }

  private peek(): Char {
    return this.chars[this.pos];
  }

  private next(): Char {
    const ch = this.chars[this.pos];
    if (ch !== EOF) this.pos++;
    return ch;
  }

  private getEnv(name: string): string | undefined {
    if (name === '') return undefined;
    const value = this.lookup(name);
    this.refs.set(name, value !== undefined);
    return value;
  }

  /** Reserves the name's place in the reference order before its word is processed. */
  private noteName(name: string): void {
    if (name !== '' && !this.refs.has(name)) this.refs.set(name, false);
  }

  /** Processes until `stop` (consumed) or the end; returns the text and its fields. */
  processStopOn(stop: Char, rawEscapes: boolean): { text: string; words: string[] } {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let result = '';
      const fields = new Fields();
      for (let ch = this.peek(); ch !== EOF; ch = this.peek()) {
        if (stop !== EOF && ch === stop) {
          this.next();
          return { text: result, words: fields.finish() };
        }
        if (ch === '$') {
          const tmp = this.processDollar();
          result += tmp;
          fields.addString(tmp);
        } else if (ch === "'" || ch === '"') {
          const tmp = ch === "'" ? this.processSingleQuote() : this.processDoubleQuote();
          result += tmp;
          fields.addRawString(tmp);
        } else {
          let c = this.next() as string;
          if (c === this.escape) {
            if (this.rawEscapes) {
              fields.addRawChar(c);
              result += c;
            }
            const escaped = this.next();
            if (escaped === EOF) break;
            c = escaped;
            fields.addRawChar(c);
          } else {
            fields.addChar(c);
          }
          result += c;
        }
      }
      if (stop !== EOF) throw new LexError(`unexpected end of statement while looking for matching ${stop}`);
      return { text: result, words: fields.finish() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    this.next();
    let result = '';
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") return result;
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    this.next();
    let result = '';
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (p === '"') {
        this.next();
        return result;
      }
      if (p === '$') {
        result += this.processDollar();
        continue;
      }
      let ch = this.next() as string;
      if (ch === this.escape) {
        if (this.rawEscapes) result += ch;
        const q = this.peek();
        if (q === EOF) continue; // ignored; the loop then reports the missing quote
        if (q === '"' || q === '$' || q === this.escape) ch = this.next() as string;
      }
      result += ch;
    }
  }

  private processName(): string {
    let name = '';
    for (let ch = this.peek(); ch !== EOF; ch = this.peek()) {
      if (name.length === 0 && isDigit(ch)) {
        for (let d = this.peek(); d !== EOF && isDigit(d); d = this.peek()) name += this.next() as string;
        return name;
      }
      if (name.length === 0 && isSpecialParam(ch)) return this.next() as string;
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      name += this.next() as string;
    }
    return name;
  }

  /** `$name` / `${...}`; the scanner is on the `$`. */
  private processDollar(): string {
    this.next();
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      this.noteName(name);
      return this.getEnv(name) ?? '';
    }
    this.next();
    const first = this.peek();
    if (first === EOF) throw new LexError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LexError('syntax error: bad substitution');
    const name = this.processName();
    this.noteName(name);
    let ch = this.next();
    // BuildKit reports "unsupported modifier (\ufffd)" here; a clearer message, same outcome.
    if (ch === EOF) throw new LexError("syntax error: missing '}'");
    let chs: string = ch;
    if (ch === '}') return this.getEnv(name) ?? '';
    if (ch === '/') return this.processReplace(name);
    let nullIsUnset = false;
    if (ch === ':') {
      nullIsUnset = true;
      ch = this.next();
      chs += ch ?? '\ufffd';
    } else if (ch !== '+' && ch !== '-' && ch !== '?' && ch !== '#' && ch !== '%') {
      throw new LexError(`unsupported modifier (${chs}) in substitution`);
    }
    let word = this.processUntilBrace(ch === '#' || ch === '%');
    const value = this.getEnv(name);
    const set = value !== undefined;
    const empty = !set || (nullIsUnset && value === '');
    switch (ch) {
      case '-':
        return empty ? word : value ?? '';
      case '+':
        return empty ? '' : word;
      case '?':
        if (!set) throw new LexError(`${name}: ${word === '' ? 'is not allowed to be unset' : word}`, true);
        if (nullIsUnset && value === '') throw new LexError(`${name}: ${word === '' ? 'is not allowed to be empty' : word}`, true);
        return value;
      case '#':
      case '%': {
        let greedy = false;
        if (word.startsWith(ch)) {
          greedy = true;
          word = word.slice(1);
        }
        return ch === '%' ? trimSuffix(word, value ?? '', greedy) : trimPrefix(word, value ?? '', greedy);
      }
      default:
        throw new LexError(`unsupported modifier (${chs}) in substitution`);
    }
  }

  /** The word part of `${name<op>word}` up to the closing brace. */
  private processUntilBrace(rawEscapes: boolean): string {
    try {
      return this.processStopOn('}', rawEscapes).text;
    } catch (err) {
      if (this.peek() === EOF) throw new LexError("syntax error: missing '}'");
      throw err;
    }
  }

  /** `${name/pattern/replacement}` and `${name//pattern/replacement}`; the scanner is after the first `/`. */
  private processReplace(name: string): string {
    const all = this.peek() === '/';
    if (all) this.next();
    let pattern: string;
    try {
      pattern = this.processStopOn('/', true).text;
    } catch (err) {
      if (this.peek() === EOF) throw new LexError("syntax error: missing '/' in ${}");
      throw err;
    }
    const replacement = this.processUntilBrace(true);
    const value = this.getEnv(name) ?? '';
    const re = compilePattern(pattern, true, false, pattern);
    if (all) return replaceAllGo(re, value, replacement);
    re.lastIndex = 0;
    const m = re.exec(value);
    return m === null ? value : value.slice(0, m.index) + replacement + value.slice(m.index + m[0].length);
  }
}

function runLexer(text: string, lookup: VarLookup, options: ExpandOptions): { text: string; words: string[]; used: string[]; unset: string[] } {
  const lexer = new Lexer(text, lookup, options.escape ?? '\\');
  try {
    const { text: value, words } = lexer.processStopOn(EOF, false);
    const used = [...lexer.refs.keys()];
    const unset = [...lexer.refs].filter(([, set]) => !set).map(([name]) => name);
    return { text: value, words, used, unset };
  } catch (err) {
    if (!(err instanceof LexError)) throw err;
    const loc = options.loc === undefined ? {} : { loc: options.loc };
    const message = `failed to process ${JSON.stringify(text)}: ${err.message}`;
    if (err.required) throw new TsbuildError('DF_EXPAND_REQUIRED', message, loc);
    throw new TsbuildError('DF_BAD_SUBSTITUTION', message, loc);
  }
}

/**
 * Expands one word like BuildKit's ProcessWord: variables substituted, quotes and escapes
 * removed, whitespace kept. Throws DF_EXPAND_REQUIRED for `${VAR?m}`/`${VAR:?m}` on an
 * unset (or, with `:`, empty) variable and DF_BAD_SUBSTITUTION for malformed syntax.
 */
export function expandWord(word: string, lookup: VarLookup, options: ExpandOptions = {}): Expansion {
  // Fast path: nothing to expand, unquote or unescape means the word is its own value.
  if (!/[$'"]/.test(word) && !word.includes(options.escape ?? '\\')) return { value: word, used: [], unset: [] };
  const r = runLexer(word, lookup, options);
  return { value: r.text, used: r.used, unset: r.unset };
}

/**
 * Like {@link expandWord} but splits the result into fields on unquoted, unescaped whitespace
 * (BuildKit's ProcessWords); whitespace from variable values splits too; empty fields are dropped.
 */
export function expandWords(text: string, lookup: VarLookup, options: ExpandOptions = {}): WordsExpansion {
  const r = runLexer(text, lookup, options);
  return { values: r.words, used: r.used, unset: r.unset };
}

/**
 * Instructions whose arguments the builder expands (the Dockerfile reference's list, plus ARG
 * defaults); RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and MAINTAINER leave the text to the shell.
 * ONBUILD is true: its trigger is expanded when it runs in the child build, per the trigger's kind.
 */
export function expandsVariables(kind: InstructionKind): boolean {
  return EXPANDING.has(kind);
}

const EXPANDING: ReadonlySet<InstructionKind> = new Set<InstructionKind>([
  'ADD', 'COPY', 'ENV', 'EXPOSE', 'FROM', 'LABEL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR', 'ONBUILD', 'ARG',
]);
