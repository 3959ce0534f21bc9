import { suggest, type SourceLocation } from '../core/index.js';
import type { Dockerfile, Instruction, Stage } from './instructions.js';
import {
  baseStageIndex, EXTERNAL_BASE_ENV, expandedWords, globalScope, PLATFORM_ARGS, PROXY_ARGS, tryExpand, undefinedNames,
} from './lint-scope.js';

/** What every rule may consult besides the Dockerfile. */
export interface LintContext {
  /** `--build-arg` values; BuildKit's checks judge the Dockerfile itself, so no rule uses them yet. */
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly escape: '\\' | '`';
  /** Env names of an external base image when known (see LintOptions.baseImageEnv). */
  readonly baseImageEnv: (image: string) => readonly string[] | undefined;
}

/** One problem a rule found (the runner adds the rule name). */
export interface RuleFinding {
  readonly message: string;
  readonly loc: SourceLocation;
}

/** A lint rule as data: BuildKit's check name, a description, and a pure check. */
export interface LintRule {
  readonly name: string;
  readonly description: string;
  readonly check: (df: Dockerfile, ctx: LintContext) => readonly RuleFinding[];
}

/** Every instruction of the file in order (global ARGs, then each stage's FROM and body). */
export function allInstructions(df: Dockerfile): Instruction[] {
  return [...df.globalArgs, ...df.stages.flatMap((s) => [s.from, ...s.instructions])];
}

const isUpper = (s: string): boolean => s === s.toUpperCase();
const isLower = (s: string): boolean => s === s.toLowerCase();

/** `sensitive` names as BuildKit's SecretsUsedInArgOrEnv sees them. */
const SECRET_WORDS = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const PUBLIC_WORDS = /(?:_|^)(?:public)(?:_|$)/i;

/** Loose Docker reference check (name[:tag][@digest], lower-case repository path). */
const REFERENCE =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\d+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::\w[\w.-]{0,127})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,})?$/;

/** True when the JSON form is expected: a shell CMD/ENTRYPOINT. */
function shellForm(ins: Instruction): boolean {
  return (ins.kind === 'CMD' || ins.kind === 'ENTRYPOINT') && ins.command.form === 'shell';
}

/** True when an instruction's source holds an empty line inside a continuation. */
function hasEmptyContinuation(source: string, escape: string): boolean {
  const e = escape === '`' ? '`' : '\\\\';
  const cont = new RegExp(`(?:[^${e}]|^)${e}[ \\t]*$`);
  const lines = source.split('\n');
  let more = cont.test(lines[0] ?? '');
  for (let i = 1; more && i < lines.length; i++) {
    const t = (lines[i] as string).trim();
    if (t === '') return true;
    if (t.startsWith('#')) continue;
    more = cont.test(lines[i] as string);
  }
  return false;
}

/** A did-you-mean for a variable name; none for names too short for a meaningful guess. */
function suggestName(name: string, candidates: readonly string[]): string | undefined {
  return name.length < 3 ? undefined : suggest(name, candidates);
}

function undefinedVarFindings(df: Dockerfile, ctx: LintContext): RuleFinding[] {
  const out: RuleFinding[] = [];
  const finalEnv: Set<string>[] = [];
  for (const stage of df.stages) {
    const base = baseStageIndex(df, stage, ctx.escape);
    const external = (): readonly string[] => ctx.baseImageEnv(stage.from.image) ?? EXTERNAL_BASE_ENV;
    const env = new Set<string>(
      base !== undefined ? (finalEnv[base] ?? []) : stage.from.image.toLowerCase() === 'scratch' ? [] : external(),
    );
    const args = new Set<string>(PROXY_ARGS);
    const defined = { has: (n: string): boolean => env.has(n) || args.has(n) };
    for (const ins of stage.instructions) {
      const reported = new Set<string>();
      for (const word of expandedWords(ins)) {
        for (const name of undefinedNames(word, defined, ctx.escape)) {
          if (reported.has(name)) continue;
          reported.add(name);
          const s = suggestName(name, [...env, ...args]);
          out.push({ message: `Usage of undefined variable '$${name}'${s === undefined ? '' : ` (did you mean $${s}?)`}`, loc: ins.loc });
        }
      }
      if (ins.kind === 'ARG') for (const a of ins.args) args.add(a.name);
      if (ins.kind === 'ENV') for (const p of ins.pairs) env.add(p.key);
    }
    finalEnv[stage.index] = env;
  }
  return out;
}

