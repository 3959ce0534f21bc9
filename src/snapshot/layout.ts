import { execFile, type ExecFileOptions } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import { readdir, rm, rmdir, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TsbuildError, digestHex, isDigest, type Digest } from '../core/index.js';
import { isPidRunning, randomHex } from '../sys/index.js';
import type { SnapshotInfo, SnapshotterKind } from './snapshotter.js';

/** execFile as a promise, made on first use (at module load it would load node:child_process for every command that imports the snapshotter). */
const runFile = (file: string, args: readonly string[], options: ExecFileOptions = {}): Promise<unknown> => promisify(execFile)(file, [...args], options);

/** Where a snapshotter keeps its files: `<snapshots>/<kind>/` and the store's `tmp/` (same file system). */
export interface SnapshotDirs {
  /** The store's `snapshots/` directory. */
  readonly snapshots: string;
  /** The store's `tmp/` directory (garbage there is removed by the store's gc). */
  readonly tmp: string;
}

/** The metadata file of a snapshot directory (`meta.json`). */
export interface SnapshotMeta {
  readonly kind: 'committed' | 'active';
  readonly name: string;
  readonly parent?: Digest;
  readonly diffId?: Digest;
  readonly created: string;
  readonly pid?: number;
  readonly host?: string;
  /** Overlay: the short link name under `l/`. */
  readonly link?: string;
  /** Overlay: the xattr namespace of whiteout markers (`trusted` as root, `user` for userxattr mounts). */
  readonly xattr?: 'trusted' | 'user';
}

/** Wraps a Node error into SNAPSHOT_IO naming the path. */
export function wrapIo(err: unknown, what: string): TsbuildError {
  if (err instanceof TsbuildError) return err;
  return new TsbuildError('SNAPSHOT_IO', `${what}: ${(err as Error).message}`, { cause: err });
}

/** True for the errno codes rename(2) gives when the destination directory exists. */
export function isExistsError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EEXIST' || code === 'ENOTEMPTY';
}

/**
 * Paths and metadata I/O of one snapshotter kind: `<snapshots>/<kind>/<chain hex>/{meta.json,fs}`
 * (committed), `active/<key>/` (active), `l/<short>` (overlay links), `locks/` (unpack locks).
 */
export class SnapshotLayout {
  readonly base: string;
  readonly activeRoot: string;
  readonly links: string;
  readonly locks: string;
  /** Removals started by {@link discard} and not yet ended. */
  readonly #removals = new Set<Promise<void>>();

  constructor(readonly dirs: SnapshotDirs, readonly kind: SnapshotterKind) {
    this.base = join(dirs.snapshots, kind);
    this.activeRoot = join(this.base, 'active');
    this.links = join(this.base, 'l');
    this.locks = join(this.base, 'locks');
  }

  /** Creates the directories (idempotent). */
  async init(): Promise<void> {
    try {
      for (const d of [this.dirs.tmp, this.base, this.activeRoot, this.links, this.locks]) mkdirSync(d, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw wrapIo(err, `cannot create ${this.base}`);
    }
  }

  /** The directory of the committed snapshot `chainId` (no I/O). */
  committedDir(chainId: Digest): string {
    return join(this.base, digestHex(chainId));
  }

  /** The directory of the active snapshot `key` (no I/O; the key is checked by the caller). */
  activeDir(key: string): string {
    return join(this.activeRoot, key);
  }

  /** A fresh private directory `tmp/snap-<pid>-<rand>` (the store gc removes it once this process is gone). */
  async makeTmp(): Promise<string> {
    const dir = this.tmpName();
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      throw wrapIo(err, `cannot create ${dir}`);
    }
    return dir;
  }

  /** A fresh, unused path `tmp/<kind>-<pid>-<rand>` (no I/O): the target of a rename that makes a directory private. */
  tmpName(kind = 'snap'): string {
    return join(this.dirs.tmp, `${kind}-${process.pid}-${randomHex(8)}`);
  }

