import { execFile, type ExecFileOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readlinkSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { TsbuildError } from '../core/index.js';
import { removeTree } from './layout.js';
import type { OverlayMount, SnapshotMount } from './snapshotter.js';
import { randomHex } from '../sys/index.js';

/** execFile as a promise, made on first use (at module load it would load node:child_process for every command that imports the snapshotter). */
const run = (file: string, args: readonly string[], options: ExecFileOptions = {}): Promise<unknown> => promisify(execFile)(file, [...args], options);

/** mount(2) copies at most one page of option data. */
export const MOUNT_DATA_LIMIT = 4095;

/** Options of {@link formatOverlayData}. */
export interface OverlayDataOptions {
  /** Use `l/<short>` lowers and upper/work relative to `baseDir` (the mounting process must chdir to `baseDir`). Default false. */
  readonly relative?: boolean;
}

function checkPath(p: string): string {
  if (/[,:\\\n]/.test(p)) {
    throw new TsbuildError('SNAPSHOT_BAD_PATH', `overlay path "${p}" contains ",", ":", "\\" or a newline`, { hint: 'use a store root without those characters' });
  }
  return p;
}

/**
 * The overlay mount data (`lowerdir=...,upperdir=...,workdir=...,<options>`). Throws
 * SNAPSHOT_TOO_MANY_LAYERS when it exceeds one page (use `relative: true`, which fits about 270 layers).
 */
export function formatOverlayData(m: OverlayMount, options: OverlayDataOptions = {}): string {
  const rel = options.relative === true;
  const lowers = (rel ? m.relativeLowerdirs : m.lowerdirs).map(checkPath);
  const upper = checkPath(rel ? relative(m.baseDir, m.upperdir) : m.upperdir);
  const work = checkPath(rel ? relative(m.baseDir, m.workdir) : m.workdir);
  const data = [`lowerdir=${lowers.join(':')}`, `upperdir=${upper}`, `workdir=${work}`, ...m.options].join(',');
  if (data.length > MOUNT_DATA_LIMIT) {
    throw new TsbuildError('SNAPSHOT_TOO_MANY_LAYERS', `the overlay mount options of ${m.lowerdirs.length} layers take ${data.length} bytes, more than one page`, {
      hint: rel ? 'the image has too many layers for one overlay mount; squash some' : 'mount with relative lowerdirs from baseDir',
    });
  }
  return data;
}

/** Runs a command, turning a failure into SNAPSHOT_MOUNT_FAILED with its stderr. */
async function runOrThrow(cmd: string, args: readonly string[], cwd: string | undefined, what: string): Promise<void> {
  try {
    await run(cmd, args, cwd === undefined ? {} : { cwd });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new TsbuildError('SNAPSHOT_MOUNT_FAILED', `${what}: ${stderr || (err as Error).message}`, { cause: err });
  }
}

/**
 * Mounts an active snapshot at `target` in the caller's mount namespace with mount(8) (needs root;
 * rootless mounts happen inside the sandbox's namespaces instead). Overlay lowers are passed relative
 * to `baseDir` so that long chains fit. The caller unmounts with {@link unmountSnapshot}.
 */
export async function mountSnapshot(m: SnapshotMount, target: string): Promise<void> {
  if (m.type === 'bind') {
    await runOrThrow('mount', ['--bind', m.source, target], undefined, `cannot bind-mount ${m.source} on ${target}`);
    return;
  }
  await runOrThrow('mount', ['-t', 'overlay', 'overlay', '-o', formatOverlayData(m, { relative: true }), target], m.baseDir, `cannot mount overlay on ${target}`);
}

/** Unmounts `target` (umount(8)); SNAPSHOT_MOUNT_FAILED when it fails. */
export async function unmountSnapshot(target: string): Promise<void> {
  await runOrThrow('umount', [target], undefined, `cannot unmount ${target}`);
}

/** What {@link probeOverlay} found. */
export type OverlayProbe =
  | { readonly ok: true; readonly options: readonly string[] }
  | { readonly ok: false; readonly reason: string };

/** Option sets tried in order: the first the kernel accepts wins. userxattr forces redirect_dir and metacopy off by itself. */
const CANDIDATES: Readonly<Record<'root' | 'userxattr', readonly (readonly string[])[]>> = {
  root: [['redirect_dir=off', 'metacopy=off', 'index=off'], ['redirect_dir=off', 'metacopy=off'], []],
  userxattr: [['userxattr', 'index=off'], ['userxattr']],
};

/**
 * Tries a real overlay mount in a throw-away mount namespace (`unshare -m`, or `unshare -Urm` with
 * `userxattr`) on a scratch tree under `scratchParent` (the snapshot file system), deleting a lower
 * file through it and checking that the upperdir got a 0/0 whiteout. Returns the accepted option set
 * or why overlay is unusable. Never leaves a mount behind (the namespace dies with the probe).
 */
export async function probeOverlay(scratchParent: string, userxattr: boolean): Promise<OverlayProbe> {
  const dir = join(scratchParent, `probe-${process.pid}-${Math.random().toString(16).slice(2, 10)}`);
  let last = 'no candidate option set';
  try {
    for (const d of ['lower', 'upper', 'work', 'merged']) await mkdir(join(dir, d), { recursive: true });
    await writeFile(join(dir, 'lower', 'f'), 'x');
    for (const options of CANDIDATES[userxattr ? 'userxattr' : 'root']) {
      await removeTree(join(dir, 'upper'));
      await removeTree(join(dir, 'work'));
      await mkdir(join(dir, 'upper'));
      await mkdir(join(dir, 'work'));
      const data = [`lowerdir=${join(dir, 'lower')}`, `upperdir=${join(dir, 'upper')}`, `workdir=${join(dir, 'work')}`, ...options].join(',');
      // `volatile` (Linux 5.10+, as the steps mount): the namespace's unmount then skips syncing the whole
      // upper file system, which takes seconds on a busy disk; an older kernel refuses it and the probe mounts without.
      const script = '{ mount -t overlay overlay -o "$0,volatile" "$1/merged" 2>/dev/null || mount -t overlay overlay -o "$0" "$1/merged"; } && rm "$1/merged/f" && test -c "$1/upper/f"';
      const args = [...(userxattr ? ['-U', '-r'] : []), '-m', 'sh', '-c', script, data, dir];
      try {
        await run('unshare', args);
        return { ok: true, options };
      } catch (err) {
        last = String((err as { stderr?: unknown }).stderr ?? '').trim() || (err as Error).message;
      }
    }
  } catch (err) {
    last = (err as Error).message;
  } finally {
    await removeTree(dir).catch(() => undefined);
  }
  return { ok: false, reason: `overlay cannot be mounted here: ${last}` };
}

/** What a cached probe result is valid for: one boot (one kernel), one user and user namespace, one file system. */
function probeCacheKey(scratchParent: string, userxattr: boolean): string | undefined {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const userns = readlinkSync('/proc/self/ns/user');
    return JSON.stringify({ v: 1, boot, uid: process.getuid?.() ?? -1, userns, dev: statSync(scratchParent).dev, userxattr });
  } catch {
    return undefined;
  }
}

