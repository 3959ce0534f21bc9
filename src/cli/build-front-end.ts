import { Readable } from 'node:stream';
import { TsbuildError, type BuildEvent, type Platform } from '../core/index.js';
import { lintDockerfile, parseDockerfile, type LintFinding } from '../dockerfile/index.js';
import { formatPlatform, parsePlatform, platformFromNode } from '../image/index.js';
import { graphToDot, planBuild } from '../plan/index.js';
import { runBuild, type BuildRequest } from './build-run.js';
import type { CommandContext } from './command.js';
import { readDockerfile } from './dockerfile-input.js';

/** What the build command asks of the front end (parse, check, plan). */
export interface FrontEndRequest {
  readonly contextDir: string;
  readonly file: string | undefined;
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly target: string | undefined;
  readonly platform: string | undefined;
  readonly check: boolean;
  readonly print: 'graph' | 'dot' | undefined;
  /** What building needs beyond planning (tags, cache, progress, outputs). */
  readonly build: BuildRequest;
}

function formatFinding(f: LintFinding): string {
  return `${f.loc.file}:${f.loc.line}: ${f.rule}: ${f.message}`;
}

/** One warning event as a `WARNING: ...` line (undefined for other events). */
export function formatWarning(e: BuildEvent): string | undefined {
  if (e.type !== 'warning') return undefined;
  const where = e.loc === undefined ? '' : `${e.loc.file}:${e.loc.line}: `;
  return `WARNING: ${where}${e.code === undefined ? '' : `${e.code}: `}${e.message}`;
}

/**
 * Reads, parses, checks and plans the Dockerfile. `--check` prints findings (exit 1 when
 * `# check=error=true` and there are findings); `--print` prints the graph (planned without
 * the store: inherited base image config is not shown). Otherwise builds the image (build-run.ts).
 */
export async function runBuildFrontEnd(req: FrontEndRequest, ctx: CommandContext): Promise<number> {
  // ctx.stdin only for `-f -`: creating process.stdin costs start-up time.
  const input = await readDockerfile(req.file, req.contextDir, ctx.cwd, req.file === '-' ? ctx.stdin : Readable.from([]));
  ctx.sources.set(input.name, input.text);
  const dockerfile = parseDockerfile(input.text, input.name);
  const findings = lintDockerfile(dockerfile, { buildArgs: req.buildArgs });
  const failOnFindings = dockerfile.directives.check?.error === true;

  if (req.check) {
    for (const f of findings) ctx.stdout.write(`${formatFinding(f)}\n`);
    ctx.stderr.write(`${findings.length} finding${findings.length === 1 ? '' : 's'}\n`);
    return findings.length > 0 && failOnFindings ? 1 : 0;
  }
  for (const f of findings) ctx.stderr.write(`WARNING: ${formatFinding(f)}\n`);
  if (failOnFindings && findings.length > 0) {
    throw new TsbuildError('LINT_FAILED', `${findings.length} check finding(s) and "# check=error=true" is set`, {
      loc: findings[0]?.loc,
    });
  }

  const buildPlatform = platformFromNode(process.platform, process.arch);
  const targetPlatforms = req.platform === undefined ? [buildPlatform] : targetPlatformsOf(req.platform);
  const planOptions = { buildArgs: req.buildArgs, target: req.target, buildPlatform, targetPlatform: targetPlatforms[0] as Platform };
  if (req.print === undefined) {
    return runBuild(req.build, { dockerfile, dockerfilePath: input.path, contextDir: req.contextDir, planOptions, targetPlatforms, formatWarning }, ctx);
  }
  const result = planBuild(dockerfile, { ...planOptions, baseImages: new Map() });
  for (const w of result.warnings) {
    const line = formatWarning(w);
    if (line !== undefined) ctx.stderr.write(`${line}\n`);
  }
  if (req.print === 'graph') {
    ctx.stdout.write(`${JSON.stringify(result.graph, null, 2)}\n`);
    return 0;
  }
  ctx.stdout.write(graphToDot(result.graph));
  return 0;
}

/** `--platform a[,b...]` (docker's form; repeated platforms count once). */
function targetPlatformsOf(text: string): Platform[] {
  const seen = new Map<string, Platform>();
  for (const part of text.split(',')) {
    const p = parsePlatform(part);
    seen.set(formatPlatform(p), p);
  }
  return [...seen.values()];
}
