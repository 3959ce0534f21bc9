import { join } from 'node:path';
import PQueue from 'p-queue';
import { isTsbuildError, sha256Of, TsbuildError, type Digest } from '../core/index.js';
import { checksumSources, loadIgnore, selectSources, StatCache, statCacheName, type ContextSelection, type LoadedIgnore } from '../context/index.js';
import { baseImageKey, computeCacheKeys, isIndependentLink, type BuildGraph, type CopyOp, type Vertex } from '../plan/index.js';
import { BuildCacheStore } from './cache-store.js';
import { prepareRemoteSources, type RemoteSources } from './ops/add-remote.js';
import { excludeFromSelection } from './ops/copy-select.js';
import { bindSelectionKey, checkCopySupported, checkExecSupported, contextBindSources, contextPatterns, verticesNeedingFiles } from './ops/step-checks.js';
import { metaMakesLayer } from './ops/meta.js';
import { baseImageState, SCRATCH_STATE } from './ops/source.js';
import type { RootfsView } from './rootfs-view.js';
import { collectStepFiles, MissExplainer, type StepFiles } from './miss-reasons.js';
import type { FsState, LayerRef, LazySolveDeps, SolveDeps, SolveOptions } from './types.js';

/** What a solved build produced. */
export interface SolveResult {
  /** The file system state of the output vertex (every layer, bottom first). */
  readonly output: FsState;
  /** Final cache key of every vertex (content digests folded in). */
  readonly keys: ReadonlyMap<string, Digest>;
  /** Vertex ids whose step ran, and those served from the cache. */
  readonly executed: readonly string[];
  readonly cached: readonly string[];
  /**
   * Vertex ids (steps and FROMs) never solved because nothing needed them: the steps that use
   * them were cache hits (lazy solving). No vertex event names them; one `info` event lists them.
   */
  readonly skipped: readonly string[];
  /** The layer each layer-making vertex produced (ran or cached), by vertex id (for --cache-to). */
  readonly layers: ReadonlyMap<string, LayerRef>;
  /** Creation times (ISO 8601) of the local cache records used or written, by vertex id (for image-created.ts). */
  readonly recordTimes: ReadonlyMap<string, string>;
}

/** A cache record found for a step: in the store (`local`) or in an imported cache (blob maybe not pulled yet). */
interface LayerHit {
  readonly layer: LayerRef;
  readonly local: boolean;
  /** The local record's creation time. */
  readonly created?: string;
}

/** The info line naming the steps lazy solving skipped. */
function describeSkipped(names: readonly string[]): string {
  const shown = names.slice(0, 6).join(', ');
  const more = names.length > 6 ? ` and ${names.length - 6} more` : '';
  return `skipped ${names.length} step${names.length === 1 ? '' : 's'} no step to run needs (their results are used only by cache hits): ${shown}${more}`;
}

/** Thrown into steps cancelled because another step failed. */
class Cancelled extends Error {}

/** True for vertices whose work yields a layer (and so has a cache record). */
function makesLayer(v: Vertex): boolean {
  return v.op.type === 'exec' || v.op.type === 'copy' || (v.op.type === 'meta' && metaMakesLayer(v.op.edit));
}

/** Fails early, before any step runs, on ops this version cannot execute. */
function checkSupported(graph: BuildGraph, options: SolveOptions): void {
  for (const v of graph.vertices) {
    if (v.op.type === 'exec') checkExecSupported(v.op, v, options.entitlements);
    else if (v.op.type === 'copy') checkCopySupported(v.op, v);
    else if (v.op.type === 'source' && v.op.source === 'image' && !options.baseImages.has(baseImageKey(v.op.ref, v.op.platform))) {
      throw new TsbuildError('INTERNAL', `base image "${v.op.ref}" was not resolved before solving`);
    }
  }
}

