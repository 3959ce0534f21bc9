import { readFileSync, readdirSync } from 'node:fs';
import { isPidRunning, readProcStat } from '../sys/index.js';

/** The start time (clock ticks since boot, as text) of `pid`, or undefined when it does not exist. */
export function processStartTime(pid: number): string | undefined {
  return readProcStat(pid)?.startTime;
}

/** True when `pid` exists, is not a zombie and (when given) started at `startTime` (safe against pid reuse). */
export const isProcessAlive = isPidRunning;

/** The direct children of `pid`: from the task children files, else a scan of /proc. */
export function childPids(pid: number): number[] {
  const fast = childPidsFromTasks(pid);
  if (fast !== undefined) return fast;
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const s = readProcStat(Number(n));
    if (s !== undefined && s.ppid === pid) out.push(Number(n));
  }
  return out;
}

/**
 * The children of `pid` from `/proc/PID/task/TID/children` (every thread's, CONFIG_PROC_CHILDREN):
 * a few small reads instead of a stat of every process. Undefined when the kernel lacks the file.
 */
function childPidsFromTasks(pid: number): number[] | undefined {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out = new Set<number>();
  for (const tid of tasks) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && tid === String(pid)) return undefined;
      continue;
    }
    for (const n of text.split(' ')) if (/^\d+$/.test(n)) out.add(Number(n));
  }
  return [...out];
}
