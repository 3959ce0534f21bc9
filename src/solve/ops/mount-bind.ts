import { randomBytes } from 'node:crypto';
import { chmodSync, constants, linkSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, utimesSync, type Stats } from 'node:fs';
import { chmod, copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError, type SourceLocation } from '../../core/index.js';
import type { ContextEntry, ContextSelection } from '../../context/index.js';
import type { ExecMount, ExecOp, SourceRef } from '../../plan/index.js';
import type { MountSpec } from '../../sandbox/index.js';
import type { OverlayMount } from '../../snapshot/index.js';
import { getXattr } from '../../sys/index.js';
import { RootfsView } from '../rootfs-view.js';
import { ensureChain, newSnapshotKey } from '../snapshots.js';
import type { FsState, SolveDeps } from '../types.js';

type BindMount = Extract<ExecMount, { type: 'bind' }>;

/** A bind mount prepared for the sandbox; `dir` tells the stub maker what mount point it needs. */
export interface PreparedBind {
  readonly spec: MountSpec;
  readonly dir: boolean;
}

/** What {@link prepareBindMounts} needs besides the op. */
export interface BindSources {
  readonly deps: SolveDeps;
  readonly signal: AbortSignal;
  /** The state of every input vertex of the step, by vertex id (stage and image binds). */
  readonly inputs: ReadonlyMap<string, FsState>;
  /** The context selection of the context bind at `op.mounts[index]` (made while hashing the context). */
  readonly contextSelection: (index: number) => ContextSelection | undefined;
  readonly loc: SourceLocation | undefined;
  /** The overlay options of the step's own overlay root (overlay mounts work here), or undefined. */
  readonly overlayOptions?: readonly string[] | undefined;
}

export { bindSelectionKey, contextBindSources } from './step-checks.js';

