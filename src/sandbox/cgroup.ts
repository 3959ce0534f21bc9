import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import type { CgroupMode, ProcessIdentity } from './cgroup-detect.js';
import { CGROUP_ROOT, detectCgroupMode, formatCgroupDirName, isOwnerAlive, parseCgroupDirName, readProcCgroups, readProcessIdentity } from './cgroup-detect.js';
import { errnoOf, isWritable } from './cgroup-fs.js';
import type { CgroupLimits } from './cgroup-limits.js';
import { hasLimits, validateLimits } from './cgroup-limits.js';
import type { Cgroup } from './cgroup-types.js';
import { CgroupV1, createCgroupV1, findV1Hierarchies } from './cgroup-v1.js';
import { CgroupV2, createCgroupV2, evacuateDelegatedCgroup } from './cgroup-v2.js';

/** The parent cgroup every sandbox cgroup lives under (in each hierarchy). */
export const CGROUP_PARENT = 'tsbuild';

/** Options of {@link createCgroup} and {@link cleanupStaleCgroups}. */
export interface CgroupOptions {
  /** True when tsbuild runs without root: limits only on a delegated cgroup v2 subtree. */
  rootless: boolean;
  /** Receives each warning once (a limit that cannot be applied and why). */
  onWarning?: (msg: string) => void;
  /** Mount root of the cgroup file systems (default /sys/fs/cgroup). */
  root?: string;
  /** Override the detected mode; 'v2' with root /sys/fs/cgroup/unified uses a hybrid machine's empty v2 tree. */
  mode?: CgroupMode;
  /** The process owning the cgroup (default: this process); recorded in the name for stale cleanup. */
  owner?: ProcessIdentity;
}

type Located = { kind: 'v1'; root: string } | { kind: 'v2'; root: string; chain: string[] } | { kind: 'none'; why: string };

/** Decides where sandbox cgroups live for these options, or why there are none. */
async function locate(options: CgroupOptions): Promise<Located> {
  const root = options.root ?? CGROUP_ROOT;
  const mode = options.mode ?? (await detectCgroupMode(root));
  if (mode !== 'v2') {
    if (options.rootless) return { kind: 'none', why: `cgroups ${mode} cannot be delegated to an unprivileged user (only cgroup v2 can)` };
    return { kind: 'v1', root };
  }
  if (!options.rootless) return { kind: 'v2', root, chain: [root, join(root, CGROUP_PARENT)] };
  const own = (await readProcCgroups()).v2;
  if (own === undefined) return { kind: 'none', why: 'this process is in no cgroup v2 (see /proc/self/cgroup)' };
  const delegated = join(root, own);
  const writable = (await isWritable(delegated)) && (await isWritable(join(delegated, 'cgroup.procs'))) && (await isWritable(join(delegated, 'cgroup.subtree_control')));
  if (!writable) {
    return { kind: 'none', why: `the cgroup v2 subtree ${own} is not delegated to this user (start tsbuild with: systemd-run --user --scope -p Delegate=yes tsbuild ...)` };
  }
  if (own !== '/') await evacuateDelegatedCgroup(delegated);
  return { kind: 'v2', root, chain: [delegated, join(delegated, CGROUP_PARENT)] };
}

/**
 * Creates the cgroup of one sandbox (`name`: letters, digits, `_.-`) with `limits` applied, under a `tsbuild` parent.
 * Returns undefined when no cgroup can be used (rootless without a delegated v2 subtree), after one warning naming why
 * when limits were requested. The caller must `destroy()` it; a SIGKILLed owner's cgroups go at {@link cleanupStaleCgroups}.
 * Throws SANDBOX_BAD_LIMIT (invalid or unavailable limit) or SANDBOX_CGROUP.
 */
export async function createCgroup(name: string, limits: CgroupLimits, options: CgroupOptions): Promise<Cgroup | undefined> {
  validateLimits(limits);
  const warned = new Set<string>();
  const warn = (msg: string): void => {
    if (warned.has(msg)) return;
    warned.add(msg);
    options.onWarning?.(msg);
  };
  const located = await locate(options);
  if (located.kind === 'none') {
    if (hasLimits(limits)) warn(`running without resource limits: ${located.why}`);
    return undefined;
  }
  const owner = options.owner ?? (await readProcessIdentity(process.pid));
  if (owner === undefined) throw new TsbuildError('INTERNAL', 'cannot read this process\'s /proc/<pid>/stat');
  const dirName = formatCgroupDirName(name, owner);
  if (located.kind === 'v1') return createCgroupV1({ root: located.root, parent: CGROUP_PARENT, dirName }, limits, warn);
  return createCgroupV2({ chain: located.chain, dirName, mountRoot: located.root }, limits, warn);
}

