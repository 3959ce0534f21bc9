import { posix } from 'node:path';
import { sha256Of, type Digest, type MissChange } from '../core/index.js';
import type { SelectionChecksum } from '../context/index.js';
import { baseImageKey, blankOp, type BuildGraph, type Vertex } from '../plan/index.js';
import type { Store } from '../store/index.js';
import { MAX_STEP_FILES, StepInputsStore, stepIdentityOf, type StepInput, type StepInputs } from './step-inputs.js';
import type { ResolvedBase } from './types.js';

/**
 * Cache-miss explanations: compares what went into a step's key now with what went into it the
 * last time the same step (same identity) ran, and says what changed ("file src/app.js changed",
 * "ARG VERSION changed: 1 -> 2", "base image digest changed: ...", "parent step re-ran: ...").
 * Only data the key already needed is used (no extra hashing). Best effort: failing to read or
 * write the step-inputs documents never fails a build.
 */

/** The context checksums each vertex's key used, by vertex id (per-file digests are taken from them only when needed). */
export type StepFiles = Map<string, SelectionChecksum[]>;

/** Remembers that `vertex` read the context selection `sums` (no copying: a reference). */
export function collectStepFiles(files: StepFiles, vertex: string, sums: SelectionChecksum): void {
  const list = files.get(vertex);
  if (list === undefined) files.set(vertex, [sums]);
  else list.push(sums);
}

/** Context path -> short content digest of the files and symlinks of `sums`, or 'truncated' over the bound. */
function fileDigestsOf(sums: readonly SelectionChecksum[]): Record<string, string> | 'truncated' {
  const map = Object.create(null) as Record<string, string>; // a file may be named __proto__
  let n = 0;
  for (const sel of sums) {
    for (const src of sel.sources) {
      for (const m of src.matches) {
        for (const e of m.entries) {
          if (e.type === 'dir') continue;
          if (++n > MAX_STEP_FILES) return 'truncated';
          map[posix.normalize(posix.join(m.source, e.rel))] = e.digest.slice(7, 7 + 24);
        }
      }
    }
  }
  return map;
}

/** Names whose values are never shown (they look like credentials). */
const SENSITIVE = /pass|secret|token|key|credential|auth|cookie/i;

function shorten(value: string, max = 48): string {
  return value.length <= max ? value : `${value.slice(0, max - 3)}...`;
}

function shortDigest(d: string): string {
  return d.startsWith('sha256:') ? d.slice(0, 7 + 12) : shorten(d);
}

function parseEnv(env: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of env) {
    const i = kv.indexOf('=');
    m.set(i < 0 ? kv : kv.slice(0, i), i < 0 ? '' : kv.slice(i + 1));
  }
  return m;
}

/** Display names of op fields (per op type); fields not listed are shown by their own name. */
const FIELD_NAMES: Readonly<Record<string, string>> = {
  user: 'USER', cwd: 'WORKDIR', mounts: 'RUN --mount', network: 'RUN --network', security: 'RUN --security',
  sources: 'sources', dest: 'destination', chown: '--chown', chmod: '--chmod', link: '--link', parents: '--parents',
  exclude: '--exclude', checksum: '--checksum', keepGitDir: '--keep-git-dir', from: '--from', instruction: 'instruction', edit: 'instruction',
};

function show(v: unknown): string {
  return v === undefined ? '(none)' : shorten(typeof v === 'string' ? v : JSON.stringify(v));
}

/** Differences of the op fields (RUN env is compared separately). */
function diffOp(prev: Readonly<Record<string, unknown>>, cur: Readonly<Record<string, unknown>>): MissChange[] {
  const out: MissChange[] = [];
  let command = false;
  for (const field of new Set([...Object.keys(prev), ...Object.keys(cur)])) {
    const a = JSON.stringify(prev[field]);
    const b = JSON.stringify(cur[field]);
    if (a === b) continue;
    if (cur.type === 'exec' && (field === 'args' || field === 'heredocs')) {
      command = true;
      continue;
    }
    const pe = prev[field] as { kind?: unknown; path?: unknown } | undefined;
    const ce = cur[field] as { kind?: unknown; path?: unknown } | undefined;
    if (field === 'edit' && pe?.kind === 'workdir' && ce?.kind === 'workdir' && pe.path !== ce.path) out.push({ kind: 'instruction', what: 'WORKDIR', from: show(pe.path), to: show(ce.path) });
    else if (field === 'mounts' || field === 'heredocs' || field === 'edit' || field === 'from') out.push({ kind: 'instruction', what: FIELD_NAMES[field] ?? field });
    else out.push({ kind: 'instruction', what: FIELD_NAMES[field] ?? field, from: show(prev[field]), to: show(cur[field]) });
  }
  return command ? [{ kind: 'command' }, ...out] : out;
}

