import { TsbuildError } from '../core/index.js';

/**
 * A small subset of Go's text/template, as docker's `--format` uses it: fields (`{{.A.B}}`, `{{.}}`),
 * string/number literals, pipes (`|`), parentheses, the functions json, index, join, split, lower,
 * upper, title, len, print, println, eq, ne, not, and, or, and the actions if/else if/else/end and
 * range/else/end, with `{{-`/`-}}` trimming. `\t` and `\n` in literal text become tab and newline.
 * Anything else fails with CLI_BAD_VALUE naming the unsupported part. Pure.
 */

type Arg =
  | { readonly kind: 'field'; readonly path: readonly string[] }
  | { readonly kind: 'literal'; readonly value: unknown }
  | { readonly kind: 'func'; readonly name: string }
  | { readonly kind: 'pipe'; readonly pipe: Pipe };
type Pipe = readonly (readonly Arg[])[];
type Node =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'value'; readonly pipe: Pipe }
  | { readonly kind: 'if' | 'range'; readonly pipe: Pipe; readonly body: Node[]; elseBody: Node[] | undefined };

/** A parsed template, from {@link parseGoTemplate}. */
export interface GoTemplate {
  readonly source: string;
  readonly nodes: readonly Node[];
}

const FUNCTIONS = new Set(['json', 'index', 'join', 'split', 'lower', 'upper', 'title', 'len', 'print', 'println', 'eq', 'ne', 'not', 'and', 'or']);
const HINT = 'supported: {{.Field.Sub}}, {{json .X}}, {{index .Map "key"}}, {{join .List ","}}, {{lower/upper/title/len/print/println ...}}, {{eq/ne/not/and/or ...}}, pipes, {{if ...}}{{else}}{{end}}, {{range ...}}{{end}}';

function unsupported(what: string, source: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', `template "${source}": ${what} is not supported`, { hint: HINT, exitCode: 125 });
}

function badTemplate(what: string, source: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', `template "${source}": ${what}`, { hint: HINT, exitCode: 125 });
}

/** Splits the inside of one action into tokens: strings, numbers, fields, words, `|`, `(`, `)`. */
function tokenize(inner: string, source: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < inner.length) {
    const c = inner[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < inner.length && inner[j] !== '"') j += inner[j] === '\\' ? 2 : 1;
      if (j >= inner.length) throw badTemplate('unterminated string', source);
      tokens.push(inner.slice(i, j + 1));
      i = j + 1;
    } else if (c === '`') {
      const j = inner.indexOf('`', i + 1);
      if (j < 0) throw badTemplate('unterminated raw string', source);
      tokens.push(inner.slice(i, j + 1));
      i = j + 1;
    } else if (c === '|' || c === '(' || c === ')') {
      tokens.push(c);
      i++;
    } else {
      let j = i;
      while (j < inner.length && !/[\s|()"`]/.test(inner[j] as string)) j++;
      tokens.push(inner.slice(i, j));
      i = j;
    }
  }
  return tokens;
}

/** Parses tokens into a pipeline of commands (recursive for parentheses). */
function parsePipe(tokens: string[], pos: { i: number }, source: string, nested: boolean): Pipe {
  const cmds: Arg[][] = [[]];
  for (; pos.i < tokens.length; pos.i++) {
    const t = tokens[pos.i] as string;
    const cmd = cmds[cmds.length - 1] as Arg[];
    if (t === '|') {
      if (cmd.length === 0) throw badTemplate('missing command before "|"', source);
      cmds.push([]);
    } else if (t === '(') {
      pos.i++;
      cmd.push({ kind: 'pipe', pipe: parsePipe(tokens, pos, source, true) });
    } else if (t === ')') {
      if (!nested) throw badTemplate('unexpected ")"', source);
      if (cmd.length === 0) throw badTemplate('empty command', source);
      return cmds;
    } else {
      cmd.push(parseOperand(t, source));
    }
  }
  if (nested) throw badTemplate('unclosed "("', source);
  if ((cmds[cmds.length - 1] as Arg[]).length === 0) throw badTemplate('empty command', source);
  return cmds;
}

