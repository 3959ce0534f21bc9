import { suggest, TsbuildError, type SourceLocation } from '../core/index.js';
import { parseGoDuration } from './duration.js';
import { validateFlags, type FlagValues } from './flags.js';
import type {
  ArgDecl, CommandForm, CopyInstruction, FromInstruction, Heredoc, RunInstruction, HealthcheckOptions, Instruction, InstructionKind, KeyValue,
} from './instructions.js';
import { detectJsonForm, extractFlags, splitWhitespace, splitWordsKeepQuotes } from './lex.js';
import { parseMount } from './mounts.js';
import { parseHeredocWord } from './segment.js';

/** Every instruction keyword of the Dockerfile reference. */
export const INSTRUCTION_KINDS: readonly InstructionKind[] = [
  'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT',
  'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL',
];

/** What the builder needs of one logical instruction. */
export interface InstructionInput {
  readonly keyword: string;
  readonly args: string;
  readonly heredocs: readonly Heredoc[];
  readonly loc: SourceLocation;
  readonly source: string;
  readonly escape: string;
}

const ARG_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const STAGE_NAME = /^[a-z][a-z0-9\-_.]*$/;

/** A writable view of a readonly model type, for building it up. */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Sets an optional property only when the value is defined (keeps JSON and deepEqual clean). */
function setIf<T, K extends keyof T>(obj: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) obj[key] = value;
}

/** Fails with DF_MISSING_ARGUMENT when an instruction's argument text is empty. */
function need(text: string, kind: string, loc: SourceLocation, what = 'at least one argument'): void {
  if (text === '') throw fail('MISSING_ARGUMENT', `${kind} requires ${what}`, loc);
}

function fail(code: string, message: string, loc: SourceLocation, hint?: string): TsbuildError {
  return new TsbuildError(`DF_${code}`, message, { loc, ...(hint === undefined ? {} : { hint }) });
}

/** Resolves a keyword to its kind, or fails with DF_UNKNOWN_INSTRUCTION and a suggestion. */
export function instructionKind(keyword: string, loc: SourceLocation): InstructionKind {
  const upper = keyword.toUpperCase();
  if ((INSTRUCTION_KINDS as readonly string[]).includes(upper)) return upper as InstructionKind;
  const s = suggest(upper, INSTRUCTION_KINDS);
  throw fail('UNKNOWN_INSTRUCTION', `unknown instruction: ${keyword}`, loc, s === undefined ? undefined : `did you mean ${s}?`);
}

/**
 * Types and validates one logical instruction (words stay unexpanded). Fails with a DF_ code
 * and the instruction's location on any malformed input.
 */