/** Differences of the ARG and ENV values a RUN sees. */
function diffVars(prev: StepInputs, cur: StepInputs): MissChange[] {
  const a = parseEnv(prev.env);
  const b = parseEnv(cur.env);
  const envNames = new Set([...prev.envNames, ...cur.envNames]);
  const out: MissChange[] = [];
  for (const name of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const from = a.get(name);
    const to = b.get(name);
    if (from === to) continue;
    const hidden = SENSITIVE.test(name);
    out.push({
      kind: envNames.has(name) ? 'env' : 'arg', what: name, change: from === undefined ? 'added' : to === undefined ? 'removed' : 'changed',
      ...(hidden || from === undefined ? {} : { from: shorten(from) }),
      ...(hidden || to === undefined ? {} : { to: shorten(to) }),
    });
  }
  return out;
}

/** Differences of the context files the step read (at most `limit` listed; `more` counts the rest). */
function diffFiles(prev: Readonly<Record<string, string>>, cur: Readonly<Record<string, string>>, limit = 20): MissChange[] {
  const out: MissChange[] = [];
  let more = 0;
  const add = (what: string, change: 'added' | 'removed' | 'changed'): void => {
    if (out.length < limit) out.push({ kind: 'file', what, change });
    else more++;
  };
  const paths = [...new Set([...Object.keys(prev), ...Object.keys(cur)])].sort();
  for (const p of paths) {
    const a = Object.hasOwn(prev, p) ? prev[p] : undefined;
    const b = Object.hasOwn(cur, p) ? cur[p] : undefined;
    if (a === b) continue;
    add(p, a === undefined ? 'added' : b === undefined ? 'removed' : 'changed');
  }
  if (more > 0) out.push({ kind: 'file', more });
  return out;
}

/** The human text of a list of changes (files grouped), e.g. `3 files changed: a, b (added), c (+2 more)`. */
export function describeMissChanges(changes: readonly MissChange[]): string {
  const files = changes.filter((c) => c.kind === 'file');
  const parts: string[] = [];
  let filesDone = false;
  for (const c of changes) {
    if (c.kind === 'file') {
      if (filesDone) continue;
      filesDone = true;
      const listed = files.filter((f) => f.what !== undefined);
      const more = files.reduce((n, f) => n + (f.more ?? 0), 0);
      const only = listed[0];
      if (listed.length === 1 && more === 0 && only !== undefined) parts.push(`file ${only.what ?? ''} ${only.change ?? 'changed'}`);
      else {
        const names = listed.slice(0, 3).map((f) => (f.change === 'changed' ? f.what : `${f.what ?? ''} (${f.change ?? ''})`));
        const rest = listed.length - names.length + more;
        parts.push(`${listed.length + more} files changed: ${names.join(', ')}${rest > 0 ? ` (+${rest} more)` : ''}`);
      }
      continue;
    }
    parts.push(describeOne(c));
  }
  return parts.join('; ');
}

function describeOne(c: MissChange): string {
  switch (c.kind) {
    case 'no-record': return 'no cache record';
    case 'record-gone': return 'no cache record (same inputs as before: the record was pruned)';
    case 'cache-disabled': return `cache disabled${c.what === undefined ? '' : ` ${c.what}`}`;
    case 'arg':
    case 'env': {
      const name = `${c.kind === 'arg' ? 'ARG' : 'ENV'} ${c.what ?? ''}`;
      if (c.from === undefined && c.to === undefined) return `${name} ${c.change === 'added' ? 'set' : c.change === 'removed' ? 'unset' : 'changed'}${SENSITIVE.test(c.what ?? '') ? ' (value hidden)' : ''}`;
      return `${name} changed: ${c.from ?? '(unset)'} -> ${c.to ?? '(unset)'}`;
    }
    case 'command': return 'command changed';
    case 'instruction': return c.from === undefined && c.to === undefined ? `${c.what ?? 'instruction'} changed` : `${c.what ?? 'instruction'} changed: ${c.from ?? ''} -> ${c.to ?? ''}`;
    case 'network': return `network changed: ${c.from ?? ''} -> ${c.to ?? ''}`;
    case 'content': return c.what ?? 'source content changed';
    case 'base-image': return `${c.what ?? 'base image digest'} changed: ${c.from ?? ''} -> ${c.to ?? ''}`;
    case 'parent': return `parent step ${c.change === 're-ran' ? 're-ran' : 'changed'}: ${c.what ?? ''}`;
    default: return 'cache key changed';
  }
}

