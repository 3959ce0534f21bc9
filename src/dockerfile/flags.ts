import { suggest, TsbuildError, type SourceLocation } from '../core/index.js';
import { parseBool } from './directives.js';
import type { InstructionKind } from './instructions.js';
import type { RawFlag } from './lex.js';

/** How a flag takes its value. */
type FlagKind = 'string' | 'bool' | 'multi';

/** The flags each instruction accepts (BuildKit's dockerfile frontend). */
export const INSTRUCTION_FLAGS: Readonly<Partial<Record<InstructionKind, Readonly<Record<string, FlagKind>>>>> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'multi', network: 'string', security: 'string' },
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'multi' },
  ADD: {
    chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'multi',
    checksum: 'string', 'keep-git-dir': 'bool',
  },
  HEALTHCHECK: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

/** Parsed flags of one instruction. */
export interface FlagValues {
  readonly strings: ReadonlyMap<string, string>;
  readonly bools: ReadonlyMap<string, boolean>;
  readonly multi: ReadonlyMap<string, readonly string[]>;
  /** True when any flag was given. */
  readonly any: boolean;
}

/** The (immutable) result for an instruction without flags. */
const NO_FLAGS: FlagValues = Object.freeze({
  strings: new Map<string, string>(),
  bools: new Map<string, boolean>(),
  multi: new Map<string, readonly string[]>(),
  any: false,
});

/**
 * Checks the raw flags against what `kind` accepts. Fails with DF_UNKNOWN_FLAG (with a
 * did-you-mean hint), DF_BAD_FLAG for a missing or repeated value or a non-boolean.
 */
export function validateFlags(kind: InstructionKind, raw: readonly RawFlag[], loc: SourceLocation): FlagValues {
  if (raw.length === 0) return NO_FLAGS;
  const spec = INSTRUCTION_FLAGS[kind] ?? {};
  const strings = new Map<string, string>();
  const bools = new Map<string, boolean>();
  const multi = new Map<string, string[]>();
  for (const f of raw) {
    const type = Object.hasOwn(spec, f.name) ? spec[f.name] : undefined;
    if (type === undefined) {
      const names = Object.keys(spec);
      const s = f.name === '' ? undefined : suggest(f.name, names);
      const hint =
        s !== undefined ? `did you mean --${s}?` : names.length === 0 ? `${kind} takes no flags` : `${kind} takes ${names.map((n) => `--${n}`).join(', ')}`;
      throw new TsbuildError('DF_UNKNOWN_FLAG', `unknown flag ${f.text.split('=')[0] ?? f.text} for ${kind}`, { loc, hint });
    }
    if (type === 'bool') {
      if (bools.has(f.name)) throw new TsbuildError('DF_BAD_FLAG', `duplicate flag --${f.name}`, { loc });
      const b = f.value === undefined ? true : parseBool(f.value);
      if (b === undefined) throw new TsbuildError('DF_BAD_FLAG', `--${f.name} takes true or false, not "${f.value ?? ''}"`, { loc });
      bools.set(f.name, b);
      continue;
    }
    if (f.value === undefined) {
      throw new TsbuildError('DF_BAD_FLAG', `missing a value on flag --${f.name}`, { loc, hint: `write --${f.name}=<value>` });
    }
    if (type === 'multi') {
      multi.set(f.name, [...(multi.get(f.name) ?? []), f.value]);
      continue;
    }
    if (strings.has(f.name)) throw new TsbuildError('DF_BAD_FLAG', `duplicate flag --${f.name}`, { loc });
    strings.set(f.name, f.value);
  }
  return { strings, bools, multi, any: raw.length > 0 };
}