export function buildInstruction(input: InstructionInput): Instruction {
  const { loc, keyword, source } = input;
  const kind = instructionKind(keyword, loc);
  const { flags: rawFlags, rest } = kind === 'ONBUILD' ? { flags: [], rest: input.args } : extractFlags(input.args);
  const flags = validateFlags(kind, rawFlags, loc);
  const base = { loc, keyword, source };
  const text = rest.trim();
  switch (kind) {
    case 'FROM': {
      need(text, kind, loc, 'an image');
      const words = splitWhitespace(text);
      if (words.length !== 1 && (words.length !== 3 || (words[1] as string).toLowerCase() !== 'as')) {
        throw fail('BAD_ARGUMENTS', 'FROM requires either one argument, or three: FROM <image> [AS <name>]', loc);
      }
      const alias = words[2];
      if (alias !== undefined && !STAGE_NAME.test(alias.toLowerCase())) {
        throw fail('BAD_STAGE_NAME', `invalid name for build stage: "${alias}", name can't start with a number or contain symbols`, loc);
      }
      const from: Mutable<FromInstruction> = { loc, keyword, source, kind, image: words[0] as string };
      setIf(from, 'platform', flags.strings.get('platform'));
      if (alias !== undefined) {
        from.alias = alias;
        from.asKeyword = words[1] as string;
      }
      return from;
    }
    case 'RUN': {
      need(text, kind, loc);
      const network = flags.strings.get('network');
      if (network !== undefined && network !== 'default' && network !== 'none' && network !== 'host') {
        throw fail('BAD_FLAG', `--network must be default, none or host, not "${network}"`, loc);
      }
      const security = flags.strings.get('security');
      if (security !== undefined && security !== 'sandbox' && security !== 'insecure') {
        throw fail('BAD_FLAG', `--security must be sandbox or insecure, not "${security}"`, loc);
      }
      const run: Mutable<RunInstruction> = {
        loc, keyword, source, kind, command: commandForm(kind, rest, loc),
        mounts: (flags.multi.get('mount') ?? []).map((m) => parseMount(m, loc)),
        heredocs: input.heredocs,
      };
      setIf(run, 'network', network);
      setIf(run, 'security', security);
      return run;
    }
    case 'CMD':
    case 'ENTRYPOINT':
      need(text, kind, loc);
      return { ...base, kind, command: commandForm(kind, rest, loc) };
    case 'SHELL': {
      const json = detectJsonForm(text);
      if (json.kind !== 'json') {
        throw fail('BAD_JSON', 'SHELL requires the arguments to be in JSON form', loc, 'write it as SHELL ["/bin/sh", "-c"]');
      }
      if (json.values.length === 0) throw fail('MISSING_ARGUMENT', 'SHELL requires at least one argument', loc);
      return { ...base, kind, shell: json.values };
    }
    case 'LABEL':
    case 'ENV': {
      need(text, kind, loc);
      const { pairs, legacy } = parseNameValues(kind, text, input.escape, loc);
      return kind === 'ENV' ? { ...base, kind, pairs, legacy } : { ...base, kind, pairs, ...(legacy ? { legacy } : {}) };
    }
    case 'MAINTAINER':
      need(text, kind, loc, 'a name');
      return { ...base, kind, name: text };
    case 'EXPOSE':
      need(text, kind, loc, 'at least one port');
      return { ...base, kind, ports: splitWhitespace(text) };
    case 'ADD':
    case 'COPY':
      return buildCopy(kind, input, flags, rest, base);
    case 'VOLUME': {
      need(text, kind, loc);
      const json = detectJsonForm(text);
      if (json.kind === 'bad') throw fail('BAD_JSON', `malformed JSON in VOLUME: ${json.reason}`, loc, 'write it as VOLUME ["/a", "/b"]');
      const paths = json.kind === 'json' ? json.values : splitWhitespace(text);
      if (paths.length === 0 || paths.some((p) => p.trim() === '')) throw fail('MISSING_ARGUMENT', 'VOLUME specified can not be an empty string', loc);
      return { ...base, kind, paths, json: json.kind === 'json' };
    }
    case 'USER':
      need(text, kind, loc, 'a user');
      return { ...base, kind, user: text };
    case 'WORKDIR':
      need(text, kind, loc, 'a path');
      return { ...base, kind, path: text };
    case 'STOPSIGNAL':
      need(text, kind, loc, 'a signal');
      if (splitWhitespace(text).length !== 1) throw fail('BAD_ARGUMENTS', 'STOPSIGNAL requires exactly one argument', loc);
      return { ...base, kind, signal: text };
    case 'ARG':
      need(text, kind, loc);
      return { ...base, kind, args: parseArgs(text, input.escape, loc) };
    case 'ONBUILD':
      return buildOnbuild(input, text, base);
    case 'HEALTHCHECK':
      return buildHealthcheck(flags, text, loc, base);
  }
}

function commandForm(kind: string, rest: string, loc: SourceLocation): CommandForm {
  const json = detectJsonForm(rest);
  if (json.kind === 'json') return { form: 'exec', args: json.values };
  if (json.kind === 'bad') {
    throw fail('BAD_JSON', `malformed JSON in ${kind}: ${json.reason}`, loc, `write the exec form with double quotes, e.g. ${kind} ["executable", "arg"], or drop the brackets for the shell form`);
  }
  return { form: 'shell', command: rest.trimStart() };
}