function ioError(what: string, cause: unknown, loc: SourceLocation | undefined): TsbuildError {
  return new TsbuildError('SOLVE_IO', `${what}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause, ...(loc === undefined ? {} : { loc }) });
}

/** The input state a stage or image reference names. */
export function inputState(ref: Exclude<SourceRef, { kind: 'context' }>, inputs: ReadonlyMap<string, FsState>): FsState {
  const s = inputs.get(ref.vertex);
  if (s === undefined) throw new TsbuildError('INTERNAL', `mount input ${ref.vertex} is missing`);
  return s;
}

function describeRef(ref: SourceRef): string {
  return ref.kind === 'stage' ? `stage ${ref.stage}` : ref.kind === 'image' ? `image ${ref.ref}` : 'the build context';
}

/**
 * Writes the selected context entries under `dest` (the root entry becomes `dest` itself). Files
 * are hard links when `hardLink` (the mount or an overlay above keeps writes off them) and copies
 * otherwise; symlinks are recreated as they are, never followed. Returns true when the root is a
 * directory. Links, directories and symlinks are made synchronously (one syscall each, 20,000 files
 * in well under a second); copies run a few at a time.
 */
async function materialize(entries: readonly ContextEntry[], dest: string, hardLink: boolean): Promise<boolean> {
  const root = entries[0];
  if (root === undefined) return true;
  const dirs: { path: string; mode: number; mtime: number }[] = [];
  const copies: { from: string; to: string; mode: number }[] = [];
  for (const e of entries) {
    const path = e.rel === '' ? dest : join(dest, e.rel);
    const mode = e.stat.mode & 0o7777;
    if (e.type === 'dir') {
      mkdirSync(path, { mode: 0o700 });
      dirs.push({ path, mode, mtime: Math.trunc(e.stat.mtimeMs) / 1000 });
    } else if (e.type === 'file') {
      let linked = false;
      if (hardLink) {
        try {
          linkSync(e.absPath, path);
          linked = true;
        } catch {
          // another file system, or protected_hardlinks: copied below
        }
      }
      if (!linked) copies.push({ from: e.absPath, to: path, mode });
    } else if (e.type === 'symlink') {
      symlinkSync(e.linkTarget ?? readlinkSync(e.absPath), path);
    }
  }
  for (let i = 0; i < copies.length; i += 8) {
    await Promise.all(copies.slice(i, i + 8).map(async (c) => {
      await copyFile(c.from, c.to, constants.COPYFILE_FICLONE);
      await chmod(c.to, c.mode);
    }));
  }
  for (const d of dirs.reverse()) {
    chmodSync(d.path, d.mode);
    utimesSync(d.path, d.mtime, d.mtime);
  }
  return root.type === 'dir';
}

/**
 * The layer directories (of `lowers`, top first) that make up the directory `parts` of the merged
 * view, as overlayfs merges them: a layer counts while every prefix is a directory in it, a
 * whiteout ends the path, an opaque directory hides the layers below it.
 */
function dirLayers(lowers: readonly string[], parts: readonly string[], opaqueXattr: string): string[] {
  let visible = lowers.map((_, i) => i);
  for (let n = 1; n <= parts.length; n++) {
    const prefix = parts.slice(0, n).join('/');
    const next: number[] = [];
    let first = true;
    for (const i of visible) {
      const path = `${lowers[i] as string}/${prefix}`;
      const st = lstatOrUndefined(path);
      if (st === undefined) continue;
      if (first && st.isCharacterDevice() && st.rdev === 0) return [];
      first = false;
      if (!st.isDirectory()) break;
      next.push(i);
      if (isOpaque(path, opaqueXattr)) break;
    }
    visible = next;
  }
  return visible.map((i) => (parts.length === 0 ? (lowers[i] as string) : `${lowers[i] as string}/${parts.join('/')}`));
}

function isOpaque(path: string, xattr: string): boolean {
  try {
    return getXattr(path, xattr)?.toString() === 'y';
  } catch {
    return false;
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Prepares the `type=bind` mounts of a RUN step: a context source is materialized from its
 * selection (after .dockerignore) as hard links, read-only or under a throw-away overlay upper for
 * `rw` (copies where overlay cannot be mounted or links cannot be made); a stage or
 * image is mounted from its snapshot (over the overlay snapshotter: its layer directories, with a
 * throw-away upper for `rw`; over the naive one: a throw-away copy). Writes never reach the context
 * or the source snapshot. Throws RUN_BIND_NOT_FOUND when the source path does not exist.
 * SECURITY: source paths are resolved inside the context (by the selection) or inside the source
 * root (symlinks never lead out).
 */
export async function prepareBindMounts(op: ExecOp, src: BindSources): Promise<{ binds: PreparedBind[]; cleanup: () => Promise<void> }> {
  const binds: PreparedBind[] = [];
  const tmpDirs: string[] = [];
  const snapshots: string[] = [];
  const { deps } = src;
  const cleanup = async (): Promise<void> => {
    for (const key of snapshots.splice(0)) await deps.snapshotter.remove(key).catch(() => undefined);
    await Promise.all(tmpDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  };
  const tmpDir = async (): Promise<string> => {
    const d = join(deps.store.paths.tmp, `bind-${process.pid}-${randomBytes(6).toString('hex')}`);
    await mkdir(d, { mode: 0o700 });
    tmpDirs.push(d);
    return d;
  };
  try {
    for (let index = 0; index < op.mounts.length; index++) {
      const m = op.mounts[index] as ExecMount;
      if (m.type !== 'bind') continue;
      if (m.from.kind === 'context') {
        const sel = src.contextSelection(index);
        const match = sel?.sources[0]?.matches[0];
        if (match === undefined) throw notFound(m, src.loc);
        const work = await tmpDir();
        const dest = join(work, 'src');
        // rw over a directory: hard links under a throw-away overlay upper when overlay mounts work, else copies.
        const overlay = m.readwrite && match.entries[0]?.type === 'dir' ? src.overlayOptions : undefined;
        const dir = await materialize(match.entries, dest, !m.readwrite || overlay !== undefined);
        if (overlay === undefined) {
          binds.push({ spec: bindSpec(m, dest), dir });
        } else {
          await mkdir(join(work, 'upper'));
          await mkdir(join(work, 'work'));
          binds.push({ spec: overlaySpec(m, { upperdir: join(work, 'upper'), workdir: join(work, 'work'), options: overlay }, [dest], src.loc), dir: true });
        }
      } else {
        binds.push(await bindFromState(m, inputState(m.from, src.inputs), src, snapshots, tmpDir));
      }
    }
  } catch (err) {
    await cleanup();
    throw err instanceof TsbuildError ? err : ioError('cannot prepare a RUN bind mount', err, src.loc);
  }
  return { binds, cleanup };
}

function notFound(m: BindMount, loc: SourceLocation | undefined): TsbuildError {
  return new TsbuildError('RUN_BIND_NOT_FOUND', `bind mount source "${m.source}" not found in ${describeRef(m.from)}`, loc === undefined ? {} : { loc });
}

function bindSpec(m: BindMount, source: string): MountSpec {
  return { destination: m.target, type: 'bind', source, options: ['rbind', m.readwrite ? 'rw' : 'ro'] };
}

async function bindFromState(m: BindMount, state: FsState, src: BindSources, snapshots: string[], tmpDir: () => Promise<string>): Promise<PreparedBind> {
  const { deps } = src;
  const chain = await ensureChain(deps, state, src.signal);
  const key = newSnapshotKey();
  const active = await deps.snapshotter.prepare(key, chain);
  snapshots.push(key);
  const mnt = active.mounts();
  if (mnt.type === 'bind') {
    // Naive (or an empty state): a private copy; rw writes land in it and are removed with it.
    const view = new RootfsView([mnt.source], 'trusted');
    const parts = view.resolve(m.source, true);
    const e = view.lookupParts(parts);
    if (e === undefined) throw notFound(m, src.loc);
    return { spec: bindSpec(m, e.hostPath), dir: e.stat.isDirectory() };
  }
  const xattr = mnt.options.includes('userxattr') ? 'user.overlay.opaque' : 'trusted.overlay.opaque';
  const view = new RootfsView(mnt.lowerdirs, xattr.startsWith('user.') ? 'user' : 'trusted');
  const parts = view.resolve(m.source, true);
  const e = view.lookupParts(parts);
  if (e === undefined) throw notFound(m, src.loc);
  // (The root's entry is the lowerdir's short link itself: always a directory.)
  if (parts.length > 0 && !e.stat.isDirectory()) {
    if (!m.readwrite) return { spec: bindSpec(m, e.hostPath), dir: false };
    const copy = join(await tmpDir(), 'file');
    await copyFile(e.hostPath, copy);
    await chmod(copy, e.stat.mode & 0o7777);
    return { spec: bindSpec(m, copy), dir: false };
  }
  const lowers = dirLayers(mnt.lowerdirs, parts, xattr);
  if (!m.readwrite && lowers.length === 1) return { spec: bindSpec(m, lowers[0] as string), dir: true };
  return { spec: overlaySpec(m, mnt, lowers, src.loc), dir: true };
}

/** An overlay mount of `lowers` at the target: read-only without an upper (two lowers at least), else with the snapshot's throw-away upper. */
function overlaySpec(m: BindMount, mnt: Pick<OverlayMount, 'upperdir' | 'workdir' | 'options'>, lowers: readonly string[], loc: SourceLocation | undefined): MountSpec {
  for (const p of [...lowers, mnt.upperdir, mnt.workdir]) {
    if (/[,:\\\n]/.test(p)) throw new TsbuildError('RUN_BIND_BAD_PATH', `cannot mount ${p}: the path has ",", ":" or "\\"`, loc === undefined ? {} : { loc });
  }
  const ro = !m.readwrite && lowers.length >= 2;
  const data = [`lowerdir=${lowers.join(':')}`, ...(ro ? [] : [`upperdir=${mnt.upperdir}`, `workdir=${mnt.workdir}`]), ...mnt.options];
  if (data.join(',').length > 4000) {
    throw new TsbuildError('RUN_BIND_TOO_DEEP', `the bind mount of ${describeRef(m.from)} has too many layers (${lowers.length}) for one overlay mount`, { ...(loc === undefined ? {} : { loc }), hint: 'squash the source image or copy the files with COPY --from' });
  }
  return { destination: m.target, type: 'overlay', source: 'overlay', options: [...(ro || !m.readwrite ? ['ro'] : []), ...data] };
}
