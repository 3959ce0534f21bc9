import type { Digest, ImageConfig, SourceLocation } from '../core/index.js';

/**
 * The build graph: pure, JSON-serialisable data produced by `planBuild()` and interpreted by the
 * solver. Every field is deterministic (same Dockerfile + options => byte-identical JSON).
 */

/** Where a COPY/ADD or a RUN mount reads from. */
export type SourceRef =
  | { readonly kind: 'context' }
  /** The final state of another stage (`vertex` is that stage's last vertex). */
  | { readonly kind: 'stage'; readonly stage: number; readonly vertex: string }
  /** An image used only as a file source (`vertex` is its image source vertex). */
  | { readonly kind: 'image'; readonly ref: string; readonly vertex: string };

/** Root of a stage (or of an image used as a file source). */
export type SourceOp =
  | { readonly type: 'source'; readonly source: 'scratch' }
  /** `ref` exactly as written after ARG expansion (the CLI/solver normalises and resolves it). */
  | { readonly type: 'source'; readonly source: 'image'; readonly ref: string; readonly platform: string }
  /** `FROM <earlier stage>`: continues from that stage's final state (its last vertex is the input). */
  | { readonly type: 'source'; readonly source: 'stage'; readonly stage: number };

/**
 * The key of an image source in the base-image maps (PlanOptions.baseImages, the solver's): one
 * reference can be needed for two platforms (`FROM --platform=$BUILDPLATFORM x` and `FROM x`).
 */
export function baseImageKey(ref: string, platform: string): string {
  return `${ref} ${platform}`;
}

/** A RUN mount, resolved (variables expanded, relative targets made absolute, defaults filled). */
export type ExecMount =
  | { readonly type: 'bind'; readonly target: string; readonly source: string; readonly from: SourceRef; readonly readwrite: boolean }
  | {
      readonly type: 'cache';
      readonly target: string;
      readonly id: string;
      readonly source?: string;
      readonly from?: SourceRef;
      readonly readonly: boolean;
      readonly sharing: 'shared' | 'private' | 'locked';
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
    }
  | { readonly type: 'tmpfs'; readonly target: string; readonly size?: number }
  | {
      readonly type: 'secret';
      readonly id: string;
      /** Absent when the secret is only exposed as an environment variable (`env=`). */
      readonly target?: string;
      readonly env?: string;
      readonly required: boolean;
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
    }
  | {
      readonly type: 'ssh';
      readonly id: string;
      readonly target: string;
      readonly required: boolean;
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
    };

/** A here-document handed to the solver (body already expanded where the builder expands it). */
export interface GraphHeredoc {
  readonly name: string;
  readonly content: string;
  /** For `RUN <<EOF` alone: the body is written to `/dev/pipes/<name>` (mode 0755, read-only mount) and run. */
  readonly executable?: boolean;
}

/** RUN. */
export interface ExecOp {
  readonly type: 'exec';
  /** argv: shell form is already resolved against SHELL (`[...shell, command]`). */
  readonly args: readonly string[];
  /** `KEY=VALUE`: image ENV then the build ARGs in scope (ENV wins). Part of the cache key. */
  readonly env: readonly string[];
  /** Undeclared predefined proxy ARGs (`HTTP_PROXY=...`): set for the process, kept out of history and the cache key. */
  readonly proxyEnv: readonly string[];
  /** `user[:group]`; empty means the image default (root). */
  readonly user: string;
  /** Absolute working directory. */
  readonly cwd: string;
  readonly mounts: readonly ExecMount[];
  readonly network: 'default' | 'none' | 'host';
  readonly security: 'sandbox' | 'insecure';
  /** Only for `RUN <<EOF` alone (the executable body); heredocs inside a longer command are part of the script in `args`. */
  readonly heredocs: readonly GraphHeredoc[];
}

/** COPY / ADD. */
export interface CopyOp {
  readonly type: 'copy';
  readonly instruction: 'COPY' | 'ADD';
  readonly from: SourceRef;
  /** Source paths/URLs/heredoc names, expanded (relative to the source root). */
  readonly sources: readonly string[];
  /** Absolute destination (resolved against WORKDIR); a trailing `/` means "into this directory". */
  readonly dest: string;
  readonly chown?: string;
  readonly chmod?: string;
  readonly link: boolean;
  readonly parents: boolean;
  readonly exclude: readonly string[];
  readonly checksum?: string;
  readonly keepGitDir: boolean;
  /** Heredoc sources (`COPY <<EOF /dest`): written as files named after the heredoc. */
  readonly heredocs: readonly GraphHeredoc[];
}