function parseOperand(t: string, source: string): Arg {
  if (t === '.') return { kind: 'field', path: [] };
  if (/^(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(t)) return { kind: 'field', path: t.slice(1).split('.') };
  if (t.startsWith('"')) {
    try {
      return { kind: 'literal', value: JSON.parse(t) as string };
    } catch {
      throw badTemplate(`bad string ${t}`, source);
    }
  }
  if (t.startsWith('`')) return { kind: 'literal', value: t.slice(1, -1) };
  if (/^-?\d+(\.\d+)?$/.test(t)) return { kind: 'literal', value: Number(t) };
  if (t === 'true' || t === 'false') return { kind: 'literal', value: t === 'true' };
  if (t === 'nil') return { kind: 'literal', value: null };
  if (FUNCTIONS.has(t)) return { kind: 'func', name: t };
  if (t.startsWith('$')) throw unsupported(`the variable "${t}"`, source);
  throw unsupported(`"${t}"`, source);
}

/** Parses a Go template of the supported subset. Throws CLI_BAD_VALUE naming the unsupported part. */
export function parseGoTemplate(source: string): GoTemplate {
  const root: Node[] = [];
  // Open if/range blocks; `chained` marks an `else if` that ends with its parent.
  const stack: { node: Extract<Node, { kind: 'if' | 'range' }>; inElse: boolean; chained: boolean }[] = [];
  const target = (): Node[] => {
    const top = stack[stack.length - 1];
    if (top === undefined) return root;
    return top.inElse ? (top.node.elseBody as Node[]) : top.node.body;
  };
  let rest = source;
  let trimNext = false;
  while (rest !== '') {
    const open = rest.indexOf('{{');
    let text = open < 0 ? rest : rest.slice(0, open);
    if (trimNext) text = text.replace(/^\s+/, '');
    trimNext = false;
    if (open < 0) {
      if (text !== '') target().push({ kind: 'text', text: unescapeText(text) });
      break;
    }
    let inner = rest.slice(open + 2);
    if (/^-\s/.test(inner)) {
      text = text.replace(/\s+$/, '');
      inner = inner.slice(1);
    }
    if (text !== '') target().push({ kind: 'text', text: unescapeText(text) });
    const close = findClose(inner);
    if (close < 0) throw badTemplate('unclosed action "{{"', source);
    let body = inner.slice(0, close);
    rest = inner.slice(close + 2);
    if (/\s-$/.test(body)) {
      body = body.slice(0, -1);
      trimNext = true;
    }
    body = body.trim();
    if (body.startsWith('/*')) continue; // a comment
    const tokens = tokenize(body, source);
    const head = tokens[0];
    if (head === undefined) throw badTemplate('empty action "{{}}"', source);
    if (head === 'if' || head === 'range') {
      if (tokens.length < 2) throw badTemplate(`missing value for ${head}`, source);
      const node: Extract<Node, { kind: 'if' | 'range' }> = { kind: head, pipe: parsePipe(tokens, { i: 1 }, source, false), body: [], elseBody: undefined };
      target().push(node);
      stack.push({ node, inElse: false, chained: false });
    } else if (head === 'else') {
      const top = stack[stack.length - 1];
      if (top === undefined || top.inElse) throw badTemplate('unexpected {{else}}', source);
      top.node.elseBody = [];
      top.inElse = true;
      if (tokens[1] === 'if') {
        if (top.node.kind !== 'if') throw unsupported('{{else if}} in range', source);
        if (tokens.length < 3) throw badTemplate('missing value for else if', source);
        const node = { kind: 'if' as const, pipe: parsePipe(tokens, { i: 2 }, source, false), body: [] as Node[], elseBody: undefined };
        top.node.elseBody.push(node);
        stack.push({ node, inElse: false, chained: true });
      } else if (tokens.length > 1) {
        throw unsupported(`{{else ${tokens.slice(1).join(' ')}}}`, source);
      }
    } else if (head === 'end') {
      if (tokens.length > 1) throw badTemplate('unexpected words after {{end}}', source);
      let top = stack.pop();
      if (top === undefined) throw badTemplate('unexpected {{end}}', source);
      while (top?.chained === true) top = stack.pop();
    } else if (['with', 'template', 'define', 'block', 'break', 'continue'].includes(head)) {
      throw unsupported(`{{${head}}}`, source);
    } else {
      target().push({ kind: 'value', pipe: parsePipe(tokens, { i: 0 }, source, false) });
    }
  }
  if (stack.length > 0) throw badTemplate(`unclosed {{${stack[stack.length - 1]?.node.kind ?? 'if'}}}: missing {{end}}`, source);
  return { source, nodes: root };
}

/** The index of the `}}` that closes an action, skipping quoted strings; -1 when none. */
function findClose(inner: string): number {
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i];
    if (c === '"') {
      for (i++; i < inner.length && inner[i] !== '"'; i += inner[i] === '\\' ? 2 : 1);
    } else if (c === '`') {
      const j = inner.indexOf('`', i + 1);
      if (j < 0) return -1;
      i = j;
    } else if (c === '}' && inner[i + 1] === '}') {
      return i;
    }
  }
  return -1;
}