/**
 * A copy of probe results for every store of this user on this machine, in the run directory:
 * `$TSBUILD_RUN_DIR`, else `/run/tsbuild` as root, `$XDG_RUNTIME_DIR/tsbuild` otherwise and in a
 * rootless build (`userxattr`: root of a user namespace, where /run is not ours); all gone at
 * reboot. Only when that directory is the caller's own and not writable by others (a planted file
 * must not choose mount options). Undefined when there is no such place.
 */
function hostProbeFile(key: string, userxattr: boolean): string | undefined {
  const uid = process.getuid?.() ?? -1;
  const xdg = process.env.XDG_RUNTIME_DIR;
  const dir = process.env.TSBUILD_RUN_DIR || (uid === 0 && !userxattr ? '/run/tsbuild' : xdg === undefined || xdg === '' ? undefined : join(xdg, 'tsbuild'));
  if (dir === undefined) return undefined;
  try {
    mkdirSync(dir, { mode: 0o755, recursive: true });
    const st = statSync(dir);
    if (st.uid !== uid || (st.mode & 0o022) !== 0) return undefined;
  } catch {
    return undefined;
  }
  return join(dir, `overlay-probe-${createHash('sha256').update(key).digest('hex').slice(0, 16)}.json`);
}

/** The options recorded in `file` for `key`, when they are one of the candidate sets (anything else is not trusted). */
function readCachedProbe(file: string, key: string, userxattr: boolean): readonly string[] | undefined {
  try {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as { key?: unknown; options?: unknown };
    if (cached.key !== key || !Array.isArray(cached.options)) return undefined;
    const options = cached.options as unknown[];
    return CANDIDATES[userxattr ? 'userxattr' : 'root'].find((c) => c.length === options.length && c.every((o, i) => o === options[i]));
  } catch {
    return undefined; // absent or unreadable
  }
}

/** Best effort and atomic (tmp + rename): a reader sees the old file, the new one or none. */
function writeCachedProbe(file: string, key: string, options: readonly string[]): void {
  const tmp = `${file}.${randomHex(6)}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify({ key, options }), { mode: 0o600 });
    renameSync(tmp, file);
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      // not created
    }
  }
}

/**
 * {@link probeOverlay} with its successful result kept in `cacheFile` (`{key, options}`) until the next boot, and in a
 * copy for the user's other stores on the machine ({@link hostProbeFile}): the probe forks a shell and mounts (tens
 * of ms), once per process start otherwise, and a new store (a CI job's) need not pay it again. The key holds the
 * boot id, uid, user namespace, the scratch file system's device and `userxattr`; anything unreadable, different or
 * not a candidate option set probes again. A failed probe is never cached (it may be transient).
 */
export async function probeOverlayCached(cacheFile: string, scratchParent: string, userxattr: boolean): Promise<OverlayProbe> {
  const key = probeCacheKey(scratchParent, userxattr);
  if (key !== undefined) {
    const own = readCachedProbe(cacheFile, key, userxattr);
    if (own !== undefined) return { ok: true, options: own };
  }
  const hostFile = key === undefined ? undefined : hostProbeFile(key, userxattr);
  const shared = hostFile === undefined || key === undefined ? undefined : readCachedProbe(hostFile, key, userxattr);
  if (shared !== undefined && key !== undefined) {
    writeCachedProbe(cacheFile, key, shared);
    return { ok: true, options: shared };
  }
  const probe = await probeOverlay(scratchParent, userxattr);
  if (probe.ok && key !== undefined) {
    writeCachedProbe(cacheFile, key, probe.options);
    if (hostFile !== undefined) writeCachedProbe(hostFile, key, probe.options);
  }
  return probe;
}
