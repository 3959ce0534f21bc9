import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { readProcCgroups } from './cgroup-detect.js';
import type { Cgroup, CgroupUsage } from './cgroup-types.js';
import {
  errnoOf, killPids, listCgroupPids, moveProcess, makeCgroupDir, pathExists, pollUntil, readCgroupFile, readOptionalCgroupFile,
  removeCgroupDir, tryRemoveCgroupDir, waitCgroupEmpty, writeCgroupFile,
} from './cgroup-fs.js';
import type { CgroupLimits } from './cgroup-limits.js';
import { limitsToV2Writes, parseCpuset, parseKeyValueFile } from './cgroup-limits.js';

/** The v2 controllers a sandbox uses (cpuset only when `cpusetCpus` is set). */
export const V2_CONTROLLERS = ['cpu', 'memory', 'pids', 'cpuset'] as const;

/** Where to make a v2 cgroup: the chain of directories whose subtree_control must enable controllers, and the leaf. */
export interface V2Location {
  /** From the topmost directory we may configure down to the sandbox's parent (inclusive). */
  readonly chain: readonly string[];
  readonly dirName: string;
  /** The unified hierarchy's mount (for releaseProcess). */
  readonly mountRoot?: string;
}

/** Parses `cgroup.controllers` / `cgroup.subtree_control` text: the space-separated controller names. */
export function parseControllerList(text: string): string[] {
  return text.trim().split(/\s+/).filter((c) => c !== '');
}

/** A sandbox cgroup in the unified (v2) hierarchy: one directory. */
export class CgroupV2 implements Cgroup {
  readonly #dir: string;
  readonly #mountRoot: string | undefined;
  #destroyed = false;

  constructor(dir: string, mountRoot?: string) {
    this.#dir = dir;
    this.#mountRoot = mountRoot;
  }

  /** The cgroup directory (for tests and diagnostics). */
  get directory(): string {
    return this.#dir;
  }