/** What the solver knows about one build (for identities and the inputs documents). */
export interface MissContext {
  readonly graph: BuildGraph;
  readonly store: Store;
  readonly contextDir: string;
  readonly dockerfilePath: string | undefined;
  readonly baseImages: ReadonlyMap<string, ResolvedBase>;
  readonly network: string;
  /** Final cache keys and folded content digests by vertex id. */
  readonly keys: ReadonlyMap<string, Digest>;
  readonly content: ReadonlyMap<string, readonly Digest[]>;
  readonly files: StepFiles;
}

/**
 * Explains misses and records step inputs for one build. {@link explain} before a step runs,
 * {@link record} after it ran, {@link noteHit} on a cache hit (so the next miss compares with the
 * version that was last used).
 */
export class MissExplainer {
  readonly #docs: StepInputsStore;
  readonly #byId: Map<string, Vertex>;

  constructor(private readonly ctx: MissContext) {
    this.#docs = new StepInputsStore(ctx.store);
    this.#byId = new Map(ctx.graph.vertices.map((v) => [v.id, v]));
  }

  #identity(v: Vertex): string {
    const g = this.ctx.graph;
    const kind = v.op.type === 'copy' ? v.op.instruction : v.op.type === 'meta' ? v.op.edit.kind : v.op.type;
    return stepIdentityOf({
      contextDir: this.ctx.contextDir, dockerfile: this.ctx.dockerfilePath ?? '-', target: g.target, stage: v.stage,
      stageName: g.stages.find((s) => s.index === v.stage)?.name, vertex: v.id, kind,
    });
  }

  /** The vertex whose key an input chains on: metadata and `FROM <stage>` vertices are looked through. */
  #layerInput(id: string): Vertex | undefined {
    let v = this.#byId.get(id);
    while (v !== undefined && ((v.op.type === 'meta' && !(v.op.edit.kind === 'workdir' && v.op.edit.mkdir)) || (v.op.type === 'source' && v.op.source === 'stage'))) {
      const up = v.inputs[0];
      if (up === undefined) break;
      v = this.#byId.get(up);
    }
    return v;
  }

  /** Names set by ENV for the steps of `v`'s chain (ENV instructions and the base image's Env). */
  #envNames(v: Vertex): string[] {
    const names = new Set<string>();
    let cur: Vertex | undefined = v;
    while (cur !== undefined) {
      const op = cur.op;
      if (op.type === 'meta' && op.edit.kind === 'env') for (const [k] of op.edit.pairs) names.add(k);
      if (op.type === 'source' && op.source === 'image') {
        for (const kv of this.ctx.baseImages.get(baseImageKey(op.ref, op.platform))?.config.config?.Env ?? []) names.add(kv.split('=')[0] ?? kv);
      }
      const up: string | undefined = cur.inputs[0];
      cur = up === undefined ? undefined : this.#byId.get(up);
    }
    return [...names].sort();
  }

  #inputsOf(v: Vertex): StepInputs {
    const op = blankOp(v.op) as Record<string, unknown>;
    // SECURITY: values of credential-like names are never shown, so they are kept only as digests.
    const env = v.op.type === 'exec' ? v.op.env.map((kv) => (SENSITIVE.test(kv.split('=')[0] ?? '') ? `${kv.split('=')[0] ?? ''}=${sha256Of(kv)}` : kv)) : [];
    const { env: _dropped, ...opFields } = op;
    const inputs = v.inputs.map((id): StepInput => {
      const iv = this.#layerInput(id);
      const key = (iv === undefined ? undefined : this.ctx.keys.get(iv.id)) ?? ('sha256:' as Digest);
      const base = iv?.op.type === 'source' && iv.op.source === 'image' ? this.ctx.baseImages.get(baseImageKey(iv.op.ref, iv.op.platform)) : undefined;
      return { name: iv?.name ?? id, key, ...(base === undefined ? {} : { image: { ref: base.ref, digest: base.manifestDigest } }) };
    });
    const files = fileDigestsOf(this.ctx.files.get(v.id) ?? []);
    return {
      key: this.ctx.keys.get(v.id) as Digest,
      op: opFields,
      env,
      envNames: v.op.type === 'exec' ? this.#envNames(v) : [],
      inputs,
      content: this.ctx.content.get(v.id) ?? [],
      files: files === 'truncated' ? {} : files,
      filesTruncated: files === 'truncated',
      network: this.ctx.network,
    };
  }

  /**
   * Why `v` (about to run) missed: `disabled` says how the cache was off for it (`(--no-cache)`), `reRan` the name of the
   * first re-run ancestor step of each input (undefined for inputs that did not re-run).
   */
  async explain(v: Vertex, disabled: string | undefined, reRan: readonly (string | undefined)[]): Promise<{ reason: string; changes: MissChange[] }> {
    const done = (changes: MissChange[]): { reason: string; changes: MissChange[] } => ({ reason: describeMissChanges(changes), changes });
    if (disabled !== undefined) return done([{ kind: 'cache-disabled', what: disabled }]);
    const firstReRan = reRan.find((r) => r !== undefined);
    let prev: StepInputs | undefined;
    try {
      const last = await this.#docs.lastKey(this.#identity(v));
      prev = last === undefined ? undefined : await this.#docs.load(last);
    } catch {
      prev = undefined;
    }
    if (prev === undefined) return done([{ kind: 'no-record' }]);
    const cur = this.#inputsOf(v);
    const changes: MissChange[] = [...diffOp(prev.op, cur.op), ...diffVars(prev, cur)];
    if (prev.network !== cur.network && v.op.type === 'exec' && v.op.network === 'default') changes.push({ kind: 'network', from: prev.network, to: cur.network });
    if (JSON.stringify(prev.content) !== JSON.stringify(cur.content)) {
      const files = prev.filesTruncated || cur.filesTruncated ? [] : diffFiles(prev.files, cur.files);
      if (files.length > 0) changes.push(...files);
      else if (prev.filesTruncated || cur.filesTruncated) changes.push({ kind: 'content', what: 'context files changed (too many to list)' });
      else if (!changes.some((c) => c.kind === 'network' || c.kind === 'instruction')) {
        const remote = v.op.type === 'copy' && v.op.sources.some((src) => /^[a-z][a-z0-9+.-]*:\/\//i.test(src) || src.startsWith('git@'));
        changes.push({ kind: 'content', what: remote ? 'downloaded content changed' : 'file modes or owners changed' });
      }
    }
    cur.inputs.forEach((input, i) => {
      const before = prev.inputs[i];
      if (before === undefined || before.key === input.key) return;
      if (before.image !== undefined && input.image !== undefined) {
        const what = i === 0 ? 'base image' : `image ${input.image.ref}`;
        if (before.image.ref !== input.image.ref) changes.push({ kind: 'base-image', what, from: before.image.ref, to: input.image.ref });
        else changes.push({ kind: 'base-image', what: `${what} digest`, from: shortDigest(before.image.digest), to: shortDigest(input.image.digest) });
        return;
      }
      const origin = reRan[i];
      changes.push(origin === undefined ? { kind: 'parent', what: input.name, change: 'changed' } : { kind: 'parent', what: origin, change: 're-ran' });
    });
    if (changes.length === 0) changes.push(prev.key === cur.key ? { kind: 'record-gone' } : firstReRan !== undefined ? { kind: 'parent', what: firstReRan, change: 're-ran' } : { kind: 'unknown' });
    return done(changes);
  }

  /** Records the inputs of `v`, which just ran. Best effort. */
  async record(v: Vertex): Promise<void> {
    try {
      await this.#docs.save(this.#identity(v), this.#inputsOf(v));
    } catch {
      // an explanation lost is only a coarser reason next time
    }
  }

  /** Points the identity of `v` (a cache hit) at its current key. Best effort. */
  async noteHit(v: Vertex): Promise<void> {
    const key = this.ctx.keys.get(v.id);
    if (key === undefined) return;
    try {
      await this.#docs.noteKey(this.#identity(v), key);
    } catch {
      // see record()
    }
  }
}
