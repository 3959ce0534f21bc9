import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { TsbuildError, isDigest, type Digest } from '../core/index.js';
import { StreamHasher } from '../layer/index.js';
import { acquireLock } from '../store/index.js';
import { lookupMerged } from './merged-view.js';
import { SnapshotLayout, isExistsError, isStale, newActiveMeta, removeTree, toInfo, wrapIo, type SnapshotDirs, type SnapshotMeta } from './layout.js';
import {
  chainIdOf, checkSnapshotKey,
  type ActiveSnapshot, type PrepareOptions, type SnapshotDiff, type SnapshotInfo, type Snapshotter, type SnapshotterKind, type UnpackOptions,
} from './snapshotter.js';

/** Tar bytes an unpack hashes inline (holding them) before its diffID moves to a worker thread. */
const UNPACK_HASH_WORKER_AFTER = 2 * 1024 * 1024;

/** Renames `from` to `to`; a missing `from` is not an error. */
function moveAside(from: string, to: string, what: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw wrapIo(err, what);
  }
}

/**
 * The parts both snapshotters share: naming, metadata, atomic publication through tmp/ + rename,
 * parent checks, listing and stale cleanup. Subclasses say how a layer is materialised, what an
 * active snapshot holds and how its diff is found.
 */
export abstract class BaseSnapshotter implements Snapshotter {
  abstract readonly kind: SnapshotterKind;
  abstract readonly unpacksWithoutParent: boolean;
  protected readonly layout: SnapshotLayout;
  private ready: Promise<void> | undefined;

  constructor(dirs: SnapshotDirs, kind: SnapshotterKind) {
    this.layout = new SnapshotLayout(dirs, kind);
  }

  /** Unpacks the layer `tar` into `fs` (fresh, inside tmp) on top of `parent` as this kind stores committed snapshots. */
  protected abstract fillCommitted(fs: string, parent: Digest | undefined, tar: Readable, signal: AbortSignal | undefined): Promise<void>;
  /** Fills a fresh active snapshot directory (inside tmp) for `parent`. */
  protected abstract fillActive(dir: string, parent: Digest | undefined): Promise<void>;
  /** The subdirectory of an active snapshot that becomes the committed `fs`. */
  protected abstract readonly activeContent: string;
  /** Entries of an active snapshot directory besides its content and meta.json, removed when it is committed. */
  protected abstract readonly activeScratch: readonly string[];
  /** Called with the tmp dir of a committed snapshot right before it is renamed into place. */
  protected abstract beforePublish(tmp: string, chainId: Digest): Promise<Partial<SnapshotMeta>>;
  /** Builds the handle of an active snapshot. */
  protected abstract makeActive(meta: SnapshotMeta): Promise<ActiveSnapshot>;
  abstract diff(key: string): Promise<SnapshotDiff>;
  /** The directories whose overlay is the snapshot's file system, nearest first. */
  protected abstract layerDirs(meta: SnapshotMeta): Promise<string[]>;
  /** The xattr namespace of opaque-directory markers in this kind's layers. */
  protected abstract readonly mergePrefix: 'trusted' | 'user';

  /** Creates the directories once per instance. */
  protected init(): Promise<void> {
    this.ready ??= this.layout.init();
    return this.ready;
  }

  /** The metadata of a committed snapshot or throws SNAPSHOT_NOT_FOUND. */
  protected async requireCommitted(chainId: Digest): Promise<SnapshotMeta> {
    const meta = await this.layout.readMeta(this.layout.committedDir(chainId));
    if (meta === undefined) throw new TsbuildError('SNAPSHOT_NOT_FOUND', `no committed ${this.kind} snapshot ${chainId}`);
    return meta;
  }

  /**
   * The metadata of the committed `chainId` an active snapshot is prepared on, or throws SNAPSHOT_NOT_FOUND
   * (overlay: from its cache of the chain, which a `run` also walks to mount it and to look up its user).
   */
  protected parentMeta(chainId: Digest): Promise<SnapshotMeta> {
    return this.requireCommitted(chainId);
  }

  /** Notes the metadata of a committed snapshot just read (overlay: its chain cache, so the same run reads it once). */
  protected rememberCommitted(_meta: SnapshotMeta): void {
    // nothing by default
  }

  /** The metadata of an active snapshot or throws SNAPSHOT_NOT_FOUND. */
  protected async requireActive(key: string): Promise<SnapshotMeta> {
    checkSnapshotKey(key);
    const meta = await this.layout.readMeta(this.layout.activeDir(key));
    if (meta === undefined) throw new TsbuildError('SNAPSHOT_NOT_FOUND', `no active ${this.kind} snapshot "${key}"`);
    return meta;
  }

