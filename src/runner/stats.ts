import { readFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { openProcessCgroup, readCgroupStats } from '../sandbox/index.js';
import type { ContainerEntry } from './container-store.js';
import type { CgroupOpsDeps } from './pause.js';
import { requireRunning } from './pause.js';
import { containerPids } from './top.js';

/** One reading of a container's resource use (docker stats' raw numbers). */
export interface ContainerStatsSample {
  readonly id: string;
  readonly name: string;
  /** Monotonic time of the reading, in nanoseconds. */
  readonly timeNs: bigint;
  readonly cpuUsageNs: number;
  readonly memoryUsageBytes: number;
  /** The memory limit, or the host's memory when unlimited (as docker). */
  readonly memoryLimitBytes: number;
  readonly pids: number;
  readonly netRxBytes: number;
  readonly netTxBytes: number;
  readonly blockReadBytes: number;
  readonly blockWriteBytes: number;
}

/** Sums the receive and transmit bytes of `/proc/PID/net/dev` text over every interface but `lo`. */
export function parseNetDev(text: string): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim() === 'lo') continue;
    const f = line.slice(colon + 1).trim().split(/\s+/);
    rx += Number(f[0] ?? 0);
    tx += Number(f[8] ?? 0);
  }
  return { rx, tx };
}

/**
 * Reads a running container's accounting: cgroup CPU, memory, pids and block I/O, and the network
 * counters of its namespace (none with `--network host`, as docker). A container without a cgroup
 * reports zeros but for its pids (counted in its pid namespace). Throws RUN_NOT_RUNNING.
 */
export async function sampleContainerStats(deps: CgroupOpsDeps, entry: ContainerEntry): Promise<ContainerStatsSample> {
  const e = await requireRunning(deps.containers, entry);
  const cgroup = await openProcessCgroup(e.state.pid, { rootless: deps.rootless });
  const s = cgroup === undefined ? undefined : await readCgroupStats(cgroup);
  const net = e.config.network === 'host' ? { rx: 0, tx: 0 } : parseNetDev(await readFile(`/proc/${e.state.pid}/net/dev`, 'utf8').catch(() => ''));
  return {
    id: e.config.id,
    name: e.config.name,
    timeNs: process.hrtime.bigint(),
    cpuUsageNs: s?.cpuUsageNs ?? 0,
    memoryUsageBytes: s?.memoryUsageBytes ?? 0,
    memoryLimitBytes: Math.min(s?.memoryLimitBytes ?? Number.MAX_SAFE_INTEGER, totalmem()),
    pids: s?.pids ?? (await containerPids(deps, e.state.pid)).length,
    netRxBytes: net.rx,
    netTxBytes: net.tx,
    blockReadBytes: s?.blockReadBytes ?? 0,
    blockWriteBytes: s?.blockWriteBytes ?? 0,
  };
}

/** Docker's CPU %: CPU time used between two readings over the wall time between them (100 % = one CPU). */
export function cpuPercent(previous: ContainerStatsSample, current: ContainerStatsSample): number {
  const wall = Number(current.timeNs - previous.timeNs);
  const used = current.cpuUsageNs - previous.cpuUsageNs;
  return wall <= 0 || used <= 0 ? 0 : (used / wall) * 100;
}