/** ENV/LABEL `k=v k2=v2` or the legacy `k v` (BuildKit's parseNameVal); quotes kept. */
function parseNameValues(kind: string, text: string, escape: string, loc: SourceLocation): { pairs: KeyValue[]; legacy: boolean } {
  const words = splitWordsKeepQuotes(text, escape);
  const first = words[0] as string;
  if (!first.includes('=')) {
    const m = /^(\S+)[\t\v\f\r\n ]+([\s\S]*)$/.exec(text);
    if (m === null || (m[2] as string).trim() === '') {
      throw fail('MISSING_VALUE', `${kind} ${first} has no value: ${kind} must have two arguments`, loc, `write ${kind} ${first}=<value>`);
    }
    return { pairs: [{ key: m[1] as string, value: m[2] as string }], legacy: true };
  }
  const pairs = words.map((word) => {
    const eq = word.indexOf('=');
    if (eq < 0) {
      throw fail('BAD_ARGUMENTS', `syntax error - can't find = in "${word}"; must be of the form name=value`, loc);
    }
    if (eq === 0) throw fail('BAD_ARGUMENTS', `${kind} names can not be blank`, loc);
    return { key: word.slice(0, eq), value: word.slice(eq + 1) };
  });
  return { pairs, legacy: false };
}

function parseArgs(text: string, escape: string, loc: SourceLocation): ArgDecl[] {
  return splitWordsKeepQuotes(text, escape).map((word) => {
    const eq = word.indexOf('=');
    const name = eq < 0 ? word : word.slice(0, eq);
    if (!ARG_NAME.test(name)) {
      throw fail('BAD_ARG_NAME', `invalid ARG name "${name}"`, loc, 'an ARG name starts with a letter or _ and holds letters, digits and _');
    }
    return eq < 0 ? { name } : { name, default: word.slice(eq + 1) };
  });
}

function buildCopy(
  kind: 'COPY' | 'ADD', input: InstructionInput, flags: FlagValues, rest: string,
  base: { loc: SourceLocation; keyword: string; source: string },
): CopyInstruction {
  const { loc } = base;
  const json = detectJsonForm(rest);
  if (json.kind === 'bad') throw fail('BAD_JSON', `malformed JSON in ${kind}: ${json.reason}`, loc, `write it as ${kind} ["src", "dest"]`);
  const words = json.kind === 'json' ? json.values : splitWhitespace(rest);
  if (words.length < 2) {
    throw fail('MISSING_ARGUMENT', `${kind} requires at least two arguments (sources and a destination)`, loc, `write ${kind} <src>... <dest>`);
  }
  const dest = words[words.length - 1] as string;
  if (json.kind !== 'json' && parseHeredocWord(dest) !== undefined) {
    throw fail('BAD_ARGUMENTS', `${kind} cannot have a heredoc as a destination`, loc, `write ${kind} <<EOF /path/to/file`);
  }
  const docs = new Set(input.heredocs.map((h) => h.name));
  const sources = words.slice(0, -1).map((w) => {
    if (json.kind === 'json') return w;
    const h = parseHeredocWord(w);
    return h !== undefined && docs.has(h.name) ? h.name : w;
  });
  const s = flags.strings;
  const copy: Mutable<CopyInstruction> = {
    loc, keyword: base.keyword, source: base.source, kind, sources, dest,
    link: flags.bools.get('link') ?? false,
    parents: flags.bools.get('parents') ?? false,
    exclude: flags.multi.get('exclude') ?? [],
    keepGitDir: flags.bools.get('keep-git-dir') ?? false,
    heredocs: input.heredocs,
    json: json.kind === 'json',
  };
  setIf(copy, 'from', s.get('from'));
  setIf(copy, 'chown', s.get('chown'));
  setIf(copy, 'chmod', s.get('chmod'));
  setIf(copy, 'checksum', s.get('checksum'));
  return copy;
}

