import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { access, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, isDigest, sha256Of, TsbuildError, type Digest } from '../core/index.js';
import type { Store } from '../store/index.js';

/**
 * "Step inputs": what went into the cache key of a step that ran, kept so that the next miss of
 * the same step can say what changed (miss-reasons.ts). Two kinds of files under
 * `<store>/cache/steps/`:
 *  - `<identity>.json`: which cache key the step with this stable identity had last time
 *    (identity = context dir + Dockerfile + target + stage + instruction index and kind);
 *  - `inputs/<key>.json`: the inputs document of one cache key (written when the step ran).
 * Writes are atomic (tmp/ + rename); a missing, corrupt or foreign file reads as undefined.
 */

/** One input of a step: the layer key it chained on, and the base image when that input is one. */
export interface StepInput {
  readonly name: string;
  readonly key: Digest;
  readonly image?: { readonly ref: string; readonly digest: Digest };
}

/** What went into one step's cache key. */
export interface StepInputs {
  readonly key: Digest;
  /** The op as the key hashes it (blankOp), without `env` for RUN (see `env`). */
  readonly op: Readonly<Record<string, unknown>>;
  /** RUN: `KEY=VALUE` pairs of the op (image ENV then build ARGs in scope). */
  readonly env: readonly string[];
  /** RUN: the names among `env` set by ENV (in the stage or its base image); the others are ARGs. */
  readonly envNames: readonly string[];
  readonly inputs: readonly StepInput[];
  /** Content digests the solver folded into the key (context selection, downloads, network, base). */
  readonly content: readonly Digest[];
  /** Context file path -> content digest of the files the step read (COPY/ADD sources, RUN binds), bounded. */
  readonly files: Readonly<Record<string, string>>;
  /** True when the step read more files than {@link MAX_STEP_FILES} (then `files` is empty). */
  readonly filesTruncated: boolean;
  /** The build's `--network` (the mode of RUN steps that name none). */
  readonly network: string;
}

/** Steps reading more context files than this keep no per-file digests (the miss reason is then coarser). */
export const MAX_STEP_FILES = 25_000;

const FORMAT = 'tsbuild-step-inputs/1';

/** The stable identity of a step across builds (hex), independent of its cache key. */
export function stepIdentityOf(parts: { readonly contextDir: string; readonly dockerfile: string; readonly target: number; readonly stage: number | null; readonly stageName: string | undefined; readonly vertex: string; readonly kind: string }): string {
  return digestHex(sha256Of(JSON.stringify([FORMAT, parts.contextDir, parts.dockerfile, parts.target, parts.stage, parts.stageName ?? '', parts.vertex, parts.kind])));
}

function isStepInputs(v: unknown, key: Digest): v is StepInputs {
  const d = v as Partial<StepInputs> | null;
  return d !== null && typeof d === 'object' && d.key === key && typeof d.op === 'object' && d.op !== null
    && Array.isArray(d.env) && Array.isArray(d.envNames) && Array.isArray(d.inputs) && Array.isArray(d.content)
    && typeof d.files === 'object' && d.files !== null && typeof d.filesTruncated === 'boolean' && typeof d.network === 'string';
}

/** Reads and writes step-inputs documents of one store (see the module comment). */
export class StepInputsStore {
  readonly #dir: string;
  /** The documents' directories, made by the first write (not by every one: a thread-pool round trip each). */
  #made: Promise<unknown> | undefined;

  constructor(private readonly store: Store) {
    this.#dir = join(store.paths.cache, 'steps');
  }

  async #readJson(path: string): Promise<Record<string, unknown> | undefined> {
    try {
      // Small files read and written synchronously (no thread-pool round trips; see BuildCacheStore.put).
      const doc = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      return doc !== null && typeof doc === 'object' && (doc as { format?: unknown }).format === FORMAT ? doc as Record<string, unknown> : undefined;
    } catch {
      return undefined;
    }
  }

  async #writeJson(path: string, doc: unknown): Promise<void> {
    const tmp = join(this.store.paths.tmp, `steps-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await (this.#made ??= mkdir(join(this.#dir, 'inputs'), { recursive: true }));
      writeFileSync(tmp, `${JSON.stringify(doc)}\n`, { mode: 0o644 });
      await rename(tmp, path).catch(async (err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await mkdir(join(this.#dir, 'inputs'), { recursive: true }); // removed since the first write
        await rename(tmp, path);
      });
    } catch (err) {
      this.#made = undefined; // made again by the next write
      await rm(tmp, { force: true });
      throw new TsbuildError('STORE_IO', `cannot write step inputs ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The cache key the step `identity` had when it last ran or was a hit, or undefined. */
  async lastKey(identity: string): Promise<Digest | undefined> {
    const doc = await this.#readJson(join(this.#dir, `${identity}.json`));
    return doc !== undefined && isDigest(doc.key) ? doc.key : undefined;
  }

  /** The inputs document of `key`, or undefined. */
  async load(key: Digest): Promise<StepInputs | undefined> {
    const doc = await this.#readJson(join(this.#dir, 'inputs', `${digestHex(key)}.json`));
    if (!isStepInputs(doc, key)) return undefined;
    const { format: _format, ...inputs } = doc as StepInputs & { format?: string };
    return inputs;
  }

  /**
   * Records that the step `identity` now has `key`, when an inputs document of `key` exists (a hit
   * on a record made before, or imported, keeps the older pointer). Skips the write when it already
   * had it. Throws STORE_IO.
   */
  async noteKey(identity: string, key: Digest): Promise<void> {
    if ((await this.lastKey(identity)) === key) return;
    try {
      await access(join(this.#dir, 'inputs', `${digestHex(key)}.json`));
    } catch {
      return;
    }
    await this.#writeJson(join(this.#dir, `${identity}.json`), { format: FORMAT, key });
  }

  /** Writes the inputs document of a step that ran and points `identity` at it. Throws STORE_IO. */
  async save(identity: string, inputs: StepInputs): Promise<void> {
    await this.#writeJson(join(this.#dir, 'inputs', `${digestHex(inputs.key)}.json`), { format: FORMAT, ...inputs });
    await this.#writeJson(join(this.#dir, `${identity}.json`), { format: FORMAT, key: inputs.key });
  }
}
