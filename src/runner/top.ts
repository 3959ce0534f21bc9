import { readFile, readdir, readlink } from 'node:fs/promises';
import { listCgroupProcesses, openProcessCgroup } from '../sandbox/index.js';
import type { ContainerEntry } from './container-store.js';
import type { CgroupOpsDeps } from './pause.js';
import { requireRunning } from './pause.js';

/** The processes of a container as `ps -ef` shows them (host pids, as docker top). */
export interface ProcessTable {
  readonly titles: readonly string[];
  readonly processes: readonly (readonly string[])[];
}

/** Clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on every Linux ABI Node runs on). */
const USER_HZ = 100;

/** The host pids of a running container's processes: its cgroup's, else those sharing its pid namespace. */
export async function containerPids(deps: CgroupOpsDeps, pid: number): Promise<number[]> {
  const cgroup = await openProcessCgroup(pid, { rootless: deps.rootless });
  if (cgroup !== undefined) return listCgroupProcesses(cgroup);
  const ns = await readlink(`/proc/${pid}/ns/pid`).catch(() => undefined);
  const out: number[] = [];
  for (const n of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(n)) continue;
    if (ns !== undefined && (await readlink(`/proc/${n}/ns/pid`).catch(() => '')) === ns) out.push(Number(n));
  }
  return out;
}

function two(n: number): string {
  return String(n).padStart(2, '0');
}

/** `ps`'s TIME: cumulative CPU time as [DD-]HH:MM:SS. */
export function formatCpuTime(ticks: number): string {
  let s = Math.floor(ticks / USER_HZ);
  const days = Math.floor(s / 86400);
  s -= days * 86400;
  const text = `${two(Math.floor(s / 3600))}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return days > 0 ? `${days}-${text}` : text;
}

/** `ps`'s TTY from the stat tty_nr: `pts/N`, `ttyN` or `?`. */
export function formatTty(ttyNr: number): string {
  if (ttyNr === 0) return '?';
  const major = (ttyNr >> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
  if (major >= 136 && major <= 143) return `pts/${(major - 136) * 256 + minor}`;
  if (major === 4) return `tty${minor}`;
  return '?';
}

/**
 * Lists a running container's processes with `ps -ef` columns (UID PID PPID C STIME TTY TIME CMD),
 * read from /proc; `passwd` is the host's user table for the UID column. Throws RUN_NOT_RUNNING.
 */
export async function listContainerProcesses(deps: CgroupOpsDeps, entry: ContainerEntry, now: Date = new Date(), passwdPath = '/etc/passwd'): Promise<ProcessTable> {
  const e = await requireRunning(deps.containers, entry);
  const names = new Map<number, string>();
  for (const line of (await readFile(passwdPath, 'utf8').catch(() => '')).split('\n')) {
    const [name, , uid] = line.split(':');
    if (name !== undefined && uid !== undefined && /^\d+$/.test(uid) && !names.has(Number(uid))) names.set(Number(uid), name);
  }
  const procStat = await readFile('/proc/stat', 'utf8').catch(() => '');
  const bootTime = Number(/^btime (\d+)$/m.exec(procStat)?.[1] ?? 0);
  const uptime = Number((await readFile('/proc/uptime', 'utf8').catch(() => '0')).split(' ')[0]);
  const rows: string[][] = [];
  for (const pid of await containerPids(deps, e.state.pid)) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
    if (stat === undefined || status === undefined) continue; // ended meanwhile
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(f[1]);
    const ttyNr = Number(f[4]);
    const cpuTicks = Number(f[11]) + Number(f[12]);
    const startTicks = Number(f[19]);
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    const elapsed = uptime - startTicks / USER_HZ;
    const c = elapsed > 0 ? Math.floor(((cpuTicks / USER_HZ) / elapsed) * 100) : 0;
    const started = new Date((bootTime + startTicks / USER_HZ) * 1000);
    const stime = started.toDateString() === now.toDateString()
      ? `${two(started.getHours())}:${two(started.getMinutes())}`
      : `${started.toLocaleString('en-US', { month: 'short' })}${two(started.getDate())}`;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
    const cmd = cmdline.length === 0 ? `[${comm}]` : cmdline.join(' ');
    rows.push([names.get(uid) ?? String(uid), String(pid), String(ppid), String(c), stime, formatTty(ttyNr), formatCpuTime(cpuTicks), cmd]);
  }
  return { titles: ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD'], processes: rows };
}
