import { isTsbuildError, TsbuildError, type BuildEvent, type ImageConfig, type Platform, type SourceLocation } from '../core/index.js';
import { parseInstructionText, type Dockerfile, type Instruction, type VarLookup } from '../dockerfile/index.js';
import { formatPlatform, normalizePlatform, parsePlatform } from '../image/index.js';
import { declareStageArgs, expandText, platformArgValues, resolveGlobalArgs, unusedBuildArgs, type ArgEnv, type ArgScope } from './args.js';
import { computeCacheKeys } from './cache-key.js';
import { convertInstruction, displayText, type StageContext } from './convert.js';
import { baseImageKey, type BuildGraph, type GraphStage, type Op, type SourceRef, type StageBase, type Vertex } from './graph.js';
import { applyEdit, cloneConfig, configFromImage, getEnv, toImageConfig, type ConfigState } from './image-config.js';
import { checkStages, findTargetStage, resolveStageRef, stageIndexByName } from './stages.js';

/** Inputs of {@link planBuild}. */
export interface PlanOptions {
  /** `--build-arg` values. */
  readonly buildArgs: ReadonlyMap<string, string>;
  /** `--target` stage name (case-insensitive); the last stage when absent. */
  readonly target?: string | undefined;
  readonly buildPlatform: Platform;
  readonly targetPlatform: Platform;
  /** Resolved configs of base images, keyed by {@link baseImageKey} of the reference (as {@link listBaseImages} returns it) and the platform. */
  readonly baseImages: ReadonlyMap<string, ImageConfig>;
}

/** Output of {@link planBuild}. */
export interface PlanResult {
  readonly graph: BuildGraph;
  /** `warning` events (e.g. PLAN_UNUSED_BUILD_ARG). */
  readonly warnings: readonly BuildEvent[];
}

type Draft = Omit<Vertex, 'cacheKey' | 'name'> & { readonly text: string };

interface PlannedStage {
  readonly index: number;
  readonly base: StageBase;
  readonly platform: Platform;
  readonly config: ConfigState;
  readonly drafts: Draft[];
  readonly last: string;
}

/** Mutable state of one planBuild call (never shared between calls). */
interface Planner {
  readonly df: Dockerfile;
  readonly options: PlanOptions;
  readonly env: ArgEnv;
  readonly global: ArgScope;
  readonly stages: Map<number, PlannedStage>;
  readonly images: Map<string, Draft>;
  readonly byName: ReadonlyMap<string, number>;
}

function wrapParse(text: string, loc: SourceLocation, escape: '\\' | '`'): Instruction {
  try {
    return parseInstructionText(text, loc, escape);
  } catch (err) {
    const why = isTsbuildError(err) ? err.message : String(err);
    throw new TsbuildError('PLAN_BAD_ONBUILD', `invalid ONBUILD trigger "${text}" in the base image: ${why}`, { loc, cause: err });
  }
}

function imageVertex(p: Planner, ref: string, platform: Platform): Draft {
  const plat = formatPlatform(platform);
  const key = `${ref}\n${plat}`;
  let v = p.images.get(key);
  if (v === undefined) {
    v = { id: `image.${p.images.size}`, stage: null, text: `load image ${ref} (${plat})`, inputs: [], op: { type: 'source', source: 'image', ref, platform: plat } };
    p.images.set(key, v);
  }
  return v;
}

function stagePlatform(p: Planner, word: string | undefined, lookup: VarLookup, loc: SourceLocation): Platform | undefined {
  if (word === undefined) return undefined;
  const text = expandText(word, lookup, p.env, loc);
  try {
    return parsePlatform(text);
  } catch (err) {
    throw new TsbuildError('PLAN_BAD_PLATFORM', `FROM --platform: ${isTsbuildError(err) ? err.message : String(err)}`, { loc, cause: err });
  }
}

/** Thrown (and caught by {@link planStages}) when a stage needs an earlier stage not planned yet. */
class NeedStage {
  constructor(readonly index: number) {}
}

/** The planned stage `index`, or NeedStage so the driver plans it first (no recursion: deep chains stay safe). */
function plannedStage(p: Planner, index: number): PlannedStage {
  const done = p.stages.get(index);
  if (done === undefined) throw new NeedStage(index);
  return done;
}

/**
 * Plans `target` and every stage it needs, depth-first with an explicit stack: a stage whose
 * planning meets an unplanned dependency is abandoned, the dependency planned, then it restarts
 * (its effects on shared state are replayed identically, so the result is deterministic).
 */
function planStages(p: Planner, target: number): PlannedStage {
  const stack = [target];
  while (stack.length > 0) {
    const index = stack[stack.length - 1] as number;
    if (p.stages.has(index)) {
      stack.pop();
      continue;
    }
    const missing = staticDependencies(p, index).filter((j) => !p.stages.has(j));
    if (missing.length > 0) {
      stack.push(...missing);
      continue;
    }
    try {
      p.stages.set(index, planStage(p, index));
      stack.pop();
    } catch (err) {
      if (!(err instanceof NeedStage)) throw err;
      stack.push(err.index);
    }
  }
  return p.stages.get(target) as PlannedStage;
}

