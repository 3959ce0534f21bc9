import { stat } from 'node:fs/promises';
import { TsbuildError } from '../core/index.js';
import { isProcessFrozen, openProcessCgroup, type Cgroup } from '../sandbox/index.js';
import type { ContainerEntry, ContainerStore } from './container-store.js';
import { withPid } from './control.js';
import { isProcessAlive } from './process-info.js';
import { isContainerRunning } from './runner.js';

/** What pause, unpause and stats need. */
export interface CgroupOpsDeps {
  readonly containers: ContainerStore;
  /** True when not root (where sandbox cgroups live). */
  readonly rootless: boolean;
}

/**
 * Waits (up to 10 s) until process `pid` has its own root, i.e. the sandbox has finished setting
 * it up (cgroup attached, root pivoted); false when it did not or is gone.
 * SECURITY: before that its /proc/PID/root and mount namespace still show the host's root.
 */
export async function waitForContainerRoot(pid: number): Promise<boolean> {
  const host = await stat('/').catch(() => undefined);
  for (let i = 0; i < 500; i++) {
    const root = await stat(`/proc/${pid}/root`).catch(() => undefined);
    if (root === undefined) return false;
    if (host === undefined || root.ino !== host.ino || root.dev !== host.dev) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** A running container (its root set up) with its first process's pid checked against reuse; throws RUN_NOT_RUNNING. */
export async function requireRunning(containers: ContainerStore, entry: ContainerEntry): Promise<ContainerEntry> {
  const e = await withPid(containers, entry);
  if (!isContainerRunning(e.state) || e.state.pid === 0 || !isProcessAlive(e.state.pid, e.state.pidStartTime) || !(await waitForContainerRoot(e.state.pid))) {
    throw new TsbuildError('RUN_NOT_RUNNING', `container ${e.config.id} is not running`, { exitCode: 1 });
  }
  return e;
}

/** The cgroup of a running container; throws RUN_NOT_RUNNING, RUN_NO_CGROUP (rootless without a delegated cgroup v2). */
export async function openContainerCgroup(deps: CgroupOpsDeps, entry: ContainerEntry, action: string): Promise<{ entry: ContainerEntry; cgroup: Cgroup }> {
  const e = await requireRunning(deps.containers, entry);
  const cgroup = await openProcessCgroup(e.state.pid, { rootless: deps.rootless });
  if (cgroup === undefined) {
    throw new TsbuildError('RUN_NO_CGROUP', `cannot ${action} container ${e.config.id.slice(0, 12)}: it runs without a cgroup`, {
      hint: deps.rootless ? 'rootless containers get a cgroup only on a delegated cgroup v2 (systemd-run --user --scope -p Delegate=yes tsbuild ...)' : 'the cgroup file systems are not mounted',
      exitCode: 1,
    });
  }
  return { entry: e, cgroup };
}

/** True when the container runs and its cgroup is frozen (docker's "Paused"). */
export function isContainerPaused(entry: ContainerEntry): boolean {
  return isContainerRunning(entry.state) && entry.state.pid > 0 && isProcessFrozen(entry.state.pid);
}

/** Freezes every process of a running container (cgroup freezer). Throws RUN_NOT_RUNNING, RUN_PAUSED, RUN_NO_CGROUP. */
export async function pauseContainer(deps: CgroupOpsDeps, entry: ContainerEntry): Promise<void> {
  const { entry: e, cgroup } = await openContainerCgroup(deps, entry, 'pause');
  if (isContainerPaused(e)) throw new TsbuildError('RUN_PAUSED', `container ${e.config.id} is already paused`, { exitCode: 1 });
  await cgroup.freeze();
}

/** Thaws a paused container. Throws RUN_NOT_RUNNING, RUN_NOT_PAUSED, RUN_NO_CGROUP. */
export async function unpauseContainer(deps: CgroupOpsDeps, entry: ContainerEntry): Promise<void> {
  const { entry: e, cgroup } = await openContainerCgroup(deps, entry, 'unpause');
  if (!isContainerPaused(e)) throw new TsbuildError('RUN_NOT_PAUSED', `container ${e.config.id} is not paused`, { exitCode: 1 });
  await cgroup.thaw();
}
