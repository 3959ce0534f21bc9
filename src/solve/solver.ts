import { join } from 'node:path';
import PQueue from 'p-queue';
import { isTsbuildError, TsbuildError, type Digest } from '../core/index.js';
import { checksumSources, loadIgnore, selectSources, StatCache, statCacheName, type ContextSelection, type LoadedIgnore } from '../context/index.js';
import { computeCacheKeys, type BuildGraph, type CopyOp, type Vertex } from '../plan/index.js';
import { BuildCacheStore } from './cache-store.js';
import { checkAddSources, checkCopySupported, contextPatterns, contextSources, copyInto, viewSources, withHeredocSources } from './ops/copy.js';
import { checkExecSupported, runExec } from './ops/exec.js';
import { applyMetaToView, metaMakesLayer } from './ops/meta.js';
import { baseImageState, SCRATCH_STATE } from './ops/source.js';
import { viewOf, withActiveSnapshot, withStateView } from './snapshots.js';
import type { FsState, LayerRef, SolveDeps, SolveOptions } from './types.js';

/** What a solved build produced. */
export interface SolveResult {
  /** The file system state of the output vertex (every layer, bottom first). */
  readonly output: FsState;
  /** Final cache key of every vertex (content digests folded in). */
  readonly keys: ReadonlyMap<string, Digest>;
  /** Vertex ids whose step ran, and those served from the cache. */
  readonly executed: readonly string[];
  readonly cached: readonly string[];
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
    if (v.op.type === 'exec') checkExecSupported(v.op, v);
    else if (v.op.type === 'copy') checkCopySupported(v.op, v);
    else if (v.op.type === 'source' && v.op.source === 'image' && !options.baseImages.has(v.op.ref)) {
      throw new TsbuildError('INTERNAL', `base image "${v.op.ref}" was not resolved before solving`);
    }
  }
}

/** Selects and checksums the context sources of every COPY (for the keys and the copy itself). */
async function hashContext(graph: BuildGraph, options: SolveOptions, deps: SolveDeps): Promise<{ content: Map<string, Digest[]>; selections: Map<string, ContextSelection> }> {
  const content = new Map<string, Digest[]>();
  const selections = new Map<string, ContextSelection>();
  let ignore: LoadedIgnore | undefined;
  let statCache: StatCache | undefined;
  for (const v of graph.vertices) {
    if (v.op.type === 'source' && v.op.source === 'image') {
      content.set(v.id, [(options.baseImages.get(v.op.ref) as { manifestDigest: Digest }).manifestDigest]);
    }
    if (v.op.type !== 'copy' || v.op.from.kind !== 'context') continue;
    const patterns = contextPatterns(v.op);
    if (patterns.length === 0) continue; // here-documents only: their text is in the op
    ignore ??= loadIgnore(options.contextDir, options.dockerfilePath);
    statCache ??= StatCache.load(join(deps.store.paths.cache, statCacheName(options.contextDir)));
    const sel = selectSources(options.contextDir, patterns, { ignore: ignore.matcher, loc: v.loc });
    const sums = await checksumSources(sel, { statCache, signal: options.signal });
    selections.set(v.id, sel);
    content.set(v.id, [sums.digest]);
  }
  statCache?.save();
  return { content, selections };
}

/**
 * Runs a build graph: independent steps in parallel on a p-queue (`options.concurrency`), each
 * step at most once per cache key (identical keys in flight share one run), cache hits skipped
 * unless `noCache`. Reports `vertex.*` events to `deps.events`. The first failure cancels every
 * other step (running sandboxes are killed, active snapshots removed) and is rethrown once all
 * steps have settled; `options.signal` (Ctrl-C) does the same.
 */
