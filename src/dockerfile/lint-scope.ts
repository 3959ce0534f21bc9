import { isTsbuildError } from '../core/index.js';
import { expandWord } from './expand.js';
import type { Dockerfile, Instruction, Stage } from './instructions.js';

/** Platform ARGs BuildKit defines in the global scope (usable in FROM without declaration). */
export const PLATFORM_ARGS: readonly string[] = [
  'TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT', 'BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT',
];

/** Proxy ARGs that are usable without an ARG declaration. */
export const PROXY_ARGS: readonly string[] = [
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy',
  'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
];

/**
 * Environment assumed for a stage whose base is an external image (its config is not known to
 * the linter): the PATH every official base image sets.
 */
export const EXTERNAL_BASE_ENV: readonly string[] = ['PATH'];

/** Names referenced only through a form that handles unset (`${X:-d}`, `${X+a}`, `${X:?m}`). */
function guardedOnly(word: string): Set<string> {
  const guarded = new Set<string>();
  for (const m of word.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*):?[-+?]/g)) guarded.add(m[1] as string);
  for (const m of word.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g)) guarded.delete(m[1] as string);
  for (const m of word.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_]|:?[-+?])/g)) guarded.delete(m[1] as string);
  return guarded;
}

/**
 * Names that `word` references while they are not in `defined` (B's expansion does the lexing;
 * quotes and escapes are honoured). Names used only with a default/alternative/error modifier
 * are not reported. Malformed words report nothing (the planner reports them as errors).
 */
export function undefinedNames(word: string, defined: { has(name: string): boolean }, escape: '\\' | '`'): string[] {
  if (!word.includes('$')) return [];
  try {
    const r = expandWord(word, (n) => (defined.has(n) ? '' : undefined), { escape });
    const guarded = guardedOnly(word);
    return r.unset.filter((n) => !guarded.has(n));
  } catch (err) {
    if (isTsbuildError(err)) return [];
    throw err;
  }
}

/** Expands `word` with `lookup`, or undefined when the word is malformed. */
export function tryExpand(word: string, lookup: (n: string) => string | undefined, escape: '\\' | '`'): string | undefined {
  try {
    return expandWord(word, lookup, { escape }).value;
  } catch (err) {
    if (isTsbuildError(err)) return undefined;
    throw err;
  }
}

/** The words of an instruction the builder expands (where UndefinedVar applies). */
export function expandedWords(ins: Instruction): string[] {
  switch (ins.kind) {
    case 'ADD':
    case 'COPY': {
      const docs = new Set(ins.heredocs.map((h) => h.name));
      return [
        ...ins.sources.filter((s) => !docs.has(s)), ins.dest,
        ...[ins.from, ins.chown, ins.chmod].filter((x): x is string => x !== undefined),
      ];
    }
    case 'LABEL':
      return ins.pairs.flatMap((p) => [p.key, p.value]);
    case 'ENV':
      return ins.pairs.map((p) => p.value);
    case 'ARG':
      return ins.args.flatMap((a) => (a.default === undefined ? [] : [a.default]));
    case 'EXPOSE':
      return [...ins.ports];
    case 'VOLUME':
      return [...ins.paths];
    case 'STOPSIGNAL':
      return [ins.signal];
    case 'USER':
      return [ins.user];
    case 'WORKDIR':
      return [ins.path];
    default:
      return [];
  }
}

/** Names a global-scope lookup sees: global ARGs and the platform ARGs. */
export function globalScope(df: Dockerfile): Set<string> {
  return new Set([...PLATFORM_ARGS, ...df.globalArgs.flatMap((a) => a.args.map((d) => d.name))]);
}

/** Index of the earlier stage a FROM refers to (by name, case-insensitive), if any. */
export function baseStageIndex(df: Dockerfile, stage: Stage, escape: '\\' | '`'): number | undefined {
  const defaults = new Map<string, string>();
  for (const a of df.globalArgs) for (const d of a.args) defaults.set(d.name, d.default ?? '');
  const image = (tryExpand(stage.from.image, (n) => defaults.get(n), escape) ?? stage.from.image).toLowerCase();
  const found = df.stages.find((s) => s.index < stage.index && s.name === image);
  return found?.index;
}
