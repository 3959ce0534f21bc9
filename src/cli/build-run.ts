import { writeFile } from 'node:fs/promises';
import { availableParallelism, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { formatReference, notSupportedYet, parseReference, TsbuildError, type BuildEvent, type EventSink, type ImageConfig, type Platform } from '../core/index.js';
import type { Dockerfile } from '../dockerfile/index.js';
import { formatPlatform } from '../image/index.js';
import { findCompressionTools } from '../layer/index.js';
import { listBaseImages, planBuild, type BuildGraph } from '../plan/index.js';
import { Sandbox } from '../sandbox/index.js';
import { openSnapshotter } from '../snapshot/index.js';
import { exportImage, resolveBaseImage, solveGraph, type ResolvedBase } from '../solve/index.js';
import type { CommandContext } from './command.js';
import { createJsonRenderer } from './progress/json.js';
import { createPlainRenderer } from './progress/plain.js';
import { openCliStore } from './store-root.js';
import { launcherPathFor, stateDirFor } from './container-deps.js';

/** The build flags beyond planning. Unsupported ones are rejected by {@link runBuild}. */
export interface BuildRequest {
  readonly tags: readonly string[];
  readonly labels: readonly string[];
  readonly noCache: boolean;
  readonly noCacheFilter: readonly string[];
  readonly pull: boolean;
  readonly progress: string;
  readonly quiet: boolean;
  readonly outputs: readonly string[];
  readonly iidfile: string | undefined;
  readonly metadataFile: string | undefined;
  readonly secrets: readonly string[];
  readonly ssh: readonly string[];
  readonly network: string | undefined;
  readonly cacheFrom: readonly string[];
  readonly cacheTo: readonly string[];
  readonly snapshotter: string | undefined;
}

/** What the front end has already parsed and checked. */
export interface ParsedBuild {
  readonly dockerfile: Dockerfile;
  readonly dockerfilePath: string | undefined;
  readonly contextDir: string;
  readonly planOptions: {
    readonly buildArgs: ReadonlyMap<string, string>;
    readonly target: string | undefined;
    readonly buildPlatform: Platform;
    readonly targetPlatform: Platform;
  };
  readonly formatWarning: (e: BuildEvent) => string | undefined;
}

/** Rejects the flags whose features arrive later (CLI_NOT_SUPPORTED, exit 125). */
function checkFlags(req: BuildRequest, parsed: ParsedBuild): void {
  const no = (what: string, hint?: string): never => {
    const e = notSupportedYet(what, hint);
    throw new TsbuildError(e.code, e.message, { exitCode: 125, ...(e.hint === undefined ? {} : { hint: e.hint }) });
  };
  if (req.outputs.length > 0) no('--output', 'the image is written to the local store; use "tsbuild save" or "tsbuild push" afterwards');
  if (req.cacheFrom.length > 0) no('--cache-from');
  if (req.cacheTo.length > 0) no('--cache-to');
  if (req.secrets.length > 0) no('--secret');
  if (req.ssh.length > 0) no('--ssh');
  if (req.pull) no('--pull', 'run "tsbuild pull IMAGE" before the build');
  if (req.progress === 'tty') no('--progress=tty', 'use --progress=plain or rawjson');
  const { buildPlatform, targetPlatform } = parsed.planOptions;
  if (formatPlatform(buildPlatform) !== formatPlatform(targetPlatform)) no(`building for another platform (${formatPlatform(targetPlatform)})`);
  if (process.getuid?.() !== 0) no('building as a non-root user (rootless builds)');
  for (const l of req.labels) {
    if (!l.includes('=')) throw new TsbuildError('CLI_BAD_VALUE', `invalid --label "${l}": expected KEY=VALUE`, { exitCode: 125 });
  }
}

/** Directory for sandbox state (as `tsbuild run`): $TSBUILD_RUN_DIR, /run/tsbuild as root, else under the store. */
function parseSourceDateEpoch(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^[0-9]+$/.test(value)) throw new TsbuildError('CLI_BAD_VALUE', `SOURCE_DATE_EPOCH must be a number of seconds, not "${value}"`, { exitCode: 125 });
  return Number(value);
}

function withLabels(graph: BuildGraph, labels: readonly string[]): BuildGraph {
  if (labels.length === 0) return graph;
  const add: Record<string, string> = {};
  for (const l of labels) add[l.slice(0, l.indexOf('='))] = l.slice(l.indexOf('=') + 1);
  const image: ImageConfig = { ...graph.image, config: { ...graph.image.config, Labels: { ...graph.image.config?.Labels, ...add } } };
  return { ...graph, image };
}

/**
 * Builds the image: resolves base images in the store, plans, solves (progress to stderr),
 * exports into the store under every `-t`, writes `--iidfile`/`--metadata-file`.
 * With `-q` only the image ID is printed (stdout).
 */
