import type { Readable } from 'node:stream';
import { TsbuildError, sha256Of, type Digest } from '../core/index.js';

/** The two snapshotter implementations. */
export type SnapshotterKind = 'overlay' | 'naive';

/** An overlay mount: lowers nearest (top-most) first, a fresh upper and work dir. */
export interface OverlayMount {
  readonly type: 'overlay';
  /** Absolute lower directories through the short links, nearest first (the `lowerdir=` order). */
  readonly lowerdirs: readonly string[];
  readonly upperdir: string;
  readonly workdir: string;
  /** Extra mount options the kernel accepted in the probe (`redirect_dir=off`, `metacopy=off`, `index=off`, `userxattr`). */
  readonly options: readonly string[];
  /** The directory `relativeLowerdirs` are relative to: chdir there before mount(2) to fit 100+ layers in one page. */
  readonly baseDir: string;
  /** The same lowers as `l/<short id>`, relative to `baseDir`. */
  readonly relativeLowerdirs: readonly string[];
}

/** A plain directory used as the root (naive snapshots, and overlay snapshots without a parent). */
export interface BindMount {
  readonly type: 'bind';
  readonly source: string;
}

/** How to mount an active snapshot as a root file system (the sandbox's RootSpec path or overlay). */
export type SnapshotMount = OverlayMount | BindMount;

/** A snapshot on disk: committed (immutable, usable as a parent, named by chain ID) or active (writable, named by key). */
export interface SnapshotInfo {
  readonly kind: 'committed' | 'active';
  /** The chain ID (committed) or the caller's key (active). */
  readonly name: string;
  readonly parent: Digest | undefined;
  /** The diffID of the layer this committed snapshot adds to its parent. */
  readonly diffId: Digest | undefined;
  /** ISO 8601 creation time. */
  readonly created: string;
  /** The process that prepared an active snapshot. */
  readonly pid: number | undefined;
}

/** A prepared, writable snapshot. */
export interface ActiveSnapshot {
  readonly key: string;
  readonly parent: Digest | undefined;
  /** The mount description of this snapshot (no I/O; the sandbox or {@link mountSnapshot} mounts it). */
  mounts(): SnapshotMount;
}

/** The change set of an active snapshot, ready for `packLayer(dir, { mode })`. */
export interface SnapshotDiff {
  readonly dir: string;
  readonly mode: 'changeset';
  /** Removes what {@link Snapshotter.diff} computed (nothing for overlay, whose diff is the upperdir); idempotent. */
  release(): Promise<void>;
}

/** Options of {@link Snapshotter.unpack}. */
export interface UnpackOptions {
  /** Aborts the extraction (SNAPSHOT_ABORTED); nothing becomes visible. */
  readonly signal?: AbortSignal;
  /** Verify that the tar's sha256 equals `diffId` before publishing (default true). */
  readonly verify?: boolean;
  /**
   * Settles once the parent is made (e.g. by the unpack of the layer below, running meanwhile): the
   * parent need not be committed yet when `unpack` is called; the layer is unpacked into its staging
   * directory at once (naive, whose layers copy their parent, waits first) and published only after
   * this settled and the parent is committed.
   */
  readonly parentReady?: Promise<unknown>;
}

/**
 * Snapshots of root file systems under `<store>/snapshots/<kind>/`. Committed snapshots are named
 * by their OCI chain ID and are immutable; active snapshots are named by a caller key
 * (`[A-Za-z0-9][A-Za-z0-9._-]{0,127}`), carry the pid of their creator and are writable.
 * Every publication is a rename() from `<store>/tmp/snap-<pid>-*`: a crash leaves garbage only in tmp/.
 * Errors are TsbuildErrors with `SNAPSHOT_*` codes (or the `LAYER_*` code of a bad tar).
 */
/** Options of {@link Snapshotter.prepare}. */
export interface PrepareOptions {
  /** Record no owner process: `removeStale` never removes the snapshot (default false). */
  readonly persistent?: boolean;
}

