import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { isPidRunning } from '../sys/index.js';
import { pathExists } from './cgroup-fs.js';

/** How the machine mounts cgroups: v1 only, v2 only (unified), or hybrid (v1 controllers plus an empty v2 tree). */
export type CgroupMode = 'v1' | 'v2' | 'hybrid';

/** The default mount point of the cgroup file systems. */
export const CGROUP_ROOT = '/sys/fs/cgroup';

/** Detects the cgroup layout under `root` (default /sys/fs/cgroup) at run time. */
export async function detectCgroupMode(root: string = CGROUP_ROOT): Promise<CgroupMode> {
  if (await pathExists(join(root, 'cgroup.controllers'))) return 'v2';
  if (await pathExists(join(root, 'unified', 'cgroup.controllers'))) return 'hybrid';
  return 'v1';
}

/** A process's cgroup memberships from `/proc/<pid>/cgroup`: v1 controller -> path, and the v2 path. */
export interface ProcCgroups {
  readonly v1: ReadonlyMap<string, string>;
  readonly v2: string | undefined;
}

/** Parses the text of `/proc/<pid>/cgroup` (`id:controllers:path` lines). */
export function parseProcCgroup(text: string): ProcCgroups {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m === null) continue;
    const controllers = m[2] as string;
    const path = m[3] as string;
    if (m[1] === '0' && controllers === '') v2 = path;
    else for (const c of controllers.split(',')) if (c !== '') v1.set(c, path);
  }
  return { v1, v2 };
}

/** Reads the cgroup memberships of process `pid` (default: this process). */
export async function readProcCgroups(pid: number | 'self' = 'self'): Promise<ProcCgroups> {
  try {
    // /proc is a pseudo file system: a synchronous read costs microseconds (see cgroup-fs.ts).
    return parseProcCgroup(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
  } catch (err) {
    throw new TsbuildError('SANDBOX_CGROUP', `cannot read /proc/${pid}/cgroup`, { cause: err });
  }
}

/** Identity of a live process that survives pid reuse: its pid and its start time (clock ticks since boot). */
export interface ProcessIdentity {
  readonly pid: number;
  readonly startTime: number;
}

/** Parses field 22 (starttime) of a `/proc/<pid>/stat` line; the command name may contain spaces and parentheses. */
export function parseStartTime(statLine: string): number {
  const afterComm = statLine.slice(statLine.lastIndexOf(')') + 2);
  const value = afterComm.split(' ')[19];
  if (value === undefined || !/^\d+$/.test(value)) throw new TsbuildError('SANDBOX_CGROUP', 'unreadable /proc/<pid>/stat line');
  return Number(value);
}

/** The identity of a running process, or undefined when it is gone. */
export async function readProcessIdentity(pid: number): Promise<ProcessIdentity | undefined> {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return { pid, startTime: parseStartTime(text) };
}

/** True when the process of `owner` is still the same running process (a zombie that waits to be reaped is dead). */
export async function isOwnerAlive(owner: ProcessIdentity): Promise<boolean> {
  return isPidRunning(owner.pid, String(owner.startTime));
}

const OWNER_SUFFIX = /^(.+)\.owner-(\d+)-(\d+)$/;

/** The cgroup directory name of sandbox `name` owned by `owner`: the owner is encoded so a later start can find stale ones. */
export function formatCgroupDirName(name: string, owner: ProcessIdentity): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name)) {
    throw new TsbuildError('SANDBOX_CGROUP', `invalid cgroup name "${name}": use letters, digits, "_", "." and "-"`);
  }
  return `${name}.owner-${owner.pid}-${owner.startTime}`;
}

/** Parses a directory name made by {@link formatCgroupDirName}; undefined for names tsbuild did not make. */
export function parseCgroupDirName(dirName: string): { name: string; owner: ProcessIdentity } | undefined {
  const m = OWNER_SUFFIX.exec(dirName);
  if (m === null) return undefined;
  return { name: m[1] as string, owner: { pid: Number(m[2]), startTime: Number(m[3]) } };
}
