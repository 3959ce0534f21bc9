import { realpathSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import type { Cgroup, CgroupUsage } from './cgroup-types.js';
import { readProcCgroups } from './cgroup-detect.js';
import {
  killPids, moveProcess, listCgroupPids, makeCgroupDir, pathExists, pollUntil, readCgroupFile, readOptionalCgroupFile,
  removeCgroupDir, tryRemoveCgroupDir, waitCgroupEmpty, writeCgroupFile,
} from './cgroup-fs.js';
import type { CgroupLimits, CgroupWrite } from './cgroup-limits.js';
import { limitsToV1Writes, parseCpuset, parseKeyValueFile } from './cgroup-limits.js';

/** The v1 controllers a sandbox may join (blkio for the block I/O that `stats` reports; cpu and cpuset only for their limits). */
export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'cpuset', 'pids', 'freezer', 'blkio'] as const;
type V1Controller = (typeof V1_CONTROLLERS)[number];

/** Where to make a v1 cgroup: the cgroup mount root, the parent path inside each hierarchy, and the leaf name. */
export interface V1Location {
  readonly root: string;
  readonly parent: string;
  readonly dirName: string;
}

/** A sandbox cgroup in the v1 hierarchies: one directory per mounted controller (co-mounted ones share a directory). */
export class CgroupV1 implements Cgroup {
  readonly #dirs: ReadonlyMap<string, string>;
  /** The hierarchy mount of each directory (for releaseProcess); absent for a cgroup found rather than made. */
  readonly #mounts: ReadonlyMap<string, string>;
  #destroyed = false;

  constructor(dirs: ReadonlyMap<string, string>, mounts: ReadonlyMap<string, string> = new Map()) {
    this.#dirs = dirs;
    this.#mounts = mounts;
  }

  /** The directory of each joined controller (for tests and diagnostics). */
  get directories(): ReadonlyMap<string, string> {
    return this.#dirs;
  }

