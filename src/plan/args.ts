import { TsbuildError, type Platform, type SourceLocation } from '../core/index.js';
import { expandWord, type ArgInstruction, type VarLookup } from '../dockerfile/index.js';
import { formatPlatform } from '../image/index.js';

/**
 * Build-argument scoping, as Docker/BuildKit do it:
 * - global ARGs (before the first FROM) and the automatic platform ARGs are visible only in FROM
 *   lines, unless a stage re-declares them (`ARG NAME` without a default inherits the global value);
 * - a stage `ARG NAME=default` uses its own default; `--build-arg NAME=v` overrides any default;
 * - during expansion ENV wins over ARG;
 * - the predefined proxy ARGs reach RUN without a declaration (as `proxyEnv`, out of history and
 *   cache keys); declared with ARG they become ordinary arguments (as in Docker).
 */

/** The predefined proxy ARGs (usable in RUN without an ARG instruction). */
export const PROXY_ARGS: readonly string[] = [
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy',
  'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
];

/** The automatic platform ARGs, set from the build and target platforms. */
export const PLATFORM_ARGS: readonly string[] = [
  'TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT',
  'BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT',
];

/** Values of the automatic platform ARGs for a build/target platform pair. */
export function platformArgValues(build: Platform, target: Platform): Map<string, string> {
  return new Map([
    ['TARGETPLATFORM', formatPlatform(target)],
    ['TARGETOS', target.os],
    ['TARGETARCH', target.architecture],
    ['TARGETVARIANT', target.variant ?? ''],
    ['BUILDPLATFORM', formatPlatform(build)],
    ['BUILDOS', build.os],
    ['BUILDARCH', build.architecture],
    ['BUILDVARIANT', build.variant ?? ''],
  ]);
}

/** Everything argument resolution needs; `consumed` collects declared names (for the unused warning). */
export interface ArgEnv {
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly platformArgs: ReadonlyMap<string, string>;
  readonly escape: '\\' | '`';
  readonly consumed: Set<string>;
}

/** Declared arguments of one scope, in declaration order; undefined = declared without a value. */
export type ArgScope = Map<string, string | undefined>;

/** Expands one word with the builder's rules; errors carry `loc`. */
export function expandText(word: string, lookup: VarLookup, env: ArgEnv, loc: SourceLocation): string {
  // Fast path: nothing to substitute, unquote or unescape (the lexer would return the word as is).
  if (!/[$'"\\`]/.test(word)) return word;
  return expandWord(word, lookup, { escape: env.escape, loc }).value;
}

/**
 * Resolves the global scope (ARGs before the first FROM), visible to FROM lines.
 * Returns the declared values plus the automatic platform ARGs (declared ones win).
 */
export function resolveGlobalArgs(globalArgs: readonly ArgInstruction[], env: ArgEnv): ArgScope {
  const scope: ArgScope = new Map();
  const lookup: VarLookup = (name) => (scope.has(name) ? scope.get(name) : env.platformArgs.get(name));
  for (const ins of globalArgs) {
    for (const decl of ins.args) {
      env.consumed.add(decl.name);
      const override = env.buildArgs.get(decl.name);
      let value: string | undefined;
      if (override !== undefined) value = override;
      else if (decl.default !== undefined) value = expandText(decl.default, lookup, env, ins.loc);
      else value = env.platformArgs.get(decl.name);
      scope.set(decl.name, value);
    }
  }
  for (const [name, value] of env.platformArgs) if (!scope.has(name)) scope.set(name, value);
  return scope;
}

/**
 * Applies a stage ARG instruction to the stage scope. `lookup` is the stage's expansion lookup
 * (ENV first, then ARGs) used for defaults; `global` is the resolved global scope.
 */
export function declareStageArgs(ins: ArgInstruction, scope: ArgScope, global: ArgScope, lookup: VarLookup, env: ArgEnv): void {
  for (const decl of ins.args) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(decl.name)) {
      throw new TsbuildError('PLAN_BAD_ARG_NAME', `invalid ARG name "${decl.name}"`, { loc: ins.loc });
    }
    env.consumed.add(decl.name);
    const override = env.buildArgs.get(decl.name);
    let value: string | undefined;
    if (override !== undefined) value = override;
    else if (decl.default !== undefined) value = expandText(decl.default, lookup, env, ins.loc);
    else value = global.get(decl.name);
    scope.delete(decl.name); // re-declaration moves it to the end (Docker keeps the latest)
    scope.set(decl.name, value);
  }
}

/** `KEY=VALUE` strings of the undeclared proxy ARGs given with --build-arg. */
export function proxyEnvOf(scope: ArgScope, env: ArgEnv): string[] {
  const out: string[] = [];
  for (const name of PROXY_ARGS) {
    const v = env.buildArgs.get(name);
    if (v !== undefined && !scope.has(name)) out.push(`${name}=${v}`);
  }
  return out;
}

/** Build arguments the builder itself reads (never reported unused), as BuildKit. */
function isBuilderArg(name: string): boolean {
  return name === 'SOURCE_DATE_EPOCH' || name.startsWith('BUILDKIT_');
}

/** Names of `--build-arg`s that no ARG consumed (predefined proxy, platform and builder ARGs never warn). */
export function unusedBuildArgs(env: ArgEnv): string[] {
  return [...env.buildArgs.keys()]
    .filter((k) => !env.consumed.has(k) && !PROXY_ARGS.includes(k) && !PLATFORM_ARGS.includes(k) && !isBuilderArg(k))
    .sort();
}