/** Selects and checksums the context sources of every COPY (for the keys and the copy itself). */
async function hashContext(graph: BuildGraph, options: SolveOptions, deps: Pick<SolveDeps, 'store' | 'hostTools'>, remotes: Map<string, RemoteSources>, files: StepFiles): Promise<{ content: Map<string, Digest[]>; selections: Map<string, ContextSelection> }> {
  const content = new Map<string, Digest[]>();
  const selections = new Map<string, ContextSelection>();
  let ignore: LoadedIgnore | undefined;
  let statCache: StatCache | undefined;
  for (const v of graph.vertices) {
    if (v.op.type === 'source' && v.op.source === 'image') {
      content.set(v.id, [(options.baseImages.get(baseImageKey(v.op.ref, v.op.platform)) as { manifestDigest: Digest }).manifestDigest]);
    }
    if (v.op.type === 'exec') {
      // RUN --mount=type=bind from the context: the selected files' digests are part of the key.
      const binds = contextBindSources(v.op);
      if (binds.length === 0) continue;
      ignore ??= loadIgnore(options.contextDir, options.dockerfilePath);
      statCache ??= StatCache.load(join(deps.store.paths.cache, statCacheName(options.contextDir)));
      const digests: Digest[] = [];
      for (const b of binds) {
        const sel = selectSources(options.contextDir, [b.source], { ignore: ignore.matcher, loc: v.loc });
        const sums = await checksumSources(sel, { statCache, signal: options.signal });
        collectStepFiles(files, v.id, sums);
        digests.push(sums.digest);
        selections.set(bindSelectionKey(v.id, b.index), sel);
      }
      content.set(v.id, digests);
      continue;
    }
    if (v.op.type !== 'copy' || v.op.from.kind !== 'context') continue;
    const fallbackMtime = options.sourceDateEpoch ?? Math.floor((options.now ?? Date.now)() / 1000);
    const remote = await prepareRemoteSources(v.op, { tmpDir: deps.store.paths.tmp, signal: options.signal, hostTools: deps.hostTools ?? {}, fallbackMtime, ...(v.loc === undefined ? {} : { loc: v.loc }) });
    if (remote !== undefined) remotes.set(v.id, remote);
    const patterns = contextPatterns(v.op);
    if (patterns.length === 0) {
      if (remote !== undefined) content.set(v.id, [...remote.digests]);
      continue; // here-documents and URLs only: the text is in the op, the downloads in `remote`
    }
    ignore ??= loadIgnore(options.contextDir, options.dockerfilePath);
    statCache ??= StatCache.load(join(deps.store.paths.cache, statCacheName(options.contextDir)));
    const sel = excludeFromSelection(selectSources(options.contextDir, patterns, { ignore: ignore.matcher, loc: v.loc }), v.op.exclude);
    const sums = await checksumSources(sel, { statCache, signal: options.signal });
    collectStepFiles(files, v.id, sums);
    selections.set(v.id, sel);
    content.set(v.id, [sums.digest, ...(remote?.digests ?? [])]);
  }
  statCache?.save();
  // The build's --network is the mode of every RUN that names none: part of its key (host keeps the plan's key).
  if (options.network !== 'host') {
    for (const v of graph.vertices) {
      if (v.op.type === 'exec' && v.op.network === 'default') content.set(v.id, [...(content.get(v.id) ?? []), sha256Of(`network=${options.network}`)]);
    }
  }
  return { content, selections };
}

/**
 * Runs a build graph: independent steps in parallel on a p-queue (`options.concurrency`), each
 * step at most once per cache key (identical keys in flight share one run), cache hits skipped
 * unless `noCache`. Reports `vertex.*` events to `deps.events`. The first failure cancels every
 * other step (running sandboxes are killed, active snapshots removed) and is rethrown once all
 * steps have settled; `options.signal` (Ctrl-C) does the same.
 */
export async function solveGraph(graph: BuildGraph, deps: SolveDeps | LazySolveDeps, options: SolveOptions): Promise<SolveResult> {
  const remotes = new Map<string, RemoteSources>();
  try {
    return await solveWithRemotes(graph, deps, options, remotes);
  } finally {
    await Promise.all([...remotes.values()].map((r) => r.cleanup()));
  }
}

