import type { Digest, EventSink, ImageConfig, ImageManifest } from '../core/index.js';
import type { Sandbox } from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import type { Store } from '../store/index.js';
import type { CompressionTools } from '../layer/index.js';
import type { HostTools } from './ops/add-tools.js';

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
  /** git, bzip2 and xz for ADD (from the CLI's PATH); absent ones fail only the ADD that needs them. */
  readonly hostTools?: HostTools;
  readonly events: EventSink;
}

/**
 * {@link SolveDeps} whose step effects are opened only when the first step runs (their modules
 * load then): a fully cached build never opens a snapshotter or sandbox.
 */
export interface LazySolveDeps extends Omit<SolveDeps, 'snapshotter' | 'sandbox' | 'compressionTools'> {
  readonly openStepDeps: () => Promise<Pick<SolveDeps, 'snapshotter' | 'sandbox' | 'compressionTools'>>;
}

/**
 * Cache records imported from elsewhere (`--cache-from`), consulted after the local cache. A hit
 * gives a layer whose blob may not be in the store yet: the solver calls {@link ensure} for the
 * layers it really needs (inputs of a step that runs, the output), so unneeded layers are never
 * pulled. Implemented in cache-import.ts.
 */
export interface CacheImport {
  /** The layer the imported cache has for `key`, or undefined. */
  lookup(key: Digest): LayerRef | undefined;
  /** Makes the blobs of `layers` present in the store (pulling imported ones); others are left alone. */
  ensure(layers: readonly LayerRef[], signal: AbortSignal): Promise<void>;
  /** Fills the directories of these cache mount ids from the imported cache where they do not exist yet. */
  ensureMounts?(ids: readonly string[], signal: AbortSignal): Promise<void>;
}

/** What one build asks for. */
/** BuildKit's entitlements (`network.host` is always granted, as with dockerd's builder). */
export type Entitlement = 'network.host' | 'security.insecure';

export interface SolveOptions {
  /** The real path of the build context directory. */
  readonly contextDir: string;
  /** The Dockerfile's path when it is a file (its `<name>.dockerignore` applies), undefined for stdin. */
  readonly dockerfilePath: string | undefined;
  /** Base images by baseImageKey(ref, platform) of the graph's image sources. */
  readonly baseImages: ReadonlyMap<string, ResolvedBase>;
  /** Skip cache lookups (records are still written). */
  readonly noCache: boolean;
  /** Stage indexes whose steps skip cache lookups (`--no-cache-filter`). */
  readonly noCacheStages?: ReadonlySet<number>;
  /** `--network`: the network of RUN steps that do not name one (default: the host's). */
  readonly network: 'host' | 'none';
  /** BuildKit entitlements granted with `--allow` (`security.insecure` lets `RUN --security=insecure` run privileged). */
  readonly entitlements?: readonly Entitlement[];
  /** Parallel steps (default: CPU count). */
  readonly concurrency: number;
  /** Clamp layer mtimes and set `created` (seconds since the epoch), when SOURCE_DATE_EPOCH is set. */
  readonly sourceDateEpoch: number | undefined;
  /** Cancels the build (Ctrl-C); the solver cleans up before rejecting. */
  readonly signal: AbortSignal;
  /** Imported cache (`--cache-from`), looked up on a local miss unless the cache is disabled. */
  readonly cacheImport?: CacheImport;
  /** `--secret` contents by id: mounted or set only for the RUN steps that ask, never in a layer, key or event. */
  readonly secrets?: ReadonlyMap<string, Uint8Array>;
  /** `--ssh` agent sockets by id (forwarded through a proxy socket to the RUN steps that mount them). */
  readonly sshAgents?: ReadonlyMap<string, string>;
  /**
   * Solve every vertex of the graph (for `--cache-to mode=max`, which exports every step), not
   * only those the output needs: each step is then a cache hit or runs (hits still need no content).
   */
  readonly solveAll?: boolean;
  /** Milliseconds clock for events (injectable). */
  readonly now?: () => number;
}