/**
 * Earlier stages a stage names literally (FROM, COPY --from, RUN --mount from= without `$`), so
 * most dependencies are planned before the stage instead of by restarting it. Errors are left
 * to the real planning, which reports them with their location.
 */
function staticDependencies(p: Planner, index: number): number[] {
  const stage = p.df.stages[index];
  if (stage === undefined) return [];
  const refs: string[] = [];
  if (!stage.from.image.includes('$')) refs.push(stage.from.image);
  for (const ins of stage.instructions) {
    if ((ins.kind === 'COPY' || ins.kind === 'ADD') && ins.from !== undefined) refs.push(ins.from);
    else if (ins.kind === 'RUN') for (const m of ins.mounts) if ('from' in m && m.from !== undefined) refs.push(m.from);
  }
  const deps = new Set<number>();
  for (const ref of refs) {
    if (ref.includes('$')) continue;
    const j = /^[0-9]+$/.test(ref) && ref !== stage.from.image ? Number(ref) : p.byName.get(ref.toLowerCase());
    if (j !== undefined && j < index) deps.add(j);
  }
  return [...deps].sort((a, b) => b - a);
}

function planStage(p: Planner, index: number): PlannedStage {
  const stage = p.df.stages[index];
  if (stage === undefined) throw new TsbuildError('INTERNAL', `no stage ${index}`);
  const from = stage.from;
  const globalLookup: VarLookup = (name) => p.global.get(name);
  const imageWord = expandText(from.image, globalLookup, p.env, from.loc);
  if (imageWord.trim() === '') {
    throw new TsbuildError('PLAN_EMPTY_BASE', `base name (${from.image}) should not be blank`, { loc: from.loc });
  }
  const requested = stagePlatform(p, from.platform, globalLookup, from.loc);
  const drafts: Draft[] = [];
  let base: StageBase;
  let platform: Platform;
  let config: ConfigState;
  let op: Op;
  const inputs: string[] = [];
  const parentIndex = imageWord === 'scratch' ? undefined : resolveStageRef(p.df, p.byName, imageWord, index, from.loc, false);
  if (imageWord === 'scratch') {
    platform = requested ?? p.options.targetPlatform;
    base = { type: 'scratch' };
    config = configFromImage(undefined, platform);
    op = { type: 'source', source: 'scratch' };
  } else if (parentIndex !== undefined) {
    const parent = plannedStage(p, parentIndex);
    platform = requested ?? parent.platform;
    base = { type: 'stage', stage: parentIndex };
    config = cloneConfig(parent.config);
    config.platform = platform;
    op = { type: 'source', source: 'stage', stage: parentIndex };
    inputs.push(parent.last);
  } else {
    platform = requested ?? p.options.targetPlatform;
    base = { type: 'image', ref: imageWord };
    config = configFromImage(p.options.baseImages.get(baseImageKey(imageWord, formatPlatform(platform))), platform);
    op = { type: 'source', source: 'image', ref: imageWord, platform: formatPlatform(platform) };
  }
  const idOf = (step: number): string => `s${index}.${step}`;
  drafts.push({ id: idOf(0), stage: index, text: `FROM ${imageWord}`, loc: from.loc, inputs, op });

  const args: ArgScope = new Map();
  const lookup: VarLookup = (name) => getEnv(config, name) ?? args.get(name);
  const ctx: StageContext = {
    config,
    args,
    env: p.env,
    lookup,
    resolveSource(ref: string, loc: SourceLocation): SourceRef {
      const j = resolveStageRef(p.df, p.byName, ref, index, loc, true);
      if (j !== undefined) return { kind: 'stage', stage: j, vertex: plannedStage(p, j).last };
      return { kind: 'image', ref, vertex: imageVertex(p, ref, platform).id };
    },
  };
  // ONBUILD triggers of the base run right after FROM, then are cleared (as in Docker).
  const triggers = config.onBuild.map((t) => wrapParse(t, from.loc, '\\'));
  config.onBuild = [];
  for (const t of triggers) {
    if (t.kind === 'FROM' || t.kind === 'ONBUILD' || t.kind === 'MAINTAINER') {
      throw new TsbuildError('PLAN_BAD_ONBUILD', `${t.kind} is not allowed as an ONBUILD trigger (from the base image of stage ${index})`, { loc: from.loc });
    }
  }
  const all: { ins: Instruction; onbuild: boolean }[] = [
    ...triggers.map((ins) => ({ ins, onbuild: true })),
    ...stage.instructions.map((ins) => ({ ins, onbuild: false })),
  ];
  for (const { ins, onbuild } of all) {
    if (ins.kind === 'FROM') throw new TsbuildError('INTERNAL', 'FROM inside a stage body');
    if (ins.kind === 'ARG') {
      declareStageArgs(ins, args, p.global, lookup, p.env);
      continue;
    }
    const step = convertInstruction(ins, ctx);
    const prev = drafts[drafts.length - 1] as Draft;
    const text = `${onbuild ? 'ONBUILD ' : ''}${displayText(ins, p.df.directives.escape)}`;
    drafts.push({
      id: idOf(drafts.length),
      stage: index,
      text,
      loc: ins.loc,
      ...(onbuild ? { onbuild: true } : {}),
      inputs: [prev.id, ...step.extraInputs.filter((i) => i !== prev.id)],
      op: step.op,
    });
    if (step.op.type === 'meta') applyEdit(config, step.op.edit);
    config.history.push(step.history);
  }
  return { index, base, platform, config, drafts, last: (drafts[drafts.length - 1] as Draft).id };
}

