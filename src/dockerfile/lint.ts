import type { SourceLocation } from '../core/index.js';
import type { Dockerfile } from './instructions.js';
import { LINT_RULES, type LintContext, type LintRule } from './lint-rules.js';

/** One finding of `tsbuild build --check`: BuildKit's rule name, a message, where. */
export interface LintFinding {
  readonly rule: string;
  readonly message: string;
  readonly loc: SourceLocation;
}

/** Options of {@link lintDockerfile}. */
export interface LintOptions {
  /** `--build-arg` values (passed to rules; BuildKit's checks judge the Dockerfile without them). */
  readonly buildArgs?: ReadonlyMap<string, string>;
  /**
   * Environment variable names of an external base image (by the FROM text, unexpanded), when
   * its config is known; otherwise UndefinedVar assumes the image sets only PATH.
   */
  readonly baseImageEnv?: (image: string) => readonly string[] | undefined;
  /** Rules to run (default: all of LINT_RULES); for tests and tools. */
  readonly rules?: readonly LintRule[];
}

/**
 * Runs the lint rules over a parsed Dockerfile, honouring `# check=skip=...` (or skip=all).
 * Pure; never throws for a Dockerfile parseDockerfile accepted. Findings sorted by line.
 */
export function lintDockerfile(df: Dockerfile, options: LintOptions = {}): readonly LintFinding[] {
  const skip = df.directives.check?.skip ?? [];
  if (skip === 'all') return [];
  const skipped = new Set(skip.map((s) => s.toLowerCase()));
  const ctx: LintContext = {
    buildArgs: options.buildArgs ?? new Map(),
    escape: df.directives.escape,
    baseImageEnv: options.baseImageEnv ?? (() => undefined),
  };
  const findings: LintFinding[] = [];
  const rules = options.rules ?? LINT_RULES;
  rules.forEach((rule) => {
    if (skipped.has(rule.name.toLowerCase())) return;
    for (const f of rule.check(df, ctx)) findings.push({ rule: rule.name, message: f.message, loc: f.loc });
  });
  const order = new Map(rules.map((r, i) => [r.name, i]));
  return findings.sort((a, b) => a.loc.line - b.loc.line || (order.get(a.rule) ?? 0) - (order.get(b.rule) ?? 0));
}
