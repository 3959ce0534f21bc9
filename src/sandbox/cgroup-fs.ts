// cgroupfs is an in-kernel pseudo file system: its reads, writes, mkdir and rmdir complete in microseconds and never
// wait for a disk, so this file uses synchronous calls. A thread-pool round trip per call (4 per readFile) made a
// sandbox cgroup cost ~5 ms to create, half the sandbox start-up budget; synchronous calls make it well under 1 ms.
import { accessSync, constants, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TsbuildError } from '../core/index.js';

/** The errno code of a Node error, if any. */
export function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** Writes one value into a cgroup interface file; throws SANDBOX_BAD_LIMIT on EINVAL/ERANGE, SANDBOX_CGROUP otherwise. */
export async function writeCgroupFile(dir: string, file: string, value: string): Promise<void> {
  const path = join(dir, file);
  try {
    writeFileSync(path, value);
  } catch (err) {
    const code = errnoOf(err);
    const bad = code === 'EINVAL' || code === 'ERANGE';
    throw new TsbuildError(bad ? 'SANDBOX_BAD_LIMIT' : 'SANDBOX_CGROUP', `cannot write "${value}" to ${path}: ${code ?? String(err)}`, { cause: err });
  }
}

/**
 * Moves process `pid` into the cgroup `dir` (its `cgroup.procs`). The one asynchronous write here: an attach waits
 * for an RCU grace period in the kernel (cgroup_threadgroup_rwsem, 5-30 ms on this machine's v1 hierarchies), which
 * must not stall the event loop. With `gone: 'ignore'` a process that has ended (ESRCH) is no error.
 * Throws SANDBOX_CGROUP naming the file.
 */
export async function moveProcess(dir: string, pid: number, gone: 'throw' | 'ignore' = 'throw'): Promise<void> {
  const path = join(dir, 'cgroup.procs');
  try {
    await writeFile(path, String(pid));
  } catch (err) {
    if (gone === 'ignore' && errnoOf(err) === 'ESRCH') return;
    throw new TsbuildError('SANDBOX_CGROUP', `cannot move process ${pid} into ${dir}: ${errnoOf(err) ?? String(err)}`, { cause: err });
  }
}

/** Reads a cgroup interface file as text; throws SANDBOX_CGROUP naming the path. */
export async function readCgroupFile(dir: string, file: string): Promise<string> {
  const path = join(dir, file);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TsbuildError('SANDBOX_CGROUP', `cannot read ${path}: ${errnoOf(err) ?? String(err)}`, { cause: err });
  }
}

/** Reads a cgroup interface file, or undefined when it does not exist (older kernels, missing accounting). */
export async function readOptionalCgroupFile(dir: string, file: string): Promise<string | undefined> {
  try {
    return readFileSync(join(dir, file), 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw new TsbuildError('SANDBOX_CGROUP', `cannot read ${join(dir, file)}: ${errnoOf(err) ?? String(err)}`, { cause: err });
  }
}

/** True when `path` exists. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    accessSync(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** True when the caller may write `path` (used to detect a delegated cgroup v2 subtree). */
export async function isWritable(path: string): Promise<boolean> {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Creates a cgroup directory; an existing one is reused (returns false), a new one returns true. */
export async function makeCgroupDir(path: string): Promise<boolean> {
  try {
    mkdirSync(path);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') return false;
    throw new TsbuildError('SANDBOX_CGROUP', `cannot create cgroup ${path}: ${errnoOf(err) ?? String(err)}`, { cause: err });
  }
}

/** The pids listed in a cgroup's `cgroup.procs` (empty when the cgroup is gone). */
export async function listCgroupPids(dir: string): Promise<number[]> {
  const text = await readOptionalCgroupFile(dir, 'cgroup.procs');
  if (text === undefined) return [];
  return text.split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
}

/** Sends SIGKILL to every pid, ignoring processes that are already gone. */
export function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if (errnoOf(err) !== 'ESRCH') throw new TsbuildError('SANDBOX_CGROUP', `cannot kill process ${pid}: ${errnoOf(err) ?? String(err)}`, { cause: err });
    }
  }
}

/** Waits until no process is left in the cgroup `dir`, killing stragglers; throws SANDBOX_CGROUP after `timeoutMs`. */
export async function waitCgroupEmpty(dir: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
    const pids = await listCgroupPids(dir);
    if (pids.length === 0) return;
    if (Date.now() > deadline) throw new TsbuildError('SANDBOX_CGROUP', `processes ${pids.join(', ')} in ${dir} did not exit after SIGKILL`);
    killPids(pids);
    await sleep(delay);
  }
}

/**
 * Removes a cgroup directory if nothing is left in it: true when removed (or absent), false when the kernel reports
 * it busy (processes or child cgroups remain). Throws SANDBOX_CGROUP for anything else.
 */
export function tryRemoveCgroupDir(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT') return true;
    if (code === 'EBUSY') return false;
    throw new TsbuildError('SANDBOX_CGROUP', `cannot remove cgroup ${dir}: ${code ?? String(err)}`, { cause: err });
  }
}

/** Removes a cgroup directory, retrying while the kernel still reports it busy (exiting tasks); absent is fine. */
export async function removeCgroupDir(dir: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; !tryRemoveCgroupDir(dir); delay = Math.min(delay * 2, 50)) {
    if (Date.now() > deadline) throw new TsbuildError('SANDBOX_CGROUP', `cannot remove cgroup ${dir}: EBUSY`);
    await sleep(delay);
  }
}

/** Polls `check` until it returns true; throws SANDBOX_CGROUP with `what` after `timeoutMs`. */
export async function pollUntil(check: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; !(await check()); delay = Math.min(delay * 2, 20)) {
    if (Date.now() > deadline) throw new TsbuildError('SANDBOX_CGROUP', `timed out waiting for ${what}`);
    await sleep(delay);
  }
}