/** One image-config change (values expanded). */
export type ConfigEdit =
  | { readonly kind: 'env'; readonly pairs: readonly (readonly [string, string])[] }
  | { readonly kind: 'label'; readonly pairs: readonly (readonly [string, string])[] }
  | { readonly kind: 'cmd'; readonly cmd: readonly string[] }
  | { readonly kind: 'entrypoint'; readonly entrypoint: readonly string[] }
  | { readonly kind: 'expose'; readonly ports: readonly string[] }
  | { readonly kind: 'volume'; readonly paths: readonly string[] }
  | { readonly kind: 'user'; readonly user: string }
  /** `mkdir`: the solver creates the directory (a layer) unless it is `/`, owned by `user` (the USER in effect; empty = root), as BuildKit. */
  | { readonly kind: 'workdir'; readonly path: string; readonly mkdir: boolean; readonly user: string }
  | { readonly kind: 'stopsignal'; readonly signal: string }
  | { readonly kind: 'healthcheck'; readonly test: readonly string[]; readonly interval?: number; readonly timeout?: number; readonly startPeriod?: number; readonly startInterval?: number; readonly retries?: number }
  | { readonly kind: 'shell'; readonly shell: readonly string[] }
  | { readonly kind: 'onbuild'; readonly trigger: string }
  | { readonly kind: 'maintainer'; readonly author: string };

/** Metadata instructions: image config edits only (WORKDIR also makes its directory). */
export interface MetaOp {
  readonly type: 'meta';
  readonly edit: ConfigEdit;
}

/** What a vertex does, discriminated on `type`. */
export type Op = SourceOp | ExecOp | CopyOp | MetaOp;

/** One step of the build. */
export interface Vertex {
  /** Stable id: `s<stage>.<step>` (step 0 is FROM) or `image.<n>` for file-source images. */
  readonly id: string;
  /** Stage index, or null for an image used only as a file source. */
  readonly stage: number | null;
  /** Display name like BuildKit's: `[build 2/5] RUN make`. */
  readonly name: string;
  /** 1-based source location (an ONBUILD trigger carries its FROM's location). */
  readonly loc?: SourceLocation;
  /** True for a step spliced in from a base image's ONBUILD triggers. */
  readonly onbuild?: boolean;
  /** Vertex ids this one depends on: the previous step first (when any), then --from/mount sources. */
  readonly inputs: readonly string[];
  readonly op: Op;
  /** Plan-time cache key (see cache-key.ts for how the solver folds in content digests). */
  readonly cacheKey: Digest;
}

/** Base of a stage. */
export type StageBase =
  | { readonly type: 'scratch' }
  | { readonly type: 'image'; readonly ref: string }
  | { readonly type: 'stage'; readonly stage: number };

/** A stage kept in the graph (stages the target does not need are pruned). */
export interface GraphStage {
  readonly index: number;
  /** Lower-cased `AS` name, when given. */
  readonly name?: string;
  readonly base: StageBase;
  /** `os/arch[/variant]` the stage runs on. */
  readonly platform: string;
  /** Vertex ids of the stage in order (FROM first). */
  readonly vertices: readonly string[];
}

/** The planned build. */
export interface BuildGraph {
  readonly version: 1;
  /** Index of the target stage (the last stage unless `--target`). */
  readonly target: number;
  readonly buildPlatform: string;
  readonly targetPlatform: string;
  readonly stages: readonly GraphStage[];
  /** Topologically ordered (every input precedes its consumer). */
  readonly vertices: readonly Vertex[];
  /** Id of the target stage's last vertex: the image to export. */
  readonly output: string;
  /**
   * Final image config of the target. `rootfs.diff_ids` lists only the base image's layers; the
   * solver appends one diffID per history entry whose `empty_layer` is not true. `created` is set by the solver.
   */
  readonly image: ImageConfig;
}
