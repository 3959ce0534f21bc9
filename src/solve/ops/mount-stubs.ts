import { randomBytes } from 'node:crypto';
import { closeSync, lchownSync, lstatSync, lutimesSync, mkdirSync, openSync, rmdirSync, rmSync, unlinkSync, utimesSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { TsbuildError } from '../../core/index.js';
import type { SnapshotMount } from '../../snapshot/index.js';
import type { RootfsView } from '../rootfs-view.js';

/** A mount point a RUN mount needs: a directory, or a file for a file/socket bind. */
export interface StubTarget {
  readonly path: string;
  readonly dir: boolean;
}

/** Mount points made for one RUN step; {@link MountStubs.remove} takes them away again. */
export interface MountStubs {
  /** For an overlay root: a directory to put on top of the root's lowerdirs (holds the stubs). */
  readonly lowerdir: string | undefined;
  /** Removes the stubs (idempotent): the layer never shows a mount point the step did not write. */
  remove(): void;
}

/** Destinations below the sandbox's own mounts: their mount points live on those mounts. */
function onSandboxMount(path: string): boolean {
  return /^\/(dev|proc|sys)(\/|$)/.test(path);
}

function tryLstat(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function ioError(what: string, cause: unknown): TsbuildError {
  return new TsbuildError('SOLVE_IO', `${what}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause });
}

/** The canonical components of `path` in the view, or undefined when a component is not a directory. */
function resolveTarget(view: RootfsView, path: string): string[] | undefined {
  try {
    return view.resolve(path, true);
  } catch (err) {
    if (err instanceof TsbuildError && err.code === 'SOLVE_NOT_DIR') return undefined; // the sandbox reports it
    throw err;
  }
}

/** Copies owner, mode and times of an existing directory onto its stand-in (owner best effort when rootless). */
function copyDirMeta(path: string, st: Stats): void {
  try {
    lchownSync(path, st.uid, st.gid);
  } catch {
    // rootless: ids outside the caller's are not ours to give; the stand-in keeps the caller's
  }
  utimesSync(path, st.atime, st.mtime);
}

/**
 * Makes the mount points of `targets` that the root lacks, so the sandbox never creates them in the
 * step's change set (as BuildKit's mount stub cleaner, a mount point does not end up in the layer).
 * Over an overlay root the stubs go to a separate directory that becomes the top lowerdir (existing
 * parent directories are stood in for with the same owner, mode and times, so the merged view looks
 * unchanged); over a directory root they are created in place and removed after the step, restoring
 * the parent's times.
 * SECURITY: targets are resolved inside the view (symlinks cannot lead out of the root).
 */
export function createMountStubs(view: RootfsView, root: SnapshotMount, targets: readonly StubTarget[], tmpDir: string): MountStubs {
  const wanted = targets.filter((t) => !onSandboxMount(t.path));
  if (root.type === 'overlay') return overlayStubs(view, wanted, tmpDir);
  return directoryStubs(view, root.source, wanted);
}

function overlayStubs(view: RootfsView, targets: readonly StubTarget[], tmpDir: string): MountStubs {
  let dir: string | undefined;
  const remove = (): void => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const t of targets) {
      const parts = resolveTarget(view, t.path);
      if (parts === undefined || parts.length === 0 || view.lookupParts(parts) !== undefined) continue;
      if (dir === undefined) {
        dir = join(tmpDir, `stubs-${process.pid}-${randomBytes(6).toString('hex')}`);
        mkdirSync(dir, { mode: 0o755 });
      }
      let missing = false;
      for (let n = 1; n <= parts.length; n++) {
        const sub = parts.slice(0, n);
        const host = join(dir, ...sub);
        const here = tryLstat(host);
        const merged = missing ? undefined : view.lookupParts(sub);
        if (merged === undefined) missing = true;
        if (merged !== undefined && !merged.stat.isDirectory()) break; // a file in the way: the sandbox reports it
        if (here !== undefined) continue;
        if (n === parts.length && !t.dir) {
          closeSync(openSync(host, 'wx', 0o644));
        } else {
          mkdirSync(host, { mode: merged === undefined ? 0o755 : merged.stat.mode & 0o7777 });
          if (merged !== undefined) copyDirMeta(host, merged.stat);
        }
      }
    }
  } catch (err) {
    remove();
    throw err instanceof TsbuildError ? err : ioError('cannot prepare the mount points of a RUN step', err);
  }
  return { lowerdir: dir, remove };
}

function directoryStubs(view: RootfsView, rootDir: string, targets: readonly StubTarget[]): MountStubs {
  /** Created paths in creation order, and the times of the existing parent of each first creation. */
  const created: { path: string; dir: boolean }[] = [];
  const parents: { path: string; atime: Date; mtime: Date }[] = [];
  const remove = (): void => {
    for (const c of created.splice(0).reverse()) {
      try {
        const st = lstatSync(c.path);
        if (c.dir && st.isDirectory()) rmdirSync(c.path);
        else if (!c.dir && st.isFile() && st.size === 0) unlinkSync(c.path);
      } catch {
        // written by the step (not empty) or gone: kept as the step left it
      }
    }
    for (const p of parents.splice(0).reverse()) {
      try {
        lutimesSync(p.path, p.atime, p.mtime);
      } catch {
        // gone
      }
    }
  };
  try {
    for (const t of targets) {
      const parts = resolveTarget(view, t.path);
      if (parts === undefined || parts.length === 0) continue;
      for (let n = 1; n <= parts.length; n++) {
        const host = join(rootDir, ...parts.slice(0, n));
        const st = tryLstat(host);
        if (st !== undefined) {
          if (!st.isDirectory()) break;
          continue;
        }
        const parent = join(rootDir, ...parts.slice(0, n - 1));
        const pst = lstatSync(parent);
        parents.push({ path: parent, atime: pst.atime, mtime: pst.mtime });
        const dir = n < parts.length || t.dir;
        if (dir) mkdirSync(host, { mode: 0o755 });
        else closeSync(openSync(host, 'wx', 0o644));
        created.push({ path: host, dir });
      }
    }
  } catch (err) {
    remove();
    throw err instanceof TsbuildError ? err : ioError('cannot prepare the mount points of a RUN step', err);
  }
  return { lowerdir: undefined, remove };
}