  async addProcess(pid: number): Promise<void> {
    await moveProcess(this.#dir, pid);
  }

  get procsFiles(): string[] {
    return [join(this.#dir, 'cgroup.procs')];
  }

  get selfJoinFiles(): undefined {
    return undefined;
  }

  async releaseProcess(pid: number): Promise<void> {
    const own = (await readProcCgroups()).v2;
    if (this.#mountRoot === undefined || own === undefined) throw new TsbuildError('INTERNAL', `no cgroup to move process ${pid} back to from ${this.#dir}`);
    await moveProcess(join(this.#mountRoot, own), pid, 'ignore');
  }

  async usage(): Promise<CgroupUsage> {
    const cpu = parseKeyValueFile((await readOptionalCgroupFile(this.#dir, 'cpu.stat')) ?? '');
    const peak = (await readOptionalCgroupFile(this.#dir, 'memory.peak')) ?? (await readOptionalCgroupFile(this.#dir, 'memory.current'));
    const events = parseKeyValueFile((await readOptionalCgroupFile(this.#dir, 'memory.events')) ?? '');
    return {
      cpuUsageNs: (cpu.get('usage_usec') ?? 0) * 1000,
      memoryPeakBytes: peak === undefined ? 0 : Number(peak.trim()),
      oomKilled: (events.get('oom_kill') ?? 0) > 0,
    };
  }

  async freeze(): Promise<void> {
    await this.#setFrozen(true);
  }

  async thaw(): Promise<void> {
    await this.#setFrozen(false);
  }

  async #setFrozen(frozen: boolean): Promise<void> {
    if (!(await pathExists(join(this.#dir, 'cgroup.freeze')))) {
      throw new TsbuildError('SANDBOX_CGROUP', 'this kernel has no cgroup.freeze (needs Linux 5.2); cannot pause');
    }
    await writeCgroupFile(this.#dir, 'cgroup.freeze', frozen ? '1' : '0');
    const want = frozen ? 1 : 0;
    await pollUntil(async () => parseKeyValueFile(await readCgroupFile(this.#dir, 'cgroup.events')).get('frozen') === want, `${this.#dir} to ${frozen ? 'freeze' : 'thaw'}`);
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    // Usually every process has ended (the sandbox waited for its launcher): the rmdir succeeds, nothing is killed.
    if (tryRemoveCgroupDir(this.#dir)) {
      this.#destroyed = true;
      return;
    }
    if (await pathExists(join(this.#dir, 'cgroup.kill'))) {
      await writeCgroupFile(this.#dir, 'cgroup.kill', '1');
    } else if (await pathExists(join(this.#dir, 'cgroup.freeze'))) {
      // Freeze first so nothing can fork while we kill.
      await writeCgroupFile(this.#dir, 'cgroup.freeze', '1').catch(() => undefined);
      killPids(await listCgroupPids(this.#dir));
      await writeCgroupFile(this.#dir, 'cgroup.freeze', '0').catch(() => undefined);
    }
    await waitCgroupEmpty(this.#dir);
    await removeCgroupDir(this.#dir);
    this.#destroyed = true;
  }
}

/** Enables `wanted` controllers in each directory's subtree_control, top-down; returns those enabled at the bottom. */
async function enableControllers(chain: readonly string[], wanted: readonly string[], warn: (msg: string) => void): Promise<Set<string>> {
  let enabled = new Set<string>(wanted);
  for (const dir of chain) {
    await makeCgroupDir(dir);
    const available = new Set(parseControllerList(await readCgroupFile(dir, 'cgroup.controllers')));
    const current = new Set(parseControllerList(await readCgroupFile(dir, 'cgroup.subtree_control')));
    const next = [...enabled].filter((c) => available.has(c));
    const toAdd = next.filter((c) => !current.has(c));
    if (toAdd.length > 0) {
      try {
        await writeCgroupFile(dir, 'cgroup.subtree_control', toAdd.map((c) => `+${c}`).join(' '));
      } catch (err) {
        const busy = err instanceof TsbuildError && err.cause !== undefined && errnoOf(err.cause) === 'EBUSY';
        warn(`cannot enable cgroup controllers ${toAdd.join(', ')} in ${dir}${busy ? ' (it holds processes itself)' : ''}: limits not applied`);
        return new Set([...current].filter((c) => enabled.has(c)));
      }
    }
    enabled = new Set(next);
  }
  return enabled;
}

/**
 * Creates the sandbox cgroup `<chain[-1]>/<dirName>` in the unified hierarchy and writes the limits. Controllers the
 * hierarchy does not offer (e.g. bound to v1 on a hybrid machine) are reported through `warn` and their limits skipped.
 * Throws SANDBOX_BAD_LIMIT or SANDBOX_CGROUP; on failure the new cgroup is removed again.
 */
export async function createCgroupV2(loc: V2Location, limits: CgroupLimits, warn: (msg: string) => void): Promise<CgroupV2> {
  const parentDir = loc.chain[loc.chain.length - 1];
  if (parentDir === undefined) throw new TsbuildError('INTERNAL', 'empty cgroup v2 location');
  if (limits.cpus !== undefined && limits.cpus > availableParallelism()) {
    throw new TsbuildError('SANDBOX_BAD_LIMIT', `invalid --cpus "${limits.cpus}": the range is 0.01 to ${availableParallelism()}, as there are only ${availableParallelism()} CPUs`, { exitCode: 125 });
  }
  const wanted = V2_CONTROLLERS.filter((c) => c !== 'cpuset' || limits.cpusetCpus !== undefined);
  const enabled = await enableControllers(loc.chain, wanted, warn);
  const dir = join(parentDir, loc.dirName);
  if (!(await makeCgroupDir(dir))) throw new TsbuildError('SANDBOX_CGROUP', `cgroup ${dir} already exists`);
  const cgroup = new CgroupV2(dir, loc.mountRoot);
  try {
    const writes = limitsToV2Writes(limits);
    if (limits.cpusetCpus !== undefined) writes.push({ controller: 'cpuset', file: 'cpuset.cpus', value: limits.cpusetCpus });
    if (limits.oomKillDisable === true) warn('--oom-kill-disable is not supported on cgroup v2: ignored');
    const missing = new Set<string>();
    for (const w of writes) {
      if (!enabled.has(w.controller)) {
        missing.add(w.controller);
      } else if (!(await pathExists(join(dir, w.file)))) {
        warn(`${w.file} is not supported by this kernel${w.file.includes('swap') ? ' (swap accounting is off)' : ''}: limit not applied`);
      } else {
        if (w.controller === 'cpuset') await checkCpusetAvailable(parentDir, w.value);
        await writeCgroupFile(dir, w.file, w.value);
      }
    }
    if (missing.size > 0) warn(`cgroup v2 controllers ${[...missing].join(', ')} are not available in ${parentDir}: their limits are not applied`);
    return cgroup;
  } catch (err) {
    await cgroup.destroy().catch(() => undefined);
    throw err;
  }
}

async function checkCpusetAvailable(parentDir: string, cpus: string): Promise<void> {
  const text = (await readOptionalCgroupFile(parentDir, 'cpuset.cpus.effective'))?.trim();
  if (text === undefined || text === '') return;
  const available = new Set(parseCpuset(text));
  if (parseCpuset(cpus).some((c) => !available.has(c))) {
    throw new TsbuildError('SANDBOX_BAD_LIMIT', `invalid --cpuset-cpus "${cpus}": requested CPUs are not available (available: ${text})`, { exitCode: 125 });
  }
}

/**
 * Rootless on v2: makes `delegated` (the caller's own, writable cgroup) usable as a parent. The "no internal processes"
 * rule forbids enabling controllers in a cgroup that holds processes, so the processes of `delegated` (tsbuild itself)
 * move into a leaf `tsbuild-init` first, as rootlesskit does. Never done on the root cgroup.
 */
export async function evacuateDelegatedCgroup(delegated: string): Promise<void> {
  const pids = await listCgroupPids(delegated);
  if (pids.length === 0) return;
  const leaf = join(delegated, 'tsbuild-init');
  await makeCgroupDir(leaf);
  for (const pid of pids) {
    try {
      await writeCgroupFile(leaf, 'cgroup.procs', String(pid));
    } catch (err) {
      if (!(err instanceof TsbuildError && errnoOf(err.cause) === 'ESRCH')) throw err;
    }
  }
}