export interface Snapshotter {
  readonly kind: SnapshotterKind;
  /**
   * Whether a layer is unpacked without reading its parent (overlay: a directory of its own), so
   * that `unpack` with `parentReady` fills it while the parent is still being made; else (naive: a
   * copy of the parent first) it waits for the parent before reading the tar.
   */
  readonly unpacksWithoutParent: boolean;
  /**
   * Makes the committed snapshot `chainIdOf(parent, diffId)` from an uncompressed layer tar, unless it
   * exists already (then `openTar` is not called). Idempotent, atomic, safe against concurrent
   * unpacks of the same layer (one wins, the others discard their copy). The parent must be committed.
   * `openTar` is called at most once; the stream is consumed or destroyed.
   */
  unpack(parent: Digest | undefined, diffId: Digest, openTar: () => Readable | Promise<Readable>, options?: UnpackOptions): Promise<SnapshotInfo>;
  /**
   * Creates the active snapshot `key` on top of the committed `parent` (or empty). It records this
   * process as its owner, so `removeStale` removes it once the process is gone, unless
   * `options.persistent` is set (a container's writable layer: its container removes it).
   * Throws SNAPSHOT_EXISTS, SNAPSHOT_NOT_FOUND.
   */
  prepare(key: string, parent?: Digest, options?: PrepareOptions): Promise<ActiveSnapshot>;
  /** Reopens an existing active snapshot (e.g. in another process). Throws SNAPSHOT_NOT_FOUND. */
  open(key: string): Promise<ActiveSnapshot>;
  /**
   * The change set of the active snapshot `key` for `packLayer(dir, { mode: 'changeset' })`: overlay returns
   * the upperdir itself, naive computes a directory with overlay-style whiteouts. The snapshot must not be
   * mounted or written meanwhile.
   */
  diff(key: string): Promise<SnapshotDiff>;
  /**
   * Turns the active snapshot `key` into the committed snapshot `chainIdOf(parent, diffId)` (the diffID of
   * its packed diff) and removes the active one. If that chain ID exists already, the existing one is kept.
   * What the active snapshot held besides its content (overlay: the work dir) is removed in the background.
   */
  commit(key: string, diffId: Digest): Promise<SnapshotInfo>;
  /** Settles once the background removals started by `commit` have ended (never rejects): call it before the store is left. */
  settle(): Promise<void>;
  /**
   * The host path of the entry the snapshot `name` (chain ID or key) shows at the absolute `path`, found
   * without mounting (whiteouts, opaque dirs and intermediate symlinks resolved inside the snapshot; a
   * final symlink is returned itself), or undefined. For reading only (e.g. /etc/passwd for `--chown`):
   * the path may lie in a committed layer shared by other snapshots.
   */
  lookup(name: string, path: string): Promise<string | undefined>;
  /** Removes an active snapshot (by key) or a committed one (by chain ID); SNAPSHOT_IN_USE when a snapshot has it as parent. Absent: no-op. */
  remove(name: string): Promise<void>;
  /** The snapshot named `name` (chain ID or key), or undefined. */
  stat(name: string): Promise<SnapshotInfo | undefined>;
  /** Every committed and active snapshot of this kind. */
  list(): Promise<SnapshotInfo[]>;
  /** Removes active snapshots whose creator process is gone (same host); returns their keys. */
  removeStale(): Promise<string[]>;
}

/** The OCI chain ID: the diffID for a base layer, else sha256(parentChainID + " " + diffID). */
export function chainIdOf(parent: Digest | undefined, diffId: Digest): Digest {
  return parent === undefined ? diffId : sha256Of(`${parent} ${diffId}`);
}

/** The chain ID of a whole stack of diffIDs (bottom first); undefined for an empty stack. */
export function chainIdOfStack(diffIds: readonly Digest[]): Digest | undefined {
  let chain: Digest | undefined;
  for (const d of diffIds) chain = chainIdOf(chain, d);
  return chain;
}

const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Throws SNAPSHOT_BAD_KEY unless `key` is a valid active snapshot key. */
export function checkSnapshotKey(key: string): void {
  if (!KEY_RE.test(key)) {
    throw new TsbuildError('SNAPSHOT_BAD_KEY', `invalid snapshot key ${JSON.stringify(key.slice(0, 80))}`, {
      hint: 'a key is 1-128 characters of A-Z a-z 0-9 . _ - and starts with a letter or digit',
    });
  }
}
