import { chmodSync, copyFileSync, existsSync, lchownSync, lutimesSync, mkdirSync, readlinkSync, symlinkSync } from 'node:fs';
import { chmod, chown, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { digestHex, sha256Of, TsbuildError, type SourceLocation } from '../../core/index.js';
import type { ExecOp } from '../../plan/index.js';
import { chainIdOfStack } from '../../snapshot/index.js';
import type { RootfsView } from '../rootfs-view.js';
import { withStateView } from '../snapshots.js';
import type { FsState, SolveDeps } from '../types.js';
import { inputState } from './mount-bind.js';

/** A persistent cache mount directory and whether `sharing=locked|private` locks it while the step runs. */
export interface CacheDir {
  readonly target: string;
  readonly dir: string;
  readonly readonly: boolean;
  readonly lock: boolean;
}

/** What {@link prepareCacheDirs} needs for `from=` seeds. */
export interface CacheSeedSources {
  readonly deps: SolveDeps;
  readonly signal: AbortSignal;
  readonly inputs: ReadonlyMap<string, FsState>;
  readonly loc: SourceLocation | undefined;
}

function ioError(what: string, cause: unknown): TsbuildError {
  return new TsbuildError('SOLVE_IO', `${what}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause });
}

/** Copies the merged directory `parts` of `view` into the host directory `dest` (owners, modes, mtimes kept; symlinks as they are). */
function copyViewTree(view: RootfsView, parts: readonly string[], dest: string): void {
  for (const name of view.readdirParts(parts)) {
    const sub = [...parts, name];
    const e = view.lookupParts(sub);
    if (e === undefined) continue;
    const to = join(dest, name);
    if (e.stat.isDirectory()) {
      mkdirSync(to);
      copyViewTree(view, sub, to);
    } else if (e.stat.isFile()) copyFileSync(e.hostPath, to);
    else if (e.stat.isSymbolicLink()) symlinkSync(readlinkSync(e.hostPath), to);
    else continue; // devices, fifos, sockets: not cache material
    lchownSync(to, e.stat.uid, e.stat.gid);
    if (!e.stat.isSymbolicLink()) chmodSync(to, e.stat.mode & 0o7777);
    lutimesSync(to, e.stat.atime, e.stat.mtime);
  }
}

/**
 * Prepares the directories of `RUN --mount=type=cache` under `<store>/cache/mounts/<sha256(id)>`
 * (created with the mount's mode, uid and gid). With `from=STAGE[,source=PATH]` the cache is a
 * separate one per source content (as BuildKit keys it by id and base) and starts as a copy of that
 * path of the stage or image. Contents never enter a layer or a cache key.
 */
export async function prepareCacheDirs(op: ExecOp, cacheRoot: string, seeds: CacheSeedSources): Promise<CacheDir[]> {
  const out: CacheDir[] = [];
  for (const m of op.mounts) {
    if (m.type !== 'cache') continue;
    const base = m.from === undefined || m.from.kind === 'context' ? undefined : inputState(m.from, seeds.inputs);
    const baseId = base === undefined ? '' : `\0${chainIdOfStack(base.layers.map((l) => l.diffId)) ?? 'scratch'}\0${m.source ?? '/'}`;
    const dir = join(cacheRoot, 'mounts', digestHex(sha256Of(`cache-mount\0${m.id}${baseId}`)));
    try {
      await mkdir(join(cacheRoot, 'mounts'), { recursive: true });
      if (base === undefined) {
        await mkdir(dir, { mode: m.mode });
      } else if (!existsSync(dir)) {
        // Seeded in a temp dir and renamed into place, so a failed or concurrent seed never leaves half a cache.
        const tmp = `${dir}.seed-${process.pid}-${randomBytes(4).toString('hex')}`;
        await mkdir(tmp, { mode: m.mode });
        try {
          await withStateView(seeds.deps, base, seeds.signal, async (view) => {
            const parts = view.resolve(m.source ?? '/', true);
            const e = view.lookupParts(parts);
            if (e === undefined || !e.stat.isDirectory()) {
              throw new TsbuildError('RUN_CACHE_SOURCE_NOT_FOUND', `cache mount source "${m.source ?? '/'}" is not a directory in the mount's from=`, seeds.loc === undefined ? {} : { loc: seeds.loc });
            }
            copyViewTree(view, parts, tmp);
          });
          await chown(tmp, m.uid, m.gid);
          await chmod(tmp, m.mode);
          await rename(tmp, dir);
        } finally {
          await rm(tmp, { recursive: true, force: true });
        }
      }
      await chown(dir, m.uid, m.gid);
      await chmod(dir, m.mode);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') {
        throw err instanceof TsbuildError ? err : ioError(`cannot create the cache mount directory ${dir}`, err);
      }
    }
    // `private` is served like `locked` (one step at a time) rather than with a throw-away copy.
    out.push({ target: m.target, dir, readonly: m.readonly, lock: m.sharing !== 'shared' });
  }
  return out;
}
