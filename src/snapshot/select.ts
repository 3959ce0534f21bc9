import { TsbuildError } from '../core/index.js';
import type { SnapshotDirs } from './layout.js';
import { NaiveSnapshotter } from './naive.js';
import { OverlaySnapshotter } from './overlay.js';
import type { Snapshotter } from './snapshotter.js';

/** What `--snapshotter` asks for. */
export type SnapshotterChoice = 'auto' | 'overlay' | 'naive';

/** Options of {@link openSnapshotter}. */
export interface OpenSnapshotterOptions {
  /** Default `auto`: overlay when a probe mount works, else naive. */
  readonly choice?: SnapshotterChoice;
  /** Mounts happen in a user namespace (rootless, also as root of a non-initial one); default: not running as uid 0. */
  readonly userxattr?: boolean;
}

/** The chosen snapshotter and, when `auto` fell back to naive, why. */
export interface OpenedSnapshotter {
  readonly snapshotter: Snapshotter;
  readonly fallbackReason: string | undefined;
}

/**
 * Opens the snapshotter for a store (`dirs` = its `snapshots/` and `tmp/`). `overlay` and `auto`
 * run one real probe mount (in a throw-away mount namespace); `overlay` throws
 * SNAPSHOT_OVERLAY_UNAVAILABLE when it fails, `auto` falls back to the naive copy snapshotter.
 */
export async function openSnapshotter(dirs: SnapshotDirs, options: OpenSnapshotterOptions = {}): Promise<OpenedSnapshotter> {
  const choice = options.choice ?? 'auto';
  const userxattr = options.userxattr === undefined ? {} : { userxattr: options.userxattr };
  if (choice === 'naive') return { snapshotter: new NaiveSnapshotter(dirs, userxattr), fallbackReason: undefined };
  const overlay = new OverlaySnapshotter(dirs, userxattr);
  const probe = await overlay.probe();
  if (probe.ok) return { snapshotter: overlay, fallbackReason: undefined };
  if (choice === 'overlay') throw new TsbuildError('SNAPSHOT_OVERLAY_UNAVAILABLE', probe.reason, { hint: 'use --snapshotter=naive' });
  return { snapshotter: new NaiveSnapshotter(dirs, userxattr), fallbackReason: probe.reason };
}
