import type { Digest, EventSink, ImageConfig, ImageManifest } from '../core/index.js';
import type { Sandbox } from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import type { Store } from '../store/index.js';
import type { CompressionTools } from '../layer/index.js';

/** One layer of a file system state: its diffID and the blob that holds it in the store. */
export interface LayerRef {
  readonly diffId: Digest;
  /** The stored blob (equal to `diffId` for the uncompressed layers a build writes). */
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
}

/** A file system state: the layer stack from the bottom up (empty for scratch). */
export interface FsState {
  readonly layers: readonly LayerRef[];
}

/** A base image resolved from the store (the CLI resolves them before planning). */
export interface ResolvedBase {
  /** The reference as the Dockerfile names it after ARG expansion. */
  readonly ref: string;
  readonly manifestDigest: Digest;
  readonly manifest: ImageManifest;
  readonly config: ImageConfig;
}

/** The effects the solver uses; the CLI wires concrete implementations (no singletons). */
export interface SolveDeps {
  readonly store: Store;
  readonly snapshotter: Snapshotter;
  readonly sandbox: Sandbox;
  /** Decompressors for base layers stored compressed (from the CLI's PATH). */
  readonly compressionTools: CompressionTools;
  readonly events: EventSink;
}

/** What one build asks for. */
export interface SolveOptions {
  /** The real path of the build context directory. */
  readonly contextDir: string;
  /** The Dockerfile's path when it is a file (its `<name>.dockerignore` applies), undefined for stdin. */
  readonly dockerfilePath: string | undefined;
  /** Base images by the reference the graph names them with. */
  readonly baseImages: ReadonlyMap<string, ResolvedBase>;
  /** Skip cache lookups (records are still written). */
  readonly noCache: boolean;
  /** Stage indexes whose steps skip cache lookups (`--no-cache-filter`). */
  readonly noCacheStages?: ReadonlySet<number>;
  /** `--network`: the network of RUN steps that do not name one (default: the host's). */
  readonly network: 'host' | 'none';
  /** Parallel steps (default: CPU count). */
  readonly concurrency: number;
  /** Clamp layer mtimes and set `created` (seconds since the epoch), when SOURCE_DATE_EPOCH is set. */
  readonly sourceDateEpoch: number | undefined;
  /** Cancels the build (Ctrl-C); the solver cleans up before rejecting. */
  readonly signal: AbortSignal;
  /** Milliseconds clock for events (injectable). */
  readonly now?: () => number;
}