function buildOnbuild(input: InstructionInput, text: string, base: { loc: SourceLocation; keyword: string; source: string }): Instruction {
  const { loc } = base;
  if (text === '') throw fail('MISSING_ARGUMENT', 'ONBUILD requires an instruction to run later', loc);
  const m = /^(\S+)(?:[\t\v\f\r\n ]+([\s\S]*))?$/.exec(text);
  const keyword = m?.[1] ?? text;
  const kind = instructionKind(keyword, loc);
  if (kind === 'ONBUILD' || kind === 'FROM' || kind === 'MAINTAINER') {
    throw fail('BAD_ONBUILD', `${kind} isn't allowed as an ONBUILD trigger`, loc);
  }
  const trigger = buildInstruction({ ...input, keyword, args: m?.[2] ?? '', source: text });
  // As BuildKit stores it in the image config: the trigger line, then each heredoc body and delimiter.
  const triggerSource = text + input.heredocs.map((h) => `\n${h.content}${h.name}`).join('');
  return { ...base, kind: 'ONBUILD', trigger, triggerSource };
}

function duration(flags: FlagValues, name: string, loc: SourceLocation): number | undefined {
  const v = flags.strings.get(name);
  if (v === undefined || v === '') return undefined;
  const ns = parseGoDuration(v);
  if (ns === undefined) throw fail('BAD_DURATION', `--${name}: "${v}" is not a duration`, loc, 'use Go duration syntax such as 30s, 1m30s, 1.5h or 300ms');
  if (ns === 0) return 0;
  if (ns < 1e6) throw fail('BAD_DURATION', `--${name} cannot be less than 1ms (got "${v}")`, loc);
  return ns;
}

function buildHealthcheck(flags: FlagValues, text: string, loc: SourceLocation, base: { loc: SourceLocation; keyword: string; source: string }): Instruction {
  if (text === '') throw fail('MISSING_ARGUMENT', 'HEALTHCHECK requires NONE or CMD <command>', loc);
  const m = /^(\S+)(?:[\t\v\f\r\n ]+([\s\S]*))?$/.exec(text);
  const type = (m?.[1] ?? '').toUpperCase();
  const rest = m?.[2] ?? '';
  if (type === 'NONE') {
    if (rest.trim() !== '') throw fail('BAD_ARGUMENTS', 'HEALTHCHECK NONE takes no arguments', loc);
    if (flags.any) throw fail('BAD_FLAG', 'HEALTHCHECK NONE takes no flags', loc);
    return { ...base, kind: 'HEALTHCHECK', check: { type: 'none' } };
  }
  if (type !== 'CMD') throw fail('BAD_ARGUMENTS', `unknown type "${m?.[1] ?? ''}" in HEALTHCHECK (try CMD)`, loc);
  if (rest.trim() === '') throw fail('MISSING_ARGUMENT', 'missing command after HEALTHCHECK CMD', loc);
  const retriesText = flags.strings.get('retries');
  let retries: number | undefined;
  if (retriesText !== undefined && retriesText !== '') {
    if (!/^[+-]?\d+$/.test(retriesText)) throw fail('BAD_FLAG', `--retries: "${retriesText}" is not an integer`, loc);
    retries = Number.parseInt(retriesText, 10);
    if (retries < 0) throw fail('BAD_FLAG', '--retries cannot be negative', loc);
  }
  const interval = duration(flags, 'interval', loc);
  const timeout = duration(flags, 'timeout', loc);
  const startPeriod = duration(flags, 'start-period', loc);
  const startInterval = duration(flags, 'start-interval', loc);
  const options: HealthcheckOptions = {
    ...(interval === undefined ? {} : { interval }),
    ...(timeout === undefined ? {} : { timeout }),
    ...(startPeriod === undefined ? {} : { startPeriod }),
    ...(startInterval === undefined ? {} : { startInterval }),
    ...(retries === undefined ? {} : { retries }),
  };
  return { ...base, kind: 'HEALTHCHECK', check: { type: 'cmd', command: commandForm('HEALTHCHECK CMD', rest, loc), options } };
}