  #unique(): string[] {
    return [...new Set(this.#dirs.values())];
  }

  async addProcess(pid: number): Promise<void> {
    // One after the other: the first attach waits for the kernel's grace period, the next ones then pass at once
    // (in parallel they would each hold a thread-pool thread for that wait).
    for (const dir of this.#unique()) await moveProcess(dir, pid);
  }

  get procsFiles(): string[] {
    return this.#unique().map((dir) => join(dir, 'cgroup.procs'));
  }

  get selfJoinFiles(): string[] {
    return this.#unique().map((dir) => join(dir, 'tasks'));
  }

  async releaseProcess(pid: number): Promise<void> {
    const own = (await readProcCgroups()).v1;
    // One attach per directory: co-mounted controllers (cpu,cpuacct) share one, and each attach may wait a grace period.
    for (const dir of this.#unique()) {
      const mount = this.#mounts.get(dir);
      const controller = [...this.#dirs].find(([, d]) => d === dir)?.[0];
      const path = controller === undefined ? undefined : own.get(controller);
      if (mount === undefined || path === undefined) continue;
      await moveProcess(join(mount, path), pid, 'ignore');
    }
  }

  async usage(): Promise<CgroupUsage> {
    const cpuacct = this.#dirs.get('cpuacct');
    const memory = this.#dirs.get('memory');
    const cpuText = cpuacct === undefined ? undefined : await readOptionalCgroupFile(cpuacct, 'cpuacct.usage');
    const peakText = memory === undefined ? undefined : await readOptionalCgroupFile(memory, 'memory.max_usage_in_bytes');
    const oomText = memory === undefined ? undefined : await readOptionalCgroupFile(memory, 'memory.oom_control');
    const oomKills = oomText === undefined ? 0 : (parseKeyValueFile(oomText).get('oom_kill') ?? 0);
    return { cpuUsageNs: Number(cpuText ?? 0), memoryPeakBytes: Number(peakText ?? 0), oomKilled: oomKills > 0 };
  }

  async freeze(): Promise<void> {
    const dir = this.#freezerDir();
    await writeCgroupFile(dir, 'freezer.state', 'FROZEN');
    await pollUntil(async () => (await readCgroupFile(dir, 'freezer.state')).trim() === 'FROZEN', `${dir} to freeze`);
  }

  async thaw(): Promise<void> {
    const dir = this.#freezerDir();
    await writeCgroupFile(dir, 'freezer.state', 'THAWED');
    await pollUntil(async () => (await readCgroupFile(dir, 'freezer.state')).trim() === 'THAWED', `${dir} to thaw`);
  }

  #freezerDir(): string {
    const dir = this.#dirs.get('freezer');
    if (dir === undefined) throw new TsbuildError('SANDBOX_CGROUP', 'the cgroup v1 freezer controller is not mounted; cannot pause');
    return dir;
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    // Usually every process has ended (the sandbox waited for its launcher): the rmdirs succeed, nothing is read or killed.
    const dirs = this.#unique().filter((dir) => !tryRemoveCgroupDir(dir));
    const freezer = [this.#dirs.get('freezer')].find((d) => d !== undefined && dirs.includes(d));
    const probe = freezer ?? dirs[0];
    if (probe !== undefined && (await listCgroupPids(probe)).length > 0) {
      // Freeze first so nothing can fork while we kill (a fork bomb would otherwise outrun the loop).
      if (freezer !== undefined) await writeCgroupFile(freezer, 'freezer.state', 'FROZEN').catch(() => undefined);
      for (const dir of dirs) killPids(await listCgroupPids(dir));
      if (freezer !== undefined) await writeCgroupFile(freezer, 'freezer.state', 'THAWED').catch(() => undefined);
    }
    await Promise.all(dirs.map((dir) => waitCgroupEmpty(dir)));
    await Promise.all(dirs.map((dir) => removeCgroupDir(dir)));
    this.#destroyed = true;
  }
}

/** Finds the mounted v1 controllers under `root`: controller -> hierarchy mount directory (realpath, so co-mounts match). */
export async function findV1Hierarchies(root: string): Promise<Map<V1Controller, string>> {
  const found = await Promise.all(V1_CONTROLLERS.map(async (c) => {
    const dir = join(root, c);
    // The native realpath: one system call, where the JavaScript one lstats every component (7 hierarchies per run).
    return (await pathExists(join(dir, 'cgroup.procs'))) ? ([c, realpathSync.native(dir)] as const) : undefined;
  }));
  return new Map(found.filter((f) => f !== undefined));
}

/** Copies cpuset.cpus/mems from the parent when unset: v1 refuses tasks in a cpuset with empty cpus or mems. */
async function initCpuset(dir: string, parentDir: string, cpus: string | undefined): Promise<void> {
  const parentCpus = (await readCgroupFile(parentDir, 'cpuset.cpus')).trim();
  if (cpus !== undefined) {
    const available = new Set(parseCpuset(parentCpus));
    const missing = parseCpuset(cpus).filter((c) => !available.has(c));
    if (missing.length > 0) {
      throw new TsbuildError('SANDBOX_BAD_LIMIT', `invalid --cpuset-cpus "${cpus}": requested CPUs are not available (available: ${parentCpus})`, { exitCode: 125 });
    }
  }
  if ((await readCgroupFile(dir, 'cpuset.cpus')).trim() === '' || cpus !== undefined) {
    await writeCgroupFile(dir, 'cpuset.cpus', cpus ?? parentCpus);
  }
  if ((await readCgroupFile(dir, 'cpuset.mems')).trim() === '') {
    await writeCgroupFile(dir, 'cpuset.mems', (await readCgroupFile(parentDir, 'cpuset.mems')).trim());
  }
}

/**
 * Creates the sandbox cgroup in every mounted v1 hierarchy under `<root>/<controller>/<parent>/<dirName>` and writes
 * the limits. A limit whose controller or file is missing is reported through `warn` and skipped (Docker's behaviour).
 * On failure everything created here is removed again. Throws SANDBOX_BAD_LIMIT or SANDBOX_CGROUP.
 */
export async function createCgroupV1(loc: V1Location, limits: CgroupLimits, warn: (msg: string) => void): Promise<CgroupV1> {
  // Every v1 attach and mkdir costs per hierarchy: cpu and cpuset are joined only for their limits (stats, top, pause
  // and exec read memory, cpuacct, pids, freezer and blkio). Co-mounted controllers still share one directory.
  const wanted = new Set<V1Controller>(['memory', 'cpuacct', 'pids', 'freezer', 'blkio']);
  if (limits.cpus !== undefined || limits.cpuShares !== undefined) wanted.add('cpu');
  if (limits.cpusetCpus !== undefined) wanted.add('cpuset');
  const hierarchies = new Map([...(await findV1Hierarchies(loc.root))].filter(([c]) => wanted.has(c)));
  if (limits.cpus !== undefined && limits.cpus > availableParallelism()) {
    throw new TsbuildError('SANDBOX_BAD_LIMIT', `invalid --cpus "${limits.cpus}": the range is 0.01 to ${availableParallelism()}, as there are only ${availableParallelism()} CPUs`, { exitCode: 125 });
  }
  // Co-mounted controllers (cpu,cpuacct) share one directory; hierarchies are set up in parallel.
  const byMount = new Map<string, V1Controller[]>();
  for (const [controller, mount] of hierarchies) byMount.set(mount, [...(byMount.get(mount) ?? []), controller]);
  const dirs = new Map<V1Controller, string>();
  const mounts = new Map<string, string>();
  const cgroup = new CgroupV1(dirs, mounts);
  try {
    const made = await Promise.allSettled([...byMount].map(async ([mount, controllers]) => {
      const parentDir = join(mount, loc.parent);
      const dir = join(parentDir, loc.dirName);
      // The tsbuild parent exists after the first run: made without a thrown EEXIST (an error with a stack each time).
      if (!(await pathExists(parentDir))) await makeCgroupDir(parentDir);
      if (controllers.includes('cpuset')) await initCpuset(parentDir, mount, undefined);
      if (!(await makeCgroupDir(dir))) throw new TsbuildError('SANDBOX_CGROUP', `cgroup ${dir} already exists`);
      for (const c of controllers) dirs.set(c, dir);
      mounts.set(dir, mount);
      if (controllers.includes('cpuset')) await initCpuset(dir, parentDir, limits.cpusetCpus);
    }));
    const failure = made.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
    if (limits.cpusetCpus !== undefined && !dirs.has('cpuset')) warn('the cpuset cgroup controller is not mounted: --cpuset-cpus discarded');
    // Writes stay in order within a controller (memory before memsw), controllers go in parallel.
    const byController = new Map<string, CgroupWrite[]>();
    for (const w of limitsToV1Writes(limits)) byController.set(w.controller, [...(byController.get(w.controller) ?? []), w]);
    await Promise.all([...byController].map(async ([controller, writes]) => {
      const dir = dirs.get(controller as V1Controller);
      if (dir === undefined) {
        warn(`the ${controller} cgroup controller is not mounted: ${writes.map((w) => w.file).join(', ')} not applied`);
        return;
      }
      for (const w of writes) {
        try {
          await writeCgroupFile(dir, w.file, w.value);
        } catch (err) {
          if (await pathExists(join(dir, w.file))) throw err;
          warn(`${w.file} is not supported by this kernel${w.file.includes('memsw') ? ' (swap accounting is off)' : ''}: limit not applied`);
        }
      }
    }));
    if (limits.oomKillDisable === true && (limits.memory ?? 0) <= 0) {
      warn('the OOM killer is disabled but no memory limit is set: the process may exhaust the host memory');
    }
    return cgroup;
  } catch (err) {
    await cgroup.destroy().catch(() => undefined);
    throw err;
  }
}