  async unpack(parent: Digest | undefined, diffId: Digest, openTar: () => Readable | Promise<Readable>, options: UnpackOptions = {}): Promise<SnapshotInfo> {
    await this.init();
    const chainId = chainIdOf(parent, diffId);
    const existing = await this.layout.readMeta(this.layout.committedDir(chainId));
    if (existing !== undefined) {
      this.rememberCommitted(existing);
      return toInfo(existing);
    }
    const waitParent = async (): Promise<void> => {
      if (parent === undefined) return;
      await options.parentReady;
      await this.requireCommitted(parent);
    };
    if (options.parentReady === undefined) await waitParent();
    // The lock only saves duplicate work; consistency comes from the final rename.
    const lock = await acquireLock(join(this.layout.locks, `${chainId.slice(7)}.lock`), options.signal === undefined ? {} : { signal: options.signal });
    try {
      const again = await this.layout.readMeta(this.layout.committedDir(chainId));
      if (again !== undefined) return toInfo(again);
      const tmp = await this.layout.makeTmp();
      let disposeHasher: (() => void) | undefined;
      try {
        if (!this.unpacksWithoutParent) await waitParent();
        const src = await openTar();
        // The diffID: past 2 MiB it is hashed on a worker thread, off the thread that inflates and
        // parses the tar (and, in a pull, downloads). Until then the tar's chunks are held: with the
        // default 16 MiB, a pull of three big layers held ~27 MB more at its peak (max RSS 224 -> 197 MB).
        // Destroying `hashing` ends the loop, which destroys `src`.
        const hasher = new StreamHasher({ workerAfter: UNPACK_HASH_WORKER_AFTER });
        disposeHasher = () => hasher.dispose();
        src.on('error', () => undefined); // the loop below sees it; an error after the loop ended is no crash
        const hashing = Readable.from((async function* () {
          try {
            for await (const chunk of src) {
              await hasher.update(chunk as Buffer);
              yield chunk as Buffer;
            }
          } finally {
            src.destroy();
          }
        })(), { objectMode: false });
        await this.fillCommitted(join(tmp, 'fs'), parent, hashing, options.signal);
        const actual = await hasher.digest();
        if (options.verify !== false && actual !== diffId) {
          throw new TsbuildError('SNAPSHOT_DIGEST_MISMATCH', `layer tar has diffID ${actual}, expected ${diffId}`);
        }
        await waitParent(); // published only on top of a committed parent (a no-op when checked above)
        return await this.publish(tmp, { kind: 'committed', name: chainId, ...(parent === undefined ? {} : { parent }), diffId, created: new Date().toISOString() });
      } finally {
        disposeHasher?.();
        await removeTree(tmp);
      }
    } finally {
      await lock.release();
    }
  }

  /** Renames the filled tmp dir into place (keeping an existing one). The caller removes `tmp` afterwards. */
  private async publish(tmp: string, meta: SnapshotMeta): Promise<SnapshotInfo> {
    const chainId = meta.name as Digest;
    const extra = await this.beforePublish(tmp, chainId);
    const full: SnapshotMeta = { ...meta, ...extra };
    await this.layout.writeMeta(tmp, full);
    const dest = this.layout.committedDir(chainId);
    try {
      renameSync(tmp, dest);
    } catch (err) {
      if (!isExistsError(err)) throw wrapIo(err, `cannot publish snapshot ${dest}`);
      const winner = await this.layout.readMeta(dest);
      if (winner === undefined) throw new TsbuildError('SNAPSHOT_CORRUPT', `${dest} exists without meta.json`, { hint: 'remove that directory' });
      return toInfo(winner);
    }
    return toInfo(full);
  }

  async prepare(key: string, parent?: Digest, options: PrepareOptions = {}): Promise<ActiveSnapshot> {
    checkSnapshotKey(key);
    await this.init();
    const dest = this.layout.activeDir(key);
    if ((await this.layout.readMeta(dest)) !== undefined) throw new TsbuildError('SNAPSHOT_EXISTS', `active snapshot "${key}" exists already`);
    if (parent !== undefined) await this.parentMeta(parent);
    const tmp = await this.layout.makeTmp();
    try {
      await this.fillActive(tmp, parent);
      const meta = newActiveMeta(key, parent, options.persistent === true);
      await this.layout.writeMeta(tmp, meta);
      try {
        renameSync(tmp, dest);
      } catch (err) {
        if (isExistsError(err)) throw new TsbuildError('SNAPSHOT_EXISTS', `active snapshot "${key}" exists already`);
        throw wrapIo(err, `cannot create active snapshot ${dest}`);
      }
      return await this.makeActive(meta);
    } finally {
      await removeTree(tmp);
    }
  }

