import { sha256Of, TsbuildError, type Digest } from '../core/index.js';
import type { Op, SourceRef, Vertex } from './graph.js';

/**
 * Cache keys.
 *
 * key(v) = sha256(canonicalJson({ op: blank(v.op), inputs: [inputKey(i) for i in v.inputs] }))
 *
 * - `blank` removes what does not change the result: vertex ids and stage indexes inside source
 *   references (their content is covered by the input keys) and `proxyEnv` of RUN (kept out of
 *   the cache on purpose). Names and locations are not part of the op at all.
 * - inputKey(i) is the key of input i, except that metadata vertices (ENV, LABEL, CMD, ...) are
 *   transparent for filesystem steps: a RUN/COPY/FROM vertex uses the key of the nearest ancestor
 *   that changed the filesystem (the layer key), so `LABEL` changes never bust a later RUN
 *   (everything a RUN sees of the config — env, user, cwd, shell — is in its own op). Metadata
 *   vertices themselves chain on the full key of their parent.
 * - Content is folded in by the solver, not the planner: once it knows the content digest list of
 *   a vertex (the manifest digest of an image source; the sorted content digests of the files a
 *   COPY/ADD selects from the context after .dockerignore; the digest of a downloaded ADD URL), it
 *   calls {@link computeCacheKeys} with those lists; the vertex key becomes
 *   `foldContentDigests(key, digests)` and every descendant key changes accordingly.
 * - A `COPY --link` (without `--chown` names, which are looked up in the parent) makes a layer that
 *   does not depend on its parent: its key leaves the parent out (a new base keeps it cached, as
 *   BuildKit's merge), while the layer key its descendants chain on is the pair (key, parent).
 */

/** Serialises JSON data with object keys sorted and `undefined` members dropped (stable across runs). */
export function canonicalJson(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TsbuildError('INTERNAL', 'non-finite number in cache key input');
    return value === undefined ? 'null' : JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'string')) return JSON.stringify(value); // fast path: env, argv, paths
    let s = '[';
    for (let i = 0; i < value.length; i++) s += (i > 0 ? ',' : '') + canonicalJson(value[i]);
    return `${s}]`;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  let s = '{';
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    s += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${s}}`;
}

function blankRef(ref: SourceRef): unknown {
  if (ref.kind === 'stage') return { kind: 'stage' };
  if (ref.kind === 'image') return { kind: 'image', ref: ref.ref };
  return ref;
}

/** Returns the op with volatile fields blanked (what the cache key hashes). */
export function blankOp(op: Op): unknown {
  switch (op.type) {
    case 'source':
      return op.source === 'stage' ? { type: 'source', source: 'stage' } : op;
    case 'exec':
      return {
        ...op,
        proxyEnv: [],
        mounts: op.mounts.map((m) => ('from' in m && m.from !== undefined ? { ...m, from: blankRef(m.from) } : m)),
      };
    case 'copy':
      return { ...op, from: blankRef(op.from) };
    case 'meta':
      return op;
  }
}

/** Key of one op given the (already chosen) keys of its inputs. */
export function cacheKeyOf(op: Op, inputKeys: readonly Digest[]): Digest {
  return sha256Of(canonicalJson({ op: blankOp(op), inputs: inputKeys }));
}

/** Folds content digests (known only to the solver) into a plan-time key. */
export function foldContentDigests(key: Digest, digests: readonly Digest[]): Digest {
  return digests.length === 0 ? key : sha256Of(canonicalJson({ key, content: digests }));
}

/** True for a `COPY --link` whose layer does not depend on the parent's content (numeric or no --chown). */
export function isIndependentLink(op: Op): boolean {
  return op.type === 'copy' && op.link && (op.chown === undefined || /^\d+(:\d+)?$/.test(op.chown));
}

/** True when a vertex changes the filesystem (its key is a layer key). */
function changesFilesystem(op: Op): boolean {
  return op.type !== 'meta' || (op.edit.kind === 'workdir' && op.edit.mkdir);
}

/**
 * Computes every vertex key of a topologically ordered vertex list, folding in `content` digests
 * per vertex id (empty at plan time). Returns id -> key.
 */
export function computeCacheKeys(
  vertices: readonly Pick<Vertex, 'id' | 'op' | 'inputs'>[],
  content: ReadonlyMap<string, readonly Digest[]> = new Map(),
): Map<string, Digest> {
  const keys = new Map<string, Digest>();
  const layerKeys = new Map<string, Digest>();
  for (const v of vertices) {
    const inputKeys = v.inputs.map((id) => {
      const k = v.op.type === 'meta' ? keys.get(id) : layerKeys.get(id);
      if (k === undefined) throw new TsbuildError('INTERNAL', `vertex ${v.id} depends on ${id}, which is not planned before it`);
      return k;
    });
    const link = isIndependentLink(v.op) && inputKeys.length > 0;
    const key = foldContentDigests(cacheKeyOf(v.op, link ? inputKeys.slice(1) : inputKeys), content.get(v.id) ?? []);
    keys.set(v.id, key);
    const parent = v.inputs[0];
    const parentLayer = parent === undefined ? undefined : layerKeys.get(parent);
    if (link) layerKeys.set(v.id, sha256Of(canonicalJson({ link: key, parent: inputKeys[0] })));
    else layerKeys.set(v.id, changesFilesystem(v.op) || parentLayer === undefined ? key : parentLayer);
  }
  return keys;
}