function fromArgFindings(df: Dockerfile, ctx: LintContext): RuleFinding[] {
  const scope = globalScope(df);
  const out: RuleFinding[] = [];
  for (const { from } of df.stages) {
    const seen = new Set<string>();
    for (const word of [from.image, from.platform ?? '']) {
      for (const name of undefinedNames(word, scope, ctx.escape)) {
        if (seen.has(name)) continue;
        seen.add(name);
        const s = suggestName(name, [...scope]);
        out.push({ message: `FROM argument '${name}' is not declared${s === undefined ? '' : ` (did you mean ${s}?)`}`, loc: from.loc });
      }
    }
  }
  return out;
}

function invalidDefaultFindings(df: Dockerfile, ctx: LintContext): RuleFinding[] {
  const values = new Map<string, string>([
    ['TARGETPLATFORM', 'linux/amd64'], ['TARGETOS', 'linux'], ['TARGETARCH', 'amd64'], ['TARGETVARIANT', ''],
    ['BUILDPLATFORM', 'linux/amd64'], ['BUILDOS', 'linux'], ['BUILDARCH', 'amd64'], ['BUILDVARIANT', ''],
  ]);
  // Like BuildKit, only the defaults count: a build should not need --build-arg to be valid.
  for (const a of df.globalArgs) {
    for (const d of a.args) {
      values.set(d.name, d.default === undefined ? '' : (tryExpand(d.default, (n) => values.get(n), ctx.escape) ?? ''));
    }
  }
  const out: RuleFinding[] = [];
  for (const stage of df.stages) {
    const { from } = stage;
    if (!from.image.includes('$')) continue;
    const image = tryExpand(from.image, (n) => values.get(n), ctx.escape);
    if (image === undefined) continue;
    const isStage = df.stages.some((s) => s.index < stage.index && s.name === image.toLowerCase());
    if (image === '' || (!isStage && image !== 'scratch' && !REFERENCE.test(image))) {
      out.push({ message: `Default value for ARG ${from.image} results in empty or invalid base image name`, loc: from.loc });
    }
  }
  return out;
}

function perStage(df: Dockerfile, f: (s: Stage) => RuleFinding[]): RuleFinding[] {
  return df.stages.flatMap(f);
}