/** `\t` and `\n` typed in a shell argument become tab and newline (as docker's formatter). */
function unescapeText(text: string): string {
  return text.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
}

function fieldOf(dot: unknown, path: readonly string[]): unknown {
  let v = dot;
  for (const key of path) v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[key] : undefined;
  return v;
}

/** Go's truth: false, 0, "", nil and empty lists/maps are false. */
function isTrue(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

/** Prints a value as Go's fmt %v does: `[a b]`, `map[k:v]`, `<no value>` for a missing one. */
export function printGoValue(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? '<nil>' : printGoValue(x))).join(' ')}]`;
  if (typeof v === 'object') return `map[${Object.keys(v).sort().map((k) => `${k}:${printGoValue((v as Record<string, unknown>)[k])}`).join(' ')}]`;
  return String(v);
}

/** Go's json.Marshal: HTML characters escaped. */
function toJson(v: unknown): string {
  return (JSON.stringify(v ?? null) ?? 'null').replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

function callFunction(name: string, args: unknown[], source: string): unknown {
  const need = (n: number): void => {
    if (args.length !== n) throw badTemplate(`${name} takes ${n} argument${n === 1 ? '' : 's'}, got ${args.length}`, source);
  };
  const str = (v: unknown): string => (typeof v === 'string' ? v : printGoValue(v));
  switch (name) {
    case 'json': need(1); return toJson(args[0]);
    case 'lower': need(1); return str(args[0]).toLowerCase();
    case 'upper': need(1); return str(args[0]).toUpperCase();
    case 'title': need(1); return str(args[0]).replace(/(^|[^\p{L}\p{N}'])(\p{L})/gu, (_m, a: string, b: string) => a + b.toUpperCase());
    case 'len': {
      need(1);
      const v = args[0];
      if (typeof v === 'string' || Array.isArray(v)) return v.length;
      if (v !== null && typeof v === 'object') return Object.keys(v).length;
      throw badTemplate(`len of ${printGoValue(v)}`, source);
    }
    case 'join': {
      need(2);
      const list = args[0];
      if (!Array.isArray(list)) throw badTemplate('join takes a list and a separator', source);
      return list.map(str).join(str(args[1]));
    }
    case 'split': need(2); return str(args[0]).split(str(args[1]));
    case 'index': {
      if (args.length < 2) throw badTemplate('index takes a value and at least one key', source);
      let v = args[0];
      for (const k of args.slice(1)) {
        if (Array.isArray(v)) {
          if (typeof k !== 'number' || !Number.isInteger(k)) throw badTemplate(`index of a list with ${printGoValue(k)}`, source);
          if (k < 0 || k >= v.length) throw badTemplate(`index ${k} out of range`, source);
          v = v[k];
        } else if (v !== null && typeof v === 'object') {
          v = (v as Record<string, unknown>)[str(k)];
        } else if (v === undefined || v === null) {
          v = undefined;
        } else {
          throw badTemplate(`cannot index ${printGoValue(v)}`, source);
        }
      }
      return v;
    }
    case 'print': return args.map(str).join('');
    case 'println': return `${args.map(str).join(' ')}\n`;
    case 'eq': {
      if (args.length < 2) throw badTemplate('eq takes at least 2 arguments', source);
      return args.slice(1).some((a) => a === args[0]);
    }
    case 'ne': need(2); return args[0] !== args[1];
    case 'not': need(1); return !isTrue(args[0]);
    case 'and': return args.length === 0 ? true : (args.find((a) => !isTrue(a)) ?? args[args.length - 1]);
    case 'or': return args.length === 0 ? false : (args.find((a) => isTrue(a)) ?? args[args.length - 1]);
    default: throw unsupported(`the function "${name}"`, source);
  }
}

function evalArg(a: Arg, dot: unknown, source: string): unknown {
  if (a.kind === 'field') return fieldOf(dot, a.path);
  if (a.kind === 'literal') return a.value;
  if (a.kind === 'pipe') return evalPipe(a.pipe, dot, source);
  return callFunction(a.name, [], source);
}

function evalPipe(pipe: Pipe, dot: unknown, source: string): unknown {
  let prev: { value: unknown } | undefined;
  for (const cmd of pipe) {
    const [head, ...rest] = cmd;
    if (head === undefined) throw badTemplate('empty command', source);
    let value: unknown;
    if (head.kind === 'func') {
      const args = rest.map((a) => evalArg(a, dot, source));
      if (prev !== undefined) args.push(prev.value);
      value = callFunction(head.name, args, source);
    } else {
      if (rest.length > 0 || prev !== undefined) throw badTemplate(`${printArg(head)} is not a function`, source);
      value = evalArg(head, dot, source);
    }
    prev = { value };
  }
  return prev?.value;
}

function printArg(a: Arg): string {
  return a.kind === 'field' ? `.${a.path.join('.')}` : a.kind === 'func' ? a.name : a.kind === 'literal' ? JSON.stringify(a.value) : '(...)';
}

function renderNodes(nodes: readonly Node[], dot: unknown, source: string, out: string[]): void {
  for (const n of nodes) {
    if (n.kind === 'text') out.push(n.text);
    else if (n.kind === 'value') {
      const v = evalPipe(n.pipe, dot, source);
      out.push(typeof v === 'string' ? v : printGoValue(v));
    } else if (n.kind === 'if') {
      if (isTrue(evalPipe(n.pipe, dot, source))) renderNodes(n.body, dot, source, out);
      else if (n.elseBody !== undefined) renderNodes(n.elseBody, dot, source, out);
    } else {
      const v = evalPipe(n.pipe, dot, source);
      const items = Array.isArray(v) ? v : v !== null && typeof v === 'object' ? Object.keys(v).sort().map((k) => (v as Record<string, unknown>)[k]) : undefined;
      if (items === undefined && v !== undefined && v !== null) throw badTemplate(`range over ${printGoValue(v)}`, source);
      if (items === undefined || items.length === 0) {
        if (n.elseBody !== undefined) renderNodes(n.elseBody, dot, source, out);
      } else {
        for (const item of items) renderNodes(n.body, item, source, out);
      }
    }
  }
}

/** Executes a parsed template with `data` as dot. Throws CLI_BAD_VALUE on a bad call (wrong arguments, out of range). */
export function executeGoTemplate(template: GoTemplate, data: unknown): string {
  const out: string[] = [];
  renderNodes(template.nodes, data, template.source, out);
  return out.join('');
}

/** Parses and executes `source` with `data` in one step. */
export function renderGoTemplate(source: string, data: unknown): string {
  return executeGoTemplate(parseGoTemplate(source), data);
}

/**
 * Aligns tab-separated lines as docker's table output (Go tabwriter, min width 10, padding 3):
 * every cell but the last of a line is padded to its column's widest cell.
 */
export function alignTabs(lines: readonly string[]): string {
  const rows = lines.map((l) => l.split('\t'));
  const widths: number[] = [];
  for (const r of rows) {
    r.slice(0, -1).forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 10, c.length + 3);
    });
  }
  return rows.map((r) => r.map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i] ?? 0) : c)).join('').trimEnd()).join('\n');
}