export async function solveGraph(graph: BuildGraph, deps: SolveDeps, options: SolveOptions): Promise<SolveResult> {
  checkSupported(graph, options);
  const cancelled = (): TsbuildError => new TsbuildError('SOLVE_ABORTED', 'the build was cancelled', { cause: options.signal.reason, exitCode: 130 });
  if (options.signal.aborted) throw cancelled();
  await deps.snapshotter.removeStale();
  const { content, selections } = await hashContext(graph, options, deps).catch((err: unknown) => {
    throw options.signal.aborted ? cancelled() : err;
  });
  const keys = computeCacheKeys(graph.vertices, content);
  const cache = new BuildCacheStore(deps.store);
  const now = options.now ?? Date.now;
  const controller = new AbortController();
  const signal = controller.signal;
  const onOuterAbort = (): void => controller.abort(options.signal.reason);
  options.signal.addEventListener('abort', onOuterAbort, { once: true });
  const queue = new PQueue({ concurrency: Math.max(1, options.concurrency) });
  const results = new Map<string, Promise<FsState>>();
  const inflight = new Map<Digest, Promise<FsState>>();
  const executed: string[] = [];
  /** States made by steps that ran in this build (a step over one of them says "parent step re-ran"). */
  const fresh = new WeakSet<FsState>();
  const cached: string[] = [];
  let firstError: unknown;
  const fail = (err: unknown): void => {
    if (firstError === undefined && !(err instanceof Cancelled)) {
      firstError = err;
      // Queued steps see the aborted signal and end at once; running ones are killed and clean up.
      // (No queue.clear(): p-queue never settles the promises of cleared tasks.)
      controller.abort(err);
    }
  };

  const runStep = async (v: Vertex, inputs: readonly FsState[], key: Digest): Promise<FsState> => {
    const parent = inputs[0] ?? SCRATCH_STATE;
    if (signal.aborted) throw new Cancelled();
    if (!makesLayer(v)) {
      if (v.op.type !== 'source') return parent;
      deps.events({ type: 'vertex.start', vertex: v.id, name: v.name, time: now() });
      const state = v.op.source === 'scratch' ? SCRATCH_STATE
        : v.op.source === 'stage' ? parent
        : baseImageState(options.baseImages.get(v.op.ref) as NonNullable<ReturnType<typeof options.baseImages.get>>);
      deps.events({ type: 'vertex.done', vertex: v.id, time: now() });
      return state;
    }
    const noCache = options.noCache || (v.stage !== null && (options.noCacheStages?.has(v.stage) ?? false));
    if (!noCache) {
      const hit = await cache.get(key);
      if (hit !== undefined) {
        cached.push(v.id);
        deps.events({ type: 'vertex.cached', vertex: v.id, name: v.name, time: now() });
        return { layers: [...parent.layers, hit.layer] };
      }
    }
    signal.throwIfAborted();
    deps.events({ type: 'vertex.start', vertex: v.id, name: v.name, time: now() });
    const reason = options.noCache ? 'cache disabled (--no-cache)'
      : noCache ? 'cache disabled for this stage (--no-cache-filter)'
      : inputs.some((i) => fresh.has(i)) ? 'parent step re-ran'
      : 'no cache record';
    deps.events({ type: 'vertex.miss', vertex: v.id, reason });
    executed.push(v.id);
    try {
      const layer = await executeStep(v, parent, inputs);
      await cache.put(key, layer);
      deps.events({ type: 'vertex.done', vertex: v.id, time: now() });
      const state: FsState = { layers: [...parent.layers, layer] };
      fresh.add(state);
      return state;
    } catch (err) {
      const cancelled = signal.aborted && firstError !== err && !(isTsbuildError(err, 'RUN_EXIT'));
      deps.events({ type: 'vertex.done', vertex: v.id, time: now(), error: cancelled ? 'cancelled' : err instanceof Error ? err.message : String(err) });
      throw cancelled ? new Cancelled() : err;
    }
  };

  const executeStep = async (v: Vertex, parent: FsState, inputs: readonly FsState[]): Promise<LayerRef> => {
    const op = v.op;
    return withActiveSnapshot(deps, parent, signal, options.sourceDateEpoch, async (active) => {
      if (op.type === 'exec') {
        await runExec(op, active, { deps, vertex: v, defaultNetwork: options.network, signal });
      } else if (op.type === 'copy') {
        await runCopy(v, op, viewOf(active), inputs, selections);
      } else if (op.type === 'meta') {
        applyMetaToView(op.edit, viewOf(active));
      }
    });
  };

  const runCopy = async (v: Vertex, op: CopyOp, view: ReturnType<typeof viewOf>, inputs: readonly FsState[], sels: Map<string, ContextSelection>): Promise<void> => {
    if (op.from.kind === 'context') {
      const sel = sels.get(v.id);
      if (sel === undefined && contextPatterns(op).length > 0) throw new TsbuildError('INTERNAL', `no context selection for ${v.id}`);
      const fromContext = sel === undefined ? { sources: [], wildcard: false } : contextSources(sel);
      checkAddSources(op, fromContext, v.loc);
      const mtime = options.sourceDateEpoch ?? Math.floor(now() / 1000);
      const { sources, cleanup } = await withHeredocSources(op, fromContext, deps.store.paths.tmp, mtime);
      try {
        await copyInto(view, op, sources, v.loc);
      } finally {
        await cleanup();
      }
      return;
    }
    const fromVertex = op.from.vertex;
    const index = v.inputs.indexOf(fromVertex);
    const source = inputs[index];
    if (index < 0 || source === undefined) throw new TsbuildError('INTERNAL', `COPY --from input ${fromVertex} of ${v.id} is missing`);
    const what = op.from.kind === 'stage' ? `stage ${op.from.stage}` : `image ${op.from.ref}`;
    await withStateView(deps, source, signal, async (from) => copyInto(view, op, viewSources(from, op.sources, v.loc, what), v.loc));
  };

  for (const v of graph.vertices) {
    const key = keys.get(v.id) as Digest;
    const p = (async (): Promise<FsState> => {
      const inputs = await Promise.all(v.inputs.map((id) => results.get(id) as Promise<FsState>));
      signal.throwIfAborted();
      let shared = inflight.get(key);
      if (shared === undefined) {
        shared = makesLayer(v)
          ? queue.add(() => runStep(v, inputs, key), { throwOnTimeout: true })
          : runStep(v, inputs, key);
        inflight.set(key, shared);
      }
      return shared;
    })();
    p.catch(fail);
    results.set(v.id, p);
  }
  try {
    await Promise.allSettled(results.values());
    await queue.onIdle();
  } finally {
    options.signal.removeEventListener('abort', onOuterAbort);
  }
  if (options.signal.aborted) throw cancelled();
  if (firstError !== undefined) throw firstError;
  const output = await (results.get(graph.output) as Promise<FsState>);
  return { output, keys, executed, cached };
}