  async open(key: string): Promise<ActiveSnapshot> {
    await this.init();
    return await this.makeActive(await this.requireActive(key));
  }

  async commit(key: string, diffId: Digest): Promise<SnapshotInfo> {
    await this.init();
    const meta = await this.requireActive(key);
    const chainId = chainIdOf(meta.parent, diffId);
    const active = this.layout.activeDir(key);
    const existing = await this.layout.readMeta(this.layout.committedDir(chainId));
    if (existing !== undefined) {
      this.layout.discard(active);
      return toInfo(existing);
    }
    // The active directory becomes the committed one (no new directory per commit): moved into tmp/,
    // private from here on (a crash leaves garbage there, never a half-made snapshot), its content
    // renamed to fs/, its scratch entries removed in the background, its meta.json rewritten, published.
    const tmp = this.layout.tmpName();
    try {
      try {
        renameSync(active, tmp);
        if (this.activeContent !== 'fs') renameSync(join(tmp, this.activeContent), join(tmp, 'fs'));
      } catch (err) {
        throw wrapIo(err, `cannot move the content of active snapshot "${key}"`);
      }
      for (const name of this.activeScratch) this.layout.discard(join(tmp, name));
      return await this.publish(tmp, { kind: 'committed', name: chainId, ...(meta.parent === undefined ? {} : { parent: meta.parent }), diffId, created: new Date().toISOString() });
    } finally {
      this.layout.discard(tmp); // what is left when another process published the same snapshot first
    }
  }

  settle(): Promise<void> {
    return this.layout.settle();
  }

  async remove(name: string): Promise<void> {
    await this.init();
    if (isDigest(name)) {
      const { committed, active } = await this.layout.listNames();
      for (const c of committed) {
        const m = await this.layout.readMeta(this.layout.committedDir(c));
        if (m?.parent === name) throw new TsbuildError('SNAPSHOT_IN_USE', `snapshot ${name} is the parent of ${c}`);
      }
      for (const a of active) {
        const m = await this.layout.readMeta(this.layout.activeDir(a));
        if (m?.parent === name) throw new TsbuildError('SNAPSHOT_IN_USE', `snapshot ${name} is the parent of active snapshot "${a}"`);
      }
      const dir = this.layout.committedDir(name);
      const meta = await this.layout.readMeta(dir);
      // Move aside first so that no reader ever sees a half-removed snapshot.
      const tmp = await this.layout.makeTmp();
      try {
        moveAside(dir, join(tmp, 'gone'), `cannot remove ${dir}`);
        await this.afterRemove(meta);
      } finally {
        await removeTree(tmp);
      }
      return;
    }
    checkSnapshotKey(name);
    const gone = this.layout.tmpName('gone');
    moveAside(this.layout.activeDir(name), gone, `cannot remove active snapshot "${name}"`);
    await removeTree(gone);
  }

  /** Cleans up what belongs to a removed committed snapshot outside its directory (overlay: the short link). */
  protected async afterRemove(_meta: SnapshotMeta | undefined): Promise<void> {
    // nothing by default
  }

  async lookup(name: string, path: string): Promise<string | undefined> {
    await this.init();
    const meta = isDigest(name) ? await this.requireCommitted(name) : await this.requireActive(name);
    return lookupMerged(await this.layerDirs(meta), path, this.mergePrefix);
  }

  async stat(name: string): Promise<SnapshotInfo | undefined> {
    await this.init();
    if (isDigest(name)) {
      const m = await this.layout.readMeta(this.layout.committedDir(name));
      return m === undefined ? undefined : toInfo(m);
    }
    checkSnapshotKey(name);
    const m = await this.layout.readMeta(this.layout.activeDir(name));
    return m === undefined ? undefined : toInfo(m);
  }

  async list(): Promise<SnapshotInfo[]> {
    await this.init();
    const { committed, active } = await this.layout.listNames();
    const out: SnapshotInfo[] = [];
    for (const c of committed) {
      const m = await this.layout.readMeta(this.layout.committedDir(c));
      if (m !== undefined) out.push(toInfo(m));
    }
    for (const a of active) {
      const m = await this.layout.readMeta(this.layout.activeDir(a));
      if (m !== undefined) out.push(toInfo(m));
    }
    return out;
  }

  async removeStale(): Promise<string[]> {
    await this.init();
    const removed: string[] = [];
    for (const key of (await this.layout.listNames()).active) {
      const m = await this.layout.readMeta(this.layout.activeDir(key));
      if (m !== undefined && !isStale(m)) continue;
      await this.remove(key);
      removed.push(key);
    }
    return removed;
  }
}