/** The rules, in BuildKit's naming. */
export const LINT_RULES: readonly LintRule[] = [
  {
    name: 'StageNameCasing',
    description: 'Stage names should be lowercase',
    check: (df) => df.stages.flatMap(({ from }) =>
      from.alias !== undefined && !isLower(from.alias) ? [{ message: `Stage name '${from.alias}' should be lowercase`, loc: from.loc }] : []),
  },
  {
    name: 'FromAsCasing',
    description: "The 'as' keyword should match the case of the 'from' keyword",
    check: (df) => df.stages.flatMap(({ from }) => {
      const as = from.asKeyword;
      if (as === undefined) return [];
      const bad = (isUpper(from.keyword) && !isUpper(as)) || (isLower(from.keyword) && !isLower(as));
      return bad ? [{ message: `'${as}' and '${from.keyword}' keywords' casing do not match`, loc: from.loc }] : [];
    }),
  },
  {
    name: 'NoEmptyContinuation',
    description: 'Empty continuation lines will become errors in a future release',
    check: (df, ctx) => allInstructions(df).flatMap((ins) =>
      hasEmptyContinuation(ins.source, ctx.escape) ? [{ message: 'Empty continuation line', loc: ins.loc }] : []),
  },
  {
    name: 'ConsistentInstructionCasing',
    description: 'All commands within the Dockerfile should use the same casing (either upper or lower)',
    check: (df) => {
      // As BuildKit: the stages' instructions count; global ARGs before the first FROM do not.
      const all = df.stages.flatMap((s) => [s.from, ...s.instructions]);
      const upper = all.filter((i) => isUpper(i.keyword)).length;
      const lower = all.filter((i) => isLower(i.keyword)).length;
      const majorityUpper = upper >= lower;
      return all.flatMap((i) =>
        (majorityUpper ? isUpper(i.keyword) : isLower(i.keyword))
          ? []
          : [{ message: `Command '${i.keyword}' should match the case of the command majority (${majorityUpper ? 'uppercase' : 'lowercase'})`, loc: i.loc }]);
    },
  },
  {
    name: 'DuplicateStageName',
    description: 'Stage names should be unique',
    check: (df) => {
      const seen = new Set<string>();
      return df.stages.flatMap((s) => {
        if (s.name === undefined) return [];
        if (!seen.has(s.name)) {
          seen.add(s.name);
          return [];
        }
        return [{ message: `Duplicate stage name "${s.name}", stage names should be unique`, loc: s.from.loc }];
      });
    },
  },
  {
    name: 'ReservedStageName',
    description: 'Reserved words should not be used as stage names',
    check: (df) => df.stages.flatMap((s) =>
      s.name === 'scratch' || s.name === 'context'
        ? [{ message: `Stage name should not use the same name as reserved stage "${s.name}"`, loc: s.from.loc }]
        : []),
  },
  {
    name: 'JSONArgsRecommended',
    description: 'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals',
    check: (df, ctx) => {
      // As BuildKit: an explicit SHELL (in the stage or a parent stage) means the shell form is intended.
      const customShell: boolean[] = [];
      return df.stages.flatMap((s) => {
        const base = baseStageIndex(df, s, ctx.escape);
        let shell = base !== undefined && customShell[base] === true;
        const out: RuleFinding[] = [];
        for (const i of s.instructions) {
          if (i.kind === 'SHELL') shell = true;
          else if (shellForm(i) && !shell) {
            out.push({ message: `JSON arguments recommended for ${i.kind} to prevent unintended behavior related to OS signals`, loc: i.loc });
          }
        }
        customShell[s.index] = shell;
        return out;
      });
    },
  },
  {
    name: 'MaintainerDeprecated',
    description: 'The MAINTAINER instruction is deprecated, use a label instead to define an image author',
    check: (df) => perStage(df, (s) => s.instructions.flatMap((i) =>
      i.kind === 'MAINTAINER' ? [{ message: 'Maintainer instruction is deprecated in favor of using label', loc: i.loc }] : [])),
  },
  {
    name: 'UndefinedArgInFrom',
    description: 'FROM command must use declared ARGs',
    check: fromArgFindings,
  },
  {
    name: 'WorkdirRelativePath',
    description: 'Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes',
    check: (df) => perStage(df, (s) => {
      let absolute = false;
      const out: RuleFinding[] = [];
      for (const i of s.instructions) {
        if (i.kind !== 'WORKDIR') continue;
        if (i.path.startsWith('/') || i.path.startsWith('$')) absolute = true;
        else if (!absolute) out.push({ message: `Relative workdir "${i.path}" can have unexpected results if the base image changes`, loc: i.loc });
      }
      return out;
    }),
  },
  {
    name: 'UndefinedVar',
    description: 'Variables should be defined before their use',
    check: undefinedVarFindings,
  },
  {
    name: 'MultipleInstructionsDisallowed',
    description: 'Multiple instructions of the same type should not be used in the same stage',
    check: (df) => perStage(df, (s) => (['CMD', 'ENTRYPOINT', 'HEALTHCHECK'] as const).flatMap((kind) => {
      const list = s.instructions.filter((i) => i.kind === kind);
      return list.slice(0, -1).map((i) => ({
        message: `Multiple ${kind} instructions should not be used in the same stage because only the last one will be used`,
        loc: i.loc,
      }));
    })),
  },
  {
    name: 'LegacyKeyValueFormat',
    description: 'Legacy key/value format with whitespace separator should not be used',
    check: (df) => perStage(df, (s) => s.instructions.flatMap((i) =>
      (i.kind === 'ENV' || i.kind === 'LABEL') && i.legacy === true
        ? [{ message: `"${i.kind} key=value" should be used instead of legacy "${i.kind} key value" format`, loc: i.loc }]
        : [])),
  },
  {
    name: 'SecretsUsedInArgOrEnv',
    description: 'Sensitive data should not be used in the ARG or ENV commands',
    check: (df) => allInstructions(df).flatMap((i) => {
      const names = i.kind === 'ARG' ? i.args.map((a) => a.name) : i.kind === 'ENV' ? i.pairs.map((p) => p.key) : [];
      return names
        .filter((n) => SECRET_WORDS.test(n) && !PUBLIC_WORDS.test(n))
        .map((n) => ({ message: `Do not use ARG or ENV instructions for sensitive data (${i.kind} "${n}")`, loc: i.loc }));
    }),
  },
  {
    name: 'InvalidDefaultArgInFrom',
    description: 'Default value for global ARG results in an empty or invalid base image name',
    check: invalidDefaultFindings,
  },
  {
    name: 'RedundantTargetPlatform',
    description: 'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
    check: (df) => df.stages.flatMap(({ from }) =>
      from.platform === '$TARGETPLATFORM' || from.platform === '${TARGETPLATFORM}'
        ? [{ message: `Setting platform to predefined ${from.platform} in FROM is redundant as this is the default behavior`, loc: from.loc }]
        : []),
  },
  {
    name: 'FromPlatformFlagConstDisallowed',
    description: 'FROM --platform flag should not use a constant value',
    check: (df) => df.stages.flatMap(({ from }) => {
      const p = from.platform;
      if (p === undefined || p.includes('$')) return [];
      const arch = p.split('/')[1] ?? p;
      if (from.alias !== undefined && from.alias.toLowerCase().includes(arch.toLowerCase())) return [];
      return [{ message: `FROM --platform flag should not use constant value "${p}"`, loc: from.loc }];
    }),
  },
  {
    name: 'ExposeProtoCasing',
    description: 'Protocol in EXPOSE instruction should be lowercase',
    check: (df) => perStage(df, (s) => s.instructions.flatMap((i) =>
      i.kind !== 'EXPOSE' ? [] : i.ports.flatMap((p) => {
        const proto = p.split('/')[1];
        return proto !== undefined && !isLower(proto)
          ? [{ message: `Defined protocol '${p}' in EXPOSE instruction should be lowercase`, loc: i.loc }]
          : [];
      }))),
  },
  {
    name: 'ExposeInvalidFormat',
    description: 'IP address and host-port mapping should not be used in EXPOSE instruction',
    check: (df) => perStage(df, (s) => s.instructions.flatMap((i) =>
      i.kind !== 'EXPOSE' ? [] : i.ports.flatMap((p) =>
        p.includes(':') ? [{ message: `EXPOSE instruction should not define an IP address or host-port mapping, found '${p}'`, loc: i.loc }] : []))),
  },
];

/** Names of every rule (for `# check=skip=` validation and docs). */
export const LINT_RULE_NAMES: readonly string[] = LINT_RULES.map((r) => r.name);

/** Predefined ARG names (documented for users of the linter). */
export const PREDEFINED_ARGS: readonly string[] = [...PLATFORM_ARGS, ...PROXY_ARGS];