async function solveWithRemotes(graph: BuildGraph, deps: SolveDeps | LazySolveDeps, options: SolveOptions, remotes: Map<string, RemoteSources>): Promise<SolveResult> {
  checkSupported(graph, options);
  const cancelled = (): TsbuildError => new TsbuildError('SOLVE_ABORTED', 'the build was cancelled', { cause: options.signal.reason, exitCode: 130 });
  if (options.signal.aborted) throw cancelled();
  // Step machinery and effects load when the first step runs (a fully cached build never needs them).
  let opened: Promise<SolveDeps> | undefined;
  const stepDeps = (): Promise<SolveDeps> => (opened ??= (async () => {
    const full: SolveDeps = 'openStepDeps' in deps ? { ...deps, ...(await deps.openStepDeps()) } : deps;
    await full.snapshotter.removeStale();
    return full;
  })());
  let loadedOps: Promise<typeof import('./step-ops.js')> | undefined;
  const stepOps = (): Promise<typeof import('./step-ops.js')> => (loadedOps ??= import('./step-ops.js'));
  const files: StepFiles = new Map();
  const { content, selections } = await hashContext(graph, options, deps, remotes, files).catch((err: unknown) => {
    throw options.signal.aborted ? cancelled() : err;
  });
  const keys = computeCacheKeys(graph.vertices, content);
  const cache = new BuildCacheStore(deps.store);
  const explainer = new MissExplainer({ graph, store: deps.store, contextDir: options.contextDir, dockerfilePath: options.dockerfilePath, baseImages: options.baseImages, network: options.network, keys, content, files });
  const now = options.now ?? Date.now;
  const controller = new AbortController();
  const signal = controller.signal;
  const onOuterAbort = (): void => controller.abort(options.signal.reason);
  options.signal.addEventListener('abort', onOuterAbort, { once: true });
  const queue = new PQueue({ concurrency: Math.max(1, options.concurrency) });
  const needFiles = verticesNeedingFiles(graph.vertices, makesLayer);
  const byId = new Map<string, Vertex>(graph.vertices.map((v) => [v.id, v]));
  const results = new Map<string, Promise<FsState>>();
  const inflight = new Map<string, Promise<FsState>>();
  const executed: string[] = [];
  /** States made by steps that ran in this build -> the first re-run step of their chain (for "parent step re-ran"). */
  const reRan = new WeakMap<FsState, string>();
  const cached: string[] = [];
  const stepLayers = new Map<string, LayerRef>();
  const recordTimes = new Map<string, string>();
  /** Best-effort bookkeeping of hits (miss explanations), awaited before the solve returns. */
  const notes: Promise<void>[] = [];
  /** Cache records and step inputs of the steps that ran, being written; awaited before the solve returns. */
  const records: Promise<void>[] = [];
  let firstError: unknown;
  const fail = (err: unknown): void => {
    if (firstError === undefined && !(err instanceof Cancelled)) {
      firstError = err;
      // Queued steps see the aborted signal and end at once; running ones are killed and clean up.
      // (No queue.clear(): p-queue never settles the promises of cleared tasks.)
      controller.abort(err);
    }
  };

  /** The cache record (local, else imported) of a layer-making vertex, looked up once; undefined: a miss. */
  const lookups = new Map<string, Promise<LayerHit | undefined>>();
  const lookup = (v: Vertex): Promise<LayerHit | undefined> => {
    let p = lookups.get(v.id);
    if (p === undefined) {
      p = lookupVertex(v);
      lookups.set(v.id, p);
    }
    return p;
  };
  const lookupVertex = async (v: Vertex): Promise<LayerHit | undefined> => {
    if (cacheDisabled(v)) return undefined;
    const key = keys.get(v.id) as Digest;
    const hit = await cache.get(key);
    if (hit !== undefined) return { layer: hit.layer, local: true, created: hit.created };
    // An imported blob is pulled only if a step that runs (or the output) needs it: executeStep/ensure.
    const imported = options.cacheImport?.lookup(key);
    return imported === undefined ? undefined : { layer: imported, local: false };
  };
  const cacheDisabled = (v: Vertex): boolean => options.noCache || (v.stage !== null && (options.noCacheStages?.has(v.stage) ?? false));

  /** FROM and metadata-only vertices: the state of their first input (or of the base image). */
  const passThrough = (v: Vertex, parent: FsState): FsState => {
    if (v.op.type !== 'source') return parent;
    deps.events({ type: 'vertex.start', vertex: v.id, name: v.name, time: now() });
    const state = v.op.source === 'scratch' ? SCRATCH_STATE
      : v.op.source === 'stage' ? parent
      : baseImageState(options.baseImages.get(baseImageKey(v.op.ref, v.op.platform)) as NonNullable<ReturnType<typeof options.baseImages.get>>);
    deps.events({ type: 'vertex.done', vertex: v.id, time: now() });
    return state;
  };

  /**
   * Lazy solving: the state of `id`, solving only what it needs. A cache hit needs only its
   * parent's layer list (records, no content); a miss needs the content of every input (its
   * parent, the stages and images it copies or binds from), so only misses pull their inputs in.
   */
  const solve = (id: string): Promise<FsState> => {
    let p = results.get(id);
    if (p === undefined) {
      const v = byId.get(id);
      if (v === undefined) throw new TsbuildError('INTERNAL', `vertex ${id} is not in the build graph`);
      p = solveVertex(v);
      p.catch(fail);
      results.set(id, p);
    }
    return p;
  };
  const parentOf = async (v: Vertex): Promise<FsState> => (v.inputs[0] === undefined ? SCRATCH_STATE : solve(v.inputs[0]));

  const solveVertex = async (v: Vertex): Promise<FsState> => {
    if (signal.aborted) throw new Cancelled();
    if (!makesLayer(v)) {
      const parent = await parentOf(v);
      if (signal.aborted) throw new Cancelled();
      return passThrough(v, parent);
    }
    const hit = await lookup(v);
    if (hit !== undefined) {
      const parent = await parentOf(v);
      if (signal.aborted) throw new Cancelled();
      cached.push(v.id);
      if (hit.local) notes.push(explainer.noteHit(v));
      if (hit.created !== undefined) recordTimes.set(v.id, hit.created);
      deps.events({ type: 'vertex.cached', vertex: v.id, name: v.name, time: now() });
      stepLayers.set(v.id, hit.layer);
      return { layers: [...parent.layers, hit.layer] };
    }
    const inputs = await Promise.all(v.inputs.map(solve));
    signal.throwIfAborted();
    const key = keys.get(v.id) as Digest;
    // A COPY --link key leaves the parent out: runs over different parents must stay apart.
    const flight = isIndependentLink(v.op) ? `${key} ${(inputs[0]?.layers ?? []).map((l) => l.diffId).join(' ')}` : key;
    let shared = inflight.get(flight);
    if (shared === undefined) {
      shared = queue.add(() => runStep(v, inputs, key), { throwOnTimeout: true });
      inflight.set(flight, shared);
    }
    const state = await shared;
    const made = state.layers[state.layers.length - 1];
    if (made !== undefined) stepLayers.set(v.id, made);
    return state;
  };

  /** Runs a missed step over its inputs' content and records its layer under `key`. */
  const runStep = async (v: Vertex, inputs: readonly FsState[], key: Digest): Promise<FsState> => {
    const parent = inputs[0] ?? SCRATCH_STATE;
    if (signal.aborted) throw new Cancelled();
    const noCache = cacheDisabled(v);
    deps.events({ type: 'vertex.start', vertex: v.id, name: v.name, time: now() });
    const origins = inputs.map((i) => reRan.get(i));
    const disabled = options.noCache ? '(--no-cache)' : noCache ? 'for this stage (--no-cache-filter)' : undefined;
    const { reason, changes } = await explainer.explain(v, disabled, origins);
    deps.events({ type: 'vertex.miss', vertex: v.id, reason, changes });
    executed.push(v.id);
    try {
      const layer = await executeStep(v, parent, inputs);
      const created = new Date();
      // The cache record and the step's inputs (for miss reasons) are written while the next steps run:
      // nothing in this build reads them (identical keys in flight share one run). A failed write
      // fails the build as before; the solve waits for all of them before it returns.
      records.push(Promise.all([cache.put(key, layer, created), explainer.record(v)]).then(() => undefined, fail));
      recordTimes.set(v.id, created.toISOString());
      deps.events({ type: 'vertex.done', vertex: v.id, time: now() });
      const state: FsState = { layers: [...parent.layers, layer] };
      reRan.set(state, origins.find((o) => o !== undefined) ?? v.name);
      return state;
    } catch (err) {
      const cancelled = signal.aborted && firstError !== err && !(isTsbuildError(err, 'RUN_EXIT'));
      deps.events({ type: 'vertex.done', vertex: v.id, time: now(), error: cancelled ? 'cancelled' : err instanceof Error ? err.message : String(err) });
      throw cancelled ? new Cancelled() : err;
    }
  };

  const executeStep = async (v: Vertex, parent: FsState, inputs: readonly FsState[]): Promise<LayerRef> => {
    const op = v.op;
    const { execCacheMountIds, withStateView, resolveChown, canStreamCopy, withStreamedCopy, withActiveSnapshot, runExec, viewOf, applyMetaToView } = await stepOps();
    const deps = await stepDeps();
    await options.cacheImport?.ensure(inputs.flatMap((i) => i.layers), signal);
    if (op.type === 'exec') await options.cacheImport?.ensureMounts?.(execCacheMountIds(op), signal);
    // COPY --link: an independent layer made on an empty state (--chown names come from the parent).
    const link = op.type === 'copy' && op.link;
    const owner = link && op.chown !== undefined ? await withStateView(deps, parent, signal, async (pv) => resolveChown(pv, op.chown as string, v.loc)) : undefined;
    // The layer straight from the context files when no step of this build reads the result.
    if (op.type === 'copy' && canStreamCopy(op) && !needFiles.has(v.id)) {
      return withStreamedCopy(deps, link ? SCRATCH_STATE : parent, signal, { sourceDateEpoch: options.sourceDateEpoch, now }, async (view) => runCopy(v, op, view, inputs, selections, owner));
    }
    return withActiveSnapshot(deps, link ? SCRATCH_STATE : parent, signal, options.sourceDateEpoch, async (active) => {
      if (op.type === 'exec') {
        await runExec(op, active, {
          deps, vertex: v, defaultNetwork: options.network, signal,
          inputs: new Map(v.inputs.map((id, i) => [id, inputs[i] as FsState])),
          contextSelection: (index) => selections.get(bindSelectionKey(v.id, index)),
          ...(options.secrets === undefined ? {} : { secrets: options.secrets }),
          ...(options.sshAgents === undefined ? {} : { sshAgents: options.sshAgents }),
        });
      } else if (op.type === 'copy') {
        await runCopy(v, op, viewOf(active), inputs, selections, owner);
      } else if (op.type === 'meta') {
        applyMetaToView(op.edit, viewOf(active));
      }
    });
  };

  const runCopy = async (v: Vertex, op: CopyOp, view: RootfsView, inputs: readonly FsState[], sels: Map<string, ContextSelection>, owner?: { uid: number; gid: number }): Promise<void> => {
    const { contextSources, expandArchives, excludeFromSources, withHeredocSources, copyInto, withStateView, viewSources } = await stepOps();
    const deps = await stepDeps();
    const copyOptions = owner === undefined ? {} : { owner };
    if (op.from.kind === 'context') {
      const sel = sels.get(v.id);
      if (sel === undefined && contextPatterns(op).length > 0) throw new TsbuildError('INTERNAL', `no context selection for ${v.id}`);
      const mtime = options.sourceDateEpoch ?? Math.floor(now() / 1000);
      const cleanups: (() => Promise<void>)[] = [];
      try {
        let fromContext = sel === undefined ? { sources: [], wildcard: false } : contextSources(sel);
        if (op.instruction === 'ADD') {
          const expanded = await expandArchives(fromContext, { tmpDir: deps.store.paths.tmp, tools: deps.compressionTools, hostTools: deps.hostTools ?? {}, signal, ...(v.loc === undefined ? {} : { loc: v.loc }) });
          cleanups.push(expanded.cleanup);
          fromContext = expanded.sources;
        }
        const remote = remotes.get(v.id);
        if (remote !== undefined) {
          const fetched = excludeFromSources({ sources: await remote.load(), wildcard: false }, op.exclude);
          fromContext = { sources: [...fromContext.sources, ...fetched.sources], wildcard: fromContext.wildcard };
        }
        const { sources, cleanup } = await withHeredocSources(op, fromContext, deps.store.paths.tmp, mtime);
        cleanups.push(cleanup);
        await copyInto(view, op, sources, v.loc, copyOptions);
      } finally {
        await Promise.all(cleanups.map((c) => c()));
      }
      return;
    }
    const fromVertex = op.from.vertex;
    const index = v.inputs.indexOf(fromVertex);
    const source = inputs[index];
    if (index < 0 || source === undefined) throw new TsbuildError('INTERNAL', `COPY --from input ${fromVertex} of ${v.id} is missing`);
    const what = op.from.kind === 'stage' ? `stage ${op.from.stage}` : `image ${op.from.ref}`;
    await withStateView(deps, source, signal, async (from) => copyInto(view, op, excludeFromSources(viewSources(from, op.sources, v.loc, what), op.exclude), v.loc, copyOptions));
  };

  // The output needs its layers; with `solveAll` (--cache-to mode=max) every step needs its own;
  // the steps of a --no-cache-filter stage run even where a hit would not need them (the user asked).
  const roots = options.solveAll === true ? graph.vertices.map((v) => v.id)
    : [graph.output, ...graph.vertices.filter((v) => makesLayer(v) && !options.noCache && cacheDisabled(v)).map((v) => v.id)];
  for (const v of graph.vertices) if (makesLayer(v)) void lookup(v); // every record read at once, in parallel
  for (const id of roots) solve(id).catch(() => undefined);
  try {
    // Steps discover the inputs they need while they run: wait until no new one was started.
    for (let seen = -1; seen !== results.size;) {
      seen = results.size;
      await Promise.allSettled(results.values());
    }
    await queue.onIdle();
    await Promise.allSettled([...lookups.values(), ...notes]); // records read for steps nothing needed
    await Promise.all(records);
  } finally {
    options.signal.removeEventListener('abort', onOuterAbort);
    // The commits' scratch dirs are removed in the background, overlapping the next steps: done before the build ends.
    // The sandbox's launcher zygote (if it started one) ends with the build.
    await opened?.then(async (d) => {
      try {
        await d.snapshotter.settle();
      } finally {
        await d.sandbox.close();
      }
    }, () => undefined);
  }
  if (options.signal.aborted) throw cancelled();
  if (firstError !== undefined) throw firstError;
  const output = await (results.get(graph.output) as Promise<FsState>);
  await options.cacheImport?.ensure(output.layers, options.signal);
  const skipped = graph.vertices.filter((v) => !results.has(v.id) && (makesLayer(v) || v.op.type === 'source')).map((v) => v.id);
  if (skipped.length > 0) deps.events({ type: 'info', message: describeSkipped(skipped.map((id) => byId.get(id)?.name ?? id)) });
  return { output, keys, executed, cached, skipped, layers: stepLayers, recordTimes };
}