function displayName(d: Draft, prefix: string, step: number, total: number): string {
  const width = String(total).length;
  return `[${prefix}${String(step).padStart(width, ' ')}/${total}] ${d.text}`;
}

function plan(df: Dockerfile, options: PlanOptions): { graph: BuildGraph; warnings: BuildEvent[] } {
  checkStages(df);
  const target = findTargetStage(df, options.target);
  const buildPlatform = normalizePlatform(options.buildPlatform);
  const targetPlatform = normalizePlatform(options.targetPlatform);
  const env: ArgEnv = {
    buildArgs: options.buildArgs,
    platformArgs: platformArgValues(buildPlatform, targetPlatform),
    escape: df.directives.escape,
    consumed: new Set(),
  };
  const p: Planner = { df, options: { ...options, buildPlatform, targetPlatform }, env, global: resolveGlobalArgs(df.globalArgs, env), stages: new Map(), images: new Map(), byName: stageIndexByName(df) };
  const targetStage = planStages(p, target);

  const planned = [...p.stages.values()].sort((a, b) => a.index - b.index);
  const ordered: { readonly d: Draft; readonly name: string }[] = [...p.images.values()].map((d) => ({ d, name: `[internal] ${d.text}` }));
  const stages: GraphStage[] = [];
  for (const s of planned) {
    const name = df.stages[s.index]?.name;
    const prefix = name !== undefined ? `${name} ` : df.stages.length > 1 ? `stage-${s.index} ` : '';
    stages.push({
      index: s.index,
      ...(name === undefined ? {} : { name }),
      base: s.base,
      platform: formatPlatform(s.platform),
      vertices: s.drafts.map((d) => d.id),
    });
    s.drafts.forEach((d, i) => ordered.push({ d, name: displayName(d, prefix, i + 1, s.drafts.length) }));
  }
  const keys = computeCacheKeys(ordered.map((o) => o.d));
  const vertices: Vertex[] = ordered.map(({ d, name }) => {
    const v: { -readonly [K in keyof Vertex]?: Vertex[K] } = { id: d.id, stage: d.stage, name };
    if (d.loc !== undefined) v.loc = d.loc;
    if (d.onbuild === true) v.onbuild = true;
    v.inputs = d.inputs;
    v.op = d.op;
    v.cacheKey = keys.get(d.id);
    return v as Vertex;
  });
  const warnings: BuildEvent[] = unusedBuildArgs(env).map((name) => ({
    type: 'warning',
    code: 'PLAN_UNUSED_BUILD_ARG',
    message: `build argument "${name}" was not consumed by any ARG instruction of the stages built`,
  }));
  const graph: BuildGraph = {
    version: 1,
    target,
    buildPlatform: formatPlatform(buildPlatform),
    targetPlatform: formatPlatform(targetPlatform),
    stages,
    vertices,
    output: targetStage.last,
    image: toImageConfig(targetStage.config),
  };
  return { graph, warnings };
}

/**
 * Plans a build (pure, synchronous): resolves stages and `--target`, prunes unneeded stages,
 * expands words with ARG/ENV scoping, splices base-image ONBUILD triggers, and returns the
 * deterministic {@link BuildGraph} plus warnings. Throws TsbuildError (PLAN_*, DF_*) with a location.
 */
export function planBuild(df: Dockerfile, options: PlanOptions): PlanResult {
  return plan(df, options);
}

/**
 * Names the images the build needs (FROM bases and COPY --from / RUN --mount from= images of the
 * stages the target needs), after ARG expansion, deduplicated, in graph order (file-source images,
 * then stage bases by stage index). Pure. Configs given in
 * `options.baseImages` are used, so calling it again after resolving reveals images named only
 * by ONBUILD triggers (repeat until no new names appear).
 */
export function listBaseImages(df: Dockerfile, options: Omit<PlanOptions, 'baseImages'> & { readonly baseImages?: ReadonlyMap<string, ImageConfig> }): readonly string[] {
  const { graph } = plan(df, { ...options, baseImages: options.baseImages ?? new Map() });
  const refs = new Set<string>();
  for (const v of graph.vertices) if (v.op.type === 'source' && v.op.source === 'image') refs.add(v.op.ref);
  return [...refs];
}
