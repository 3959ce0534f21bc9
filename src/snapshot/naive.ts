import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Digest } from '../core/index.js';
import { applyLayer } from '../layer/index.js';
import { BaseSnapshotter } from './base.js';
import { copyTree } from './copy-tree.js';
import { removeTree, wrapIo, type SnapshotDirs, type SnapshotMeta } from './layout.js';
import { writeChangeSet, writeTreeRecord } from './naive-diff.js';
import type { ActiveSnapshot, SnapshotDiff } from './snapshotter.js';

/** Options of {@link NaiveSnapshotter}. */
export interface NaiveSnapshotterOptions {
  /** Restore owners and device nodes when copying (default: running as uid 0). */
  readonly privileged?: boolean;
  /**
   * Diffs mark opaque directories with `user.overlay.opaque` (a user namespace, where `trusted.*` cannot be
   * written). Default: not running as uid 0.
   */
  readonly userxattr?: boolean;
}

/**
 * The copy fallback where overlay cannot be mounted: every committed snapshot is a whole tree
 * (`naive/<chain hex>/fs`, the parent copied then the layer applied), an active snapshot is a copy
 * of its parent plus a record of inodes and ctimes, and its diff is computed by walking the copy.
 */
export class NaiveSnapshotter extends BaseSnapshotter {
  readonly kind = 'naive' as const;
  /** A naive layer starts as a copy of its parent. */
  readonly unpacksWithoutParent = false;
  protected readonly activeContent = 'fs';
  /** The inode record, and the change set of diff() when the step commits before releasing it (the solver's order). */
  protected readonly activeScratch = ['record', 'diff'];
  private readonly privileged: boolean;
  private readonly userxattr: boolean;

  constructor(dirs: SnapshotDirs, options: NaiveSnapshotterOptions = {}) {
    super(dirs, 'naive');
    this.privileged = options.privileged ?? process.getuid?.() === 0;
    this.userxattr = options.userxattr ?? process.getuid?.() !== 0;
  }

  private async fillTree(fs: string, parent: Digest | undefined): Promise<void> {
    if (parent !== undefined) {
      copyTree(join(this.layout.committedDir(parent), 'fs'), fs, { privileged: this.privileged });
      return;
    }
    try {
      await mkdir(fs, { mode: 0o755 });
      await chmod(fs, 0o755);
    } catch (err) {
      throw wrapIo(err, `cannot create ${fs}`);
    }
  }

  protected async fillCommitted(fs: string, parent: Digest | undefined, tar: Readable, signal: AbortSignal | undefined): Promise<void> {
    await this.fillTree(fs, parent);
    await applyLayer(tar, fs, { whiteouts: 'delete', privileged: this.privileged, ...(signal === undefined ? {} : { signal }) });
  }

  protected async fillActive(dir: string, parent: Digest | undefined): Promise<void> {
    await this.fillTree(join(dir, 'fs'), parent);
    await writeTreeRecord(join(dir, 'fs'), join(dir, 'record'));
  }

  protected readonly mergePrefix = 'trusted' as const;

  protected async layerDirs(meta: SnapshotMeta): Promise<string[]> {
    return [join(meta.kind === 'active' ? this.layout.activeDir(meta.name) : this.layout.committedDir(meta.name as Digest), 'fs')];
  }

  protected async beforePublish(): Promise<Partial<SnapshotMeta>> {
    return {};
  }

  protected async makeActive(meta: SnapshotMeta): Promise<ActiveSnapshot> {
    const source = join(this.layout.activeDir(meta.name), 'fs');
    return { key: meta.name, parent: meta.parent, mounts: () => ({ type: 'bind', source }) };
  }

  async diff(key: string): Promise<SnapshotDiff> {
    await this.init();
    await this.requireActive(key);
    const dir = this.layout.activeDir(key);
    const out = join(dir, 'diff');
    await removeTree(out);
    writeChangeSet(join(dir, 'fs'), join(dir, 'record'), out, {
      privileged: this.privileged,
      xattrPrefix: this.userxattr ? 'user' : 'trusted',
    });
    return { dir: out, mode: 'changeset', release: () => removeTree(out) };
  }
}
