import { chmodSync, chownSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { TsbuildError, digestHex, type Digest } from '../core/index.js';
import { applyLayer } from '../layer/index.js';
import { BaseSnapshotter } from './base.js';
import { wrapIo, type SnapshotDirs, type SnapshotMeta } from './layout.js';
import { probeOverlayCached, type OverlayProbe } from './mounts.js';
import { applyLayerAsSubIds, canUnpackAsSubIds } from './unpack-userns.js';
import type { ActiveSnapshot, SnapshotDiff, SnapshotMount } from './snapshotter.js';
import { randomHex } from '../sys/index.js';

/** Options of {@link OverlaySnapshotter}. */
export interface OverlaySnapshotterOptions {
  /**
   * The mounts happen in a user namespace (rootless): whiteout markers use `user.overlay.*` and the
   * mount gets `userxattr`. Default: true unless running as uid 0.
   */
  readonly userxattr?: boolean;
}

function readLinkOrEmpty(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

/** Length of the short link names under `l/` (hex digits). */
const SHORT = 12;

/**
 * overlayfs snapshots: every layer is unpacked once, alone, into `overlay/<chain hex>/fs` with overlay
 * whiteouts (0/0 char devices, `<prefix>.overlay.opaque`), reachable through `overlay/l/<short>`. An
 * active snapshot is a fresh `upper/` + `work/` over the parent chain; its diff IS the upperdir.
 */
export class OverlaySnapshotter extends BaseSnapshotter {
  readonly kind = 'overlay' as const;
  /** An overlay layer is a directory of its own: its parent is not read while it unpacks. */
  readonly unpacksWithoutParent = true;
  protected readonly activeContent = 'upper';
  /** The overlay work dir (with `volatile`, the kernel leaves `work/incompat/volatile/dirty` in it). */
  protected readonly activeScratch = ['work'];
  /** Whether mounts run with `userxattr`. */
  readonly userxattr: boolean;
  private probed: Promise<OverlayProbe> | undefined;
  /** Whether layers are unpacked by a child in a user namespace over the caller's sub-ids (non-root only; probed once). */
  private subIdUnpack: Promise<boolean> | undefined;
  private readonly chainCache = new Map<string, SnapshotMeta>();

  constructor(dirs: SnapshotDirs, options: OverlaySnapshotterOptions = {}) {
    super(dirs, 'overlay');
    this.userxattr = options.userxattr ?? process.getuid?.() !== 0;
  }

  private get xattrPrefix(): 'trusted' | 'user' {
    return this.userxattr ? 'user' : 'trusted';
  }

  protected get mergePrefix(): 'trusted' | 'user' {
    return this.xattrPrefix;
  }

  protected async layerDirs(meta: SnapshotMeta): Promise<string[]> {
    const dirs = meta.kind === 'active' ? [join(this.layout.activeDir(meta.name), 'upper')] : [join(this.layout.committedDir(meta.name as Digest), 'fs')];
    for (let c = meta.parent; c !== undefined;) {
      dirs.push(join(this.layout.committedDir(c), 'fs'));
      c = (await this.chainMeta(c)).parent;
    }
    return dirs;
  }

  /** Probes (once per instance; a success is kept in `overlay/probe.json` until the next boot) whether overlay mounts work here and which options the kernel accepts. */
  probe(): Promise<OverlayProbe> {
    this.probed ??= this.init().then(() => probeOverlayCached(join(this.layout.base, 'probe.json'), this.layout.dirs.tmp, this.userxattr));
    return this.probed;
  }

  private async mountOptions(): Promise<readonly string[]> {
    const p = await this.probe();
    if (!p.ok) throw new TsbuildError('SNAPSHOT_OVERLAY_UNAVAILABLE', p.reason, { hint: 'use --snapshotter=naive' });
    return p.options;
  }

  protected async fillCommitted(fs: string, _parent: Digest | undefined, tar: Readable, signal: AbortSignal | undefined): Promise<void> {
    const options = { whiteouts: 'overlay', overlayXattrPrefix: this.xattrPrefix } as const;
    // A non-root user outside a user namespace cannot chown: the unpack runs as root of one over its sub-ids.
    if (process.getuid?.() !== 0 && (await (this.subIdUnpack ??= canUnpackAsSubIds()))) {
      await applyLayerAsSubIds(tar, fs, options, signal);
      return;
    }
    await applyLayer(tar, fs, { ...options, ...(signal === undefined ? {} : { signal }) });
  }

  protected async fillActive(dir: string, parent: Digest | undefined): Promise<void> {
    await this.mountOptions();
    const upper = join(dir, 'upper');
    try {
      mkdirSync(upper, { mode: 0o755 });
      mkdirSync(join(dir, 'work'), { mode: 0o700 });
      chmodSync(upper, 0o755);
      if (parent !== undefined) {
        // The merged root takes the upperdir's owner and mode: copy them from the nearest lower.
        const st = lstatSync(join(this.layout.committedDir(parent), 'fs'));
        if (process.getuid?.() === 0) chownSync(upper, st.uid, st.gid);
        chmodSync(upper, st.mode & 0o7777);
      }
    } catch (err) {
      throw wrapIo(err, `cannot create the upper and work dirs in ${dir}`);
    }
  }

  protected async beforePublish(_tmp: string, chainId: Digest): Promise<Partial<SnapshotMeta>> {
    const target = `../${digestHex(chainId)}/fs`;
    // Created before the directory is renamed into place, so a published snapshot always has its link.
    let name = digestHex(chainId).slice(0, SHORT);
    for (let attempt = 0; ; attempt++) {
      try {
        symlinkSync(target, join(this.layout.links, name));
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw wrapIo(err, `cannot create link ${name}`);
        if (readLinkOrEmpty(join(this.layout.links, name)) === target) break;
        if (attempt > 8) throw new TsbuildError('SNAPSHOT_IO', `cannot find a free short link name for ${chainId}`);
        name = randomHex(SHORT / 2);
      }
    }
    return { link: name, xattr: this.xattrPrefix };
  }

  protected override async afterRemove(meta: SnapshotMeta | undefined): Promise<void> {
    if (meta?.link !== undefined) {
      try {
        unlinkSync(join(this.layout.links, meta.link));
      } catch {
        // already gone
      }
    }
    if (meta !== undefined) this.chainCache.delete(meta.name);
  }

  protected override parentMeta(chainId: Digest): Promise<SnapshotMeta> {
    return this.chainMeta(chainId);
  }

  protected override rememberCommitted(meta: SnapshotMeta): void {
    // Only what chainMeta would accept: a snapshot of the other whiteout kind is still refused there.
    if (meta.kind === 'committed' && (meta.xattr === undefined || meta.xattr === this.xattrPrefix)) this.chainCache.set(meta.name, meta);
  }

  /** The committed metadata of `chainId` (cached: committed snapshots never change). */
  private async chainMeta(chainId: Digest): Promise<SnapshotMeta> {
    const hit = this.chainCache.get(chainId);
    if (hit !== undefined) return hit;
    const meta = await this.requireCommitted(chainId);
    if (meta.xattr !== undefined && meta.xattr !== this.xattrPrefix) {
      throw new TsbuildError('SNAPSHOT_INCOMPATIBLE', `snapshot ${chainId} was made with ${meta.xattr}.overlay whiteouts, this snapshotter mounts with ${this.xattrPrefix}.overlay`, {
        hint: 'use a separate store root for rootless and root builds',
      });
    }
    this.chainCache.set(chainId, meta);
    return meta;
  }

  protected async makeActive(meta: SnapshotMeta): Promise<ActiveSnapshot> {
    const options = await this.mountOptions();
    const links: string[] = [];
    for (let c = meta.parent; c !== undefined;) {
      const m = await this.chainMeta(c);
      if (m.link === undefined) throw new TsbuildError('SNAPSHOT_CORRUPT', `snapshot ${c} has no short link`);
      links.push(m.link);
      c = m.parent;
    }
    const dir = this.layout.activeDir(meta.name);
    const base = this.layout.base;
    const mount: SnapshotMount = links.length === 0
      ? { type: 'bind', source: join(dir, 'upper') }
      : {
        type: 'overlay',
        lowerdirs: links.map((l) => join(this.layout.links, l)),
        relativeLowerdirs: links.map((l) => `l/${l}`),
        upperdir: join(dir, 'upper'),
        workdir: join(dir, 'work'),
        options,
        baseDir: base,
      };
    return { key: meta.name, parent: meta.parent, mounts: () => mount };
  }

  async diff(key: string): Promise<SnapshotDiff> {
    await this.init();
    await this.requireActive(key);
    return { dir: join(this.layout.activeDir(key), 'upper'), mode: 'changeset', release: async () => undefined };
  }
}
