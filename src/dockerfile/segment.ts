import { TsbuildError } from '../core/index.js';
import type { Heredoc } from './instructions.js';
import { detectJsonForm, extractFlags, splitWordsKeepQuotes } from './lex.js';

/** One logical instruction as cut from the text, before typing. Lines are 1-based. */
export interface RawInstruction {
  /** The keyword as written. */
  readonly keyword: string;
  /** Everything after the keyword on the logical line (continuations joined), start-trimmed. */
  readonly args: string;
  readonly line: number;
  readonly endLine: number;
  readonly heredocs: readonly Heredoc[];
  /** The original source lines, joined with `\n`. */
  readonly source: string;
}

const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;
const HEREDOC_KEYWORDS = new Set(['run', 'copy', 'add']);

/**
 * Cuts Dockerfile text into logical instructions exactly as BuildKit's line scanner does:
 * whole-line comments dropped, `escape`-continuations joined (comment and empty lines inside a
 * continuation skipped), heredoc bodies of RUN/COPY/ADD (also under ONBUILD) attached.
 * Fails with DF_UNTERMINATED_HEREDOC.
 */
export function segmentLines(lines: readonly string[], escape: string, file: string): RawInstruction[] {
  const esc = escape === '`' ? '`' : '\\\\';
  const continuation = new RegExp(`([^${esc}])${esc}[ \\t]*$|^${esc}[ \\t]*$`);
  const out: RawInstruction[] = [];
  let i = 0;
  while (i < lines.length) {
    const start = i;
    let first = stripCr(lines[i] as string).trimStart();
    i++;
    if (first.startsWith('#')) first = '';
    let { text: line, more } = trimContinuation(first, continuation);
    if (!more && line === '') continue;
    while (more && i < lines.length) {
      const raw = stripCr(lines[i] as string);
      i++;
      const trimmed = raw.trimStart();
      if (trimmed.startsWith('#') || trimmed === '') continue;
      const next = trimContinuation(raw, continuation);
      line += next.text;
      more = next.more;
    }
    const trimmed = line.trim();
    if (trimmed === '') continue;
    const m = /^(\S+)(?:[\t\v\f\r ]+([\s\S]*))?$/.exec(trimmed);
    const keyword = m?.[1] ?? trimmed;
    const args = m?.[2] ?? '';
    const heredocs: Heredoc[] = [];
    if (args.includes('<<') && canContainHeredoc(keyword, args)) {
      for (const h of heredocsFromLine(trimmed)) {
        let content = '';
        let terminated = false;
        while (i < lines.length) {
          const body = stripCr(lines[i] as string);
          i++;
          const candidate = h.stripTabs ? body.replace(/^\t+/, '') : body;
          if (candidate === h.name) {
            terminated = true;
            break;
          }
          content += `${body}\n`;
        }
        if (!terminated) {
          throw new TsbuildError('DF_UNTERMINATED_HEREDOC', `unterminated heredoc <<${h.name}: no line "${h.name}" ends it`, {
            loc: { file, line: start + 1, endLine: i },
            hint: `end the here-document with a line containing only ${h.name}`,
          });
        }
        heredocs.push({ ...h, content: h.stripTabs ? content.replace(/^\t+/gm, '') : content });
      }
    }
    out.push({
      keyword,
      args,
      line: start + 1,
      endLine: i,
      heredocs,
      source: lines.slice(start, i).map(stripCr).join('\n'),
    });
  }
  return out;
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

function trimContinuation(line: string, re: RegExp): { text: string; more: boolean } {
  if (!re.test(line)) return { text: line, more: false };
  return { text: line.replace(re, '$1'), more: true };
}

/** RUN/COPY/ADD (directly or under ONBUILD) not in JSON form. */
function canContainHeredoc(keyword: string, args: string): boolean {
  let kw = keyword.toLowerCase();
  let rest = args;
  if (kw === 'onbuild') {
    const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(args.trim());
    kw = (m?.[1] ?? '').toLowerCase();
    rest = m?.[2] ?? '';
  }
  if (!HEREDOC_KEYWORDS.has(kw)) return false;
  return detectJsonForm(extractFlags(rest).rest).kind !== 'json';
}

/** The heredoc openers (`<<EOF`, `<<-EOF`, `3<<"EOF"`) among the words of a logical line. */
export function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  const docs: Omit<Heredoc, 'content'>[] = [];
  for (const word of splitWordsKeepQuotes(line, '\\')) {
    const h = parseHeredocWord(word);
    if (h !== undefined) docs.push(h);
  }
  return docs;
}

/** Parses one word as a heredoc opener, or undefined when it is not one. */
export function parseHeredocWord(word: string): Omit<Heredoc, 'content'> | undefined {
  const m = HEREDOC_WORD.exec(word);
  if (m === null) return undefined;
  const rest = m[3] as string;
  if (rest === '') return undefined;
  const { text: name, quoted } = unquote(rest);
  if (name === '') return undefined;
  const fd = m[1] === '' ? undefined : Number.parseInt(m[1] as string, 10);
  return { name, expand: !quoted, stripTabs: m[2] === '-', ...(fd === undefined ? {} : { fd }) };
}

/** Removes shell quotes and backslash escapes; reports whether any quote was present. */
function unquote(word: string): { text: string; quoted: boolean } {
  let text = '';
  let quote: string | undefined;
  let quoted = false;
  for (let i = 0; i < word.length; i++) {
    const c = word[i] as string;
    if (quote === undefined && (c === '"' || c === "'")) {
      quote = c;
      quoted = true;
    } else if (quote === c) quote = undefined;
    else if (c === '\\' && quote !== "'" && i + 1 < word.length) {
      i++;
      text += word[i] as string;
    } else text += c;
  }
  return { text, quoted };
}
