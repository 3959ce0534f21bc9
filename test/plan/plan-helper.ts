import type { ImageConfig } from '../../src/core/index.js';
import { parseDockerfile } from '../../src/dockerfile/index.js';
import { formatPlatform } from '../../src/image/index.js';
import { baseImageKey, planBuild, type BuildGraph, type ExecOp, type PlanOptions, type PlanResult, type Vertex } from '../../src/plan/index.js';

/** Options for test plans; platforms default to linux/amd64. */
export interface TestPlanOptions {
  readonly buildArgs?: Record<string, string>;
  readonly target?: string;
  readonly buildPlatform?: PlanOptions['buildPlatform'];
  readonly targetPlatform?: PlanOptions['targetPlatform'];
  /** Base image configs by reference, for the target platform (or by {@link baseImageKey} when the key has a space). */
  readonly baseImages?: Record<string, ImageConfig>;
}

/** Converts test options into PlanOptions. */
export function toPlanOptions(o: TestPlanOptions = {}): PlanOptions {
  const targetPlatform = o.targetPlatform ?? o.buildPlatform ?? { os: 'linux', architecture: 'amd64' };
  return {
    buildArgs: new Map(Object.entries(o.buildArgs ?? {})),
    ...(o.target === undefined ? {} : { target: o.target }),
    buildPlatform: o.buildPlatform ?? { os: 'linux', architecture: 'amd64' },
    targetPlatform,
    baseImages: keyedBaseImages(o.baseImages, targetPlatform),
  };
}

/** Parses and plans a Dockerfile text. */
export function planText(text: string, o: TestPlanOptions = {}): PlanResult {
  return planBuild(parseDockerfile(text, 'Dockerfile'), toPlanOptions(o));
}

/** The graph of a Dockerfile text. */
export function graphOf(text: string, o: TestPlanOptions = {}): BuildGraph {
  return planText(text, o).graph;
}

/** Vertices of a stage, in order. */
export function stageVertices(g: BuildGraph, stage: number): Vertex[] {
  return g.vertices.filter((v) => v.stage === stage);
}

/** The exec ops of the graph, in order. */
export function execOps(g: BuildGraph): ExecOp[] {
  return g.vertices.flatMap((v) => (v.op.type === 'exec' ? [v.op] : []));
}

/** Environment of the n-th RUN as a record. */
export function runEnv(g: BuildGraph, n = 0): Record<string, string> {
  const op = execOps(g)[n];
  if (op === undefined) throw new Error(`no RUN #${n}`);
  return Object.fromEntries(op.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

/** A minimal base image config for tests. */
export function baseConfig(config: ImageConfig['config'], history: ImageConfig['history'] = []): ImageConfig {
  return { architecture: 'amd64', os: 'linux', config, rootfs: { type: 'layers', diff_ids: [] }, history };
}

/** Base image configs keyed as the planner looks them up: a plain reference is for `platform`. */
export function keyedBaseImages(images: Record<string, ImageConfig> | undefined, platform: PlanOptions['targetPlatform']): Map<string, ImageConfig> {
  return new Map(Object.entries(images ?? {}).map(([k, v]) => [k.includes(' ') ? k : baseImageKey(k, formatPlatform(platform)), v] as const));
}