/**
 * Opens an existing sandbox cgroup by its directory name under the `tsbuild` parent (e.g. one an OCI runtime made
 * from `linux.cgroupsPath`), to read its accounting or remove it; undefined when no cgroup can be used or it is gone.
 */
export async function openSandboxCgroup(dirName: string, options: CgroupOptions): Promise<Cgroup | undefined> {
  if (parseCgroupDirName(dirName) === undefined) throw new TsbuildError('INTERNAL', `"${dirName}" is not a sandbox cgroup name`);
  const located = await locate({ ...options, onWarning: () => undefined });
  if (located.kind === 'v1') {
    const dirs = new Map<string, string>();
    for (const [controller, mount] of await findV1Hierarchies(located.root)) {
      const dir = join(mount, CGROUP_PARENT, dirName);
      if ((await listDir(join(mount, CGROUP_PARENT))).includes(dirName)) dirs.set(controller, dir);
    }
    return dirs.size === 0 ? undefined : new CgroupV1(dirs);
  }
  if (located.kind === 'v2') {
    const parentDir = located.chain[located.chain.length - 1] as string;
    return (await listDir(parentDir)).includes(dirName) ? new CgroupV2(join(parentDir, dirName)) : undefined;
  }
  return undefined;
}

/**
 * The subdirectories of `dir`; with `named`, only the entries whose names tsbuild gives its cgroups (no file has
 * such a name): a v1 parent also holds its controller's files (up to ~40 each), and the names alone skip making
 * a Dirent of each (the sweep lists ten parents while a container starts: ~0.3 ms, and young garbage).
 */
async function listDir(dir: string, named = false): Promise<string[]> {
  try {
    // cgroupfs and /sys/fs/cgroup are in-kernel: a synchronous readdir costs microseconds (see cgroup-fs.ts).
    if (named) return readdirSync(dir).filter((name) => parseCgroupDirName(name) !== undefined);
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    throw new TsbuildError('SANDBOX_CGROUP', `cannot list ${dir}: ${errnoOf(err) ?? String(err)}`, { cause: err });
  }
}

/**
 * Removes the sandbox cgroups whose owner process is gone (a tsbuild that was SIGKILLed): kills what still runs in
 * them and removes the directories. Cgroups of live owners and directories tsbuild did not name are left alone.
 * With `ownerPid` only the cgroups of that (dead) owner are taken. One cgroup that cannot be removed does not stop
 * the others: every one is attempted, then the first failure is thrown. Returns the removed directories.
 * Call it at start-up.
 */
export async function cleanupStaleCgroups(options: CgroupOptions & { readonly ownerPid?: number }): Promise<string[]> {
  const located = await locate({ ...options, onWarning: () => undefined });
  const removed: string[] = [];
  const failures: unknown[] = [];
  const stale = async (dirName: string): Promise<boolean> => {
    const parsed = parseCgroupDirName(dirName);
    if (parsed === undefined || (options.ownerPid !== undefined && parsed.owner.pid !== options.ownerPid)) return false;
    return !(await isOwnerAlive(parsed.owner));
  };
  const attempt = async (dirs: string[], destroy: () => Promise<void>): Promise<void> => {
    try {
      await destroy();
      removed.push(...dirs);
    } catch (err) {
      failures.push(err);
    }
  };
  if (located.kind === 'v1') {
    const byName = new Map<string, Map<string, string>>();
    // Every hierarchy, not only those tsbuild limits: an OCI runtime also joins blkio, devices, name=systemd, unified.
    const hierarchies = new Map<string, string>(await findV1Hierarchies(located.root));
    for (const entry of await listDir(located.root)) if (!hierarchies.has(entry)) hierarchies.set(entry, join(located.root, entry));
    for (const [controller, mount] of hierarchies) {
      for (const dirName of await listDir(join(mount, CGROUP_PARENT), true)) {
        const dirs = byName.get(dirName) ?? new Map<string, string>();
        dirs.set(controller, join(mount, CGROUP_PARENT, dirName));
        byName.set(dirName, dirs);
      }
    }
    for (const [dirName, dirs] of byName) {
      if (await stale(dirName)) await attempt([...new Set(dirs.values())], () => new CgroupV1(dirs).destroy());
    }
  } else if (located.kind === 'v2') {
    const parentDir = located.chain[located.chain.length - 1] as string;
    for (const dirName of await listDir(parentDir, true)) {
      if (await stale(dirName)) await attempt([join(parentDir, dirName)], () => new CgroupV2(join(parentDir, dirName)).destroy());
    }
  }
  if (failures.length > 0) throw failures[0];
  return removed;
}
