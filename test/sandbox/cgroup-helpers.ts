import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The host's static busybox (package busybox-static), used as a portable shell for workloads. */
export const BUSYBOX = '/bin/busybox';

/** Why real cgroup v1 tests cannot run here, or undefined when they can. */
export function v1Unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'cgroup tests need root';
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'the machine uses cgroup v2 only (no v1 hierarchies)';
  if (!existsSync('/sys/fs/cgroup/memory/cgroup.procs')) return 'no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory';
  if (!existsSync(BUSYBOX)) return 'busybox-static is not installed';
  return undefined;
}

/** A workload that blocks until {@link Workload.go} so it can be put into a cgroup before it does anything. */
export interface Workload {
  readonly child: ChildProcess;
  readonly pid: number;
  go(): void;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `busybox sh -c 'read go; SCRIPT'`; killed at teardown if still running. */
export function spawnWorkload(t: ExecutionContext, script: string): Workload {
  const child = spawn(BUSYBOX, ['sh', '-c', `read go; ${script}`], { stdio: ['pipe', 'ignore', 'ignore'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  if (child.pid === undefined) throw new Error('spawn failed');
  return { child, pid: child.pid, exited, go: () => child.stdin?.end('go\n') };
}

/** Polls `check` every 20 ms for up to `ms`; returns its last value. */
export async function waitFor(check: () => boolean, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** Every cgroup directory under a `tsbuild` parent that this process owns (name contains `.owner-<pid>-`). */
export function ownedCgroupDirs(roots: readonly string[], pid = process.pid): string[] {
  const out: string[] = [];
  for (const root of roots) {
    const parent = join(root, 'tsbuild');
    if (!existsSync(parent)) continue;
    for (const name of readdirSync(parent)) if (name.includes(`.owner-${pid}-`)) out.push(join(parent, name));
  }
  return out;
}

/** The v1 hierarchies (and the hybrid v2 tree) tsbuild uses on this machine. */
export const CGROUP_ROOTS = ['memory', 'cpu', 'cpuacct', 'cpuset', 'pids', 'freezer', 'unified'].map((c) => join('/sys/fs/cgroup', c));