export async function runBuild(req: BuildRequest, parsed: ParsedBuild, ctx: CommandContext): Promise<number> {
  checkFlags(req, parsed);
  const tags = req.tags.map((t) => formatReference(parseReference(t)));
  const sourceDateEpoch = parseSourceDateEpoch(ctx.env.SOURCE_DATE_EPOCH);
  const contextDir = resolve(ctx.cwd, parsed.contextDir);
  const store = await openCliStore(ctx);

  const events: EventSink = req.quiet || req.progress === 'quiet' ? () => undefined
    : req.progress === 'rawjson' ? createJsonRenderer(ctx.stderr)
    : createPlainRenderer(ctx.stderr);

  // Base images: resolved in the local store, repeated until ONBUILD triggers name no new image.
  const bases = new Map<string, ResolvedBase>();
  for (;;) {
    const configs = new Map([...bases].map(([k, v]) => [k, v.config] as const));
    const refs = listBaseImages(parsed.dockerfile, { ...parsed.planOptions, baseImages: configs });
    const missing = refs.filter((r) => !bases.has(r));
    if (missing.length === 0) break;
    for (const ref of missing) bases.set(ref, await resolveBaseImage(store, ref, parsed.planOptions.targetPlatform));
  }
  const planned = planBuild(parsed.dockerfile, { ...parsed.planOptions, baseImages: new Map([...bases].map(([k, v]) => [k, v.config] as const)) });
  for (const w of planned.warnings) {
    const line = parsed.formatWarning(w);
    if (line !== undefined) ctx.stderr.write(`${line}\n`);
  }
  const graph = withLabels(planned.graph, req.labels);

  const uid = process.getuid?.() ?? 0;
  const choice = req.snapshotter ?? 'auto';
  if (choice !== 'auto' && choice !== 'overlay' && choice !== 'naive') {
    throw new TsbuildError('CLI_BAD_VALUE', `--snapshotter takes overlay or naive, not "${choice}"`, { exitCode: 125 });
  }
  const { snapshotter, fallbackReason } = await openSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp }, { choice });
  if (fallbackReason !== undefined) ctx.stderr.write(`WARNING: using the naive snapshotter: ${fallbackReason}\n`);
  const sandbox = new Sandbox({
    launcherPath: launcherPathFor(ctx),
    stateDir: stateDirFor(ctx, uid),
    host: { uid, gid: process.getgid?.() ?? 0, user: userInfo().username },
    ownerPid: process.pid,
    onWarning: (m) => events({ type: 'warning', message: m }),
  });

  const noCacheStages = new Set<number>();
  for (const name of req.noCacheFilter) {
    const stage = graph.stages.find((st) => st.name === name.toLowerCase() || String(st.index) === name);
    if (stage === undefined) {
      const known = graph.stages.flatMap((st) => (st.name === undefined ? [] : [st.name]));
      throw new TsbuildError('CLI_BAD_VALUE', `--no-cache-filter: no stage "${name}" in the build`, { exitCode: 125, ...(known.length === 0 ? {} : { hint: `stages: ${known.join(', ')}` }) });
    }
    noCacheStages.add(stage.index);
  }
  const result = await solveGraph(graph, { store, snapshotter, sandbox, compressionTools: findCompressionTools(ctx.env.PATH), events }, {
    contextDir,
    dockerfilePath: parsed.dockerfilePath,
    baseImages: bases,
    noCache: req.noCache,
    noCacheStages,
    network: req.network === 'none' ? 'none' : 'host',
    concurrency: availableParallelism(),
    sourceDateEpoch,
    signal: ctx.signal,
  });
  const created = new Date(sourceDateEpoch === undefined ? Date.now() : sourceDateEpoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
  const image = await exportImage(store, graph, result.output, { tags, created });
  events({ type: 'info', message: `writing image ${image.configDigest} done` });
  for (const name of image.names) events({ type: 'info', message: `naming to ${name} done` });
  if (req.iidfile !== undefined) await writeOut(resolve(ctx.cwd, req.iidfile), image.configDigest);
  if (req.metadataFile !== undefined) {
    const metadata = {
      'containerimage.config.digest': image.configDigest,
      'containerimage.digest': image.manifest.digest,
      'containerimage.descriptor': image.manifest,
      ...(image.names.length === 0 ? {} : { 'image.name': image.names.join(',') }),
    };
    await writeOut(resolve(ctx.cwd, req.metadataFile), `${JSON.stringify(metadata, null, 2)}\n`);
  }
  if (req.quiet) ctx.stdout.write(`${image.configDigest}\n`);
  return 0;
}

async function writeOut(path: string, text: string): Promise<void> {
  try {
    await writeFile(path, text);
  } catch (err) {
    throw new TsbuildError('CLI_WRITE_FAILED', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}