  /** Reads `<dir>/meta.json`; undefined when the directory or file is missing. */
  async readMeta(dir: string): Promise<SnapshotMeta | undefined> {
    let text: string;
    try {
      text = readFileSync(join(dir, 'meta.json'), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw wrapIo(err, `cannot read ${dir}/meta.json`);
    }
    try {
      return JSON.parse(text) as SnapshotMeta;
    } catch (cause) {
      throw new TsbuildError('SNAPSHOT_CORRUPT', `${dir}/meta.json is not valid JSON`, { cause });
    }
  }

  /**
   * Writes `<dir>/meta.json` in place (replacing its content). `dir` must be private (under tmp/):
   * it becomes visible by its rename, which is what makes the snapshot appear atomically, so the file
   * needs no temp file and rename of its own (one inode less per snapshot). Not fsynced: the snapshot
   * content is not either (as in containerd and docker); after a power loss the store is checked with fsck.
   */
  async writeMeta(dir: string, meta: SnapshotMeta): Promise<void> {
    const path = join(dir, 'meta.json');
    try {
      const fd = openSync(path, 'w', 0o644);
      try {
        writeSync(fd, `${JSON.stringify(meta)}\n`);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      throw wrapIo(err, `cannot write ${path}`);
    }
  }

  /**
   * Moves `path` (a file or a tree) out of the way into tmp/ and removes it in the background:
   * the caller goes on at once (a tree's rmdirs cost 1-3 ms each on a busy ext4). {@link settle}
   * waits for every such removal; a removal that fails, or that a killed process left, is garbage
   * in tmp/ of a gone pid, which the store gc removes. A missing `path` is not an error.
   */
  discard(path: string): void {
    const gone = this.tmpName('gone');
    try {
      renameSync(path, gone);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw wrapIo(err, `cannot move ${path} aside`);
    }
    const removal: Promise<void> = removeTreeInBackground(gone).catch(() => undefined).finally(() => this.#removals.delete(removal));
    this.#removals.add(removal);
  }

  /** Settles once every removal started by {@link discard} has ended (never rejects). */
  async settle(): Promise<void> {
    while (this.#removals.size > 0) await Promise.all([...this.#removals]);
  }

  /** Committed chain IDs and active keys present on disk. */
  async listNames(): Promise<{ committed: Digest[]; active: string[] }> {
    const committed: Digest[] = [];
    for (const name of readdirOrEmpty(this.base)) {
      const d = `sha256:${name}`;
      if (isDigest(d)) committed.push(d);
    }
    const active = readdirOrEmpty(this.activeRoot);
    return { committed, active };
  }
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Metadata of an active snapshot created now, owned by this process unless `persistent`. */
export function newActiveMeta(key: string, parent: Digest | undefined, persistent = false): SnapshotMeta {
  const owner = persistent ? {} : { pid: process.pid, host: hostname() };
  return { kind: 'active', name: key, ...(parent === undefined ? {} : { parent }), created: new Date().toISOString(), ...owner };
}

/** The public view of a metadata record. */
export function toInfo(meta: SnapshotMeta): SnapshotInfo {
  return { kind: meta.kind, name: meta.name, parent: meta.parent, diffId: meta.diffId, created: meta.created, pid: meta.pid };
}

/**
 * True when the meta's creator ran on this host and no longer runs. A zombie counts as gone: a
 * killed build whose parent died too stays one until init reaps it, and its snapshot is abandoned.
 */
export function isStale(meta: SnapshotMeta): boolean {
  if (meta.pid === undefined || meta.host !== hostname()) return false;
  return !isPidRunning(meta.pid);
}

/**
 * Removes a tree, also when it holds directories without write or search permission (an overlay
 * workdir's `work/` is mode 000): on EACCES/EPERM the modes are opened up and the removal retried.
 * A non-root user whose tree holds files of its sub-ids (a rootless build's snapshot, owned by
 * e.g. host uid 201000) removes it as root of a user namespace over those ids (`unshare --map-auto`).
 */
export async function removeTree(path: string): Promise<void> {
  try {
    removeDirTreeSync(path);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw wrapIo(err, `cannot remove ${path}`);
  }
  openUpModes(path);
  try {
    rmSync(path, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (process.getuid?.() === 0 || (code !== 'EACCES' && code !== 'EPERM')) throw wrapIo(err, `cannot remove ${path}`);
    await removeAsSubIds(path, err);
  }
}

/**
 * {@link removeTree} with the removal off the event loop (the tree's unlinks and rmdirs run on libuv's
 * threads). Not root: the modes are opened up first (an overlay work dir's `work/` is mode 000, and
 * only root passes it), so the usual tree goes in one attempt.
 */
async function removeTreeInBackground(path: string): Promise<void> {
  if (process.getuid?.() !== 0) openUpModes(path);
  try {
    await removeDirTree(path);
    return;
  } catch {
    // a permission (EACCES, EPERM): fs.rm's walk below
  }
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw wrapIo(err, `cannot remove ${path}`);
  }
  await removeTree(path);
}

/** Entries of one directory removed at the same time by {@link removeDirTree}. */
const REMOVE_BATCH = 32;

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}

/**
 * Removes the directory tree `dir` (a missing one is no error; a file is unlinked) with one readdir per
 * directory, whose entry types decide between unlink and recursion, and one unlink or rmdir per entry: a
 * third of the thread-pool round trips of fs.rm, which lstats every entry and tries rmdir before readdir (an
 * overlay work dir left by a RUN step: 9 instead of ~30, each a wake-up of the event loop). `dir` itself must
 * not be a symlink to a directory (readdir follows it; entries below are never followed). Throws on anything
 * else (EACCES, EPERM) once every removal it started has ended: the caller then falls back to fs.rm.
 */
export async function removeDirTree(dir: string): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') {
      await unlink(dir).catch(ignoreMissing);
      return;
    }
    ignoreMissing(err);
    return;
  }
  for (let i = 0; i < entries.length; i += REMOVE_BATCH) {
    // allSettled: a failure surfaces only after its siblings stopped, so the caller's fallback never races them.
    const results = await Promise.allSettled(entries.slice(i, i + REMOVE_BATCH).map((e) => {
      const path = join(dir, e.name);
      return e.isDirectory() ? removeDirTree(path) : unlink(path).catch(ignoreMissing);
    }));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
  await rmdir(dir).catch(ignoreMissing);
}

/**
 * {@link removeDirTree} done synchronously, for small trees on a path that waits for the removal anyway
 * (a container's directory, an active snapshot after `run --rm`): one readdir per directory, whose entry
 * types decide between unlink and recursion, then the rmdir; no thread-pool round trips, and fewer system
 * calls than fs.rmSync, which stats every entry and tries rmdir before reading a directory. A missing `dir`
 * is no error, a file is unlinked; anything else (EACCES, EPERM) is thrown as it comes.
 */
export function removeDirTreeSync(dir: string): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') {
      try {
        unlinkSync(dir);
      } catch (e) {
        ignoreMissing(e);
      }
      return;
    }
    ignoreMissing(err);
    return;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) removeDirTreeSync(path);
    else {
      try {
        unlinkSync(path);
      } catch (err) {
        ignoreMissing(err);
      }
    }
  }
  try {
    rmdirSync(dir);
  } catch (err) {
    ignoreMissing(err);
  }
}

/** `rm -rf` as root of a user namespace mapping the caller to 0 and its first sub-id ranges to 1.. . */
async function removeAsSubIds(path: string, original: unknown): Promise<void> {
  try {
    await runFile('unshare', ['--map-auto', '--map-root-user', '--', 'rm', '-rf', '--', path]);
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new TsbuildError('SNAPSHOT_IO', `cannot remove ${path}: ${(original as NodeJS.ErrnoException).code ?? String(original)}, also not in a user namespace over the sub-ids: ${stderr || (err as Error).message}`, {
      cause: original,
      hint: 'the tree holds files of other ids; check /etc/subuid and /etc/subgid, or remove it as root',
    });
  }
}

function openUpModes(dir: string): void {
  try {
    chmodSync(dir, 0o700);
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) openUpModes(join(dir, e.name));
  } catch {
    // best effort: the removal reports what is left
  }
}
