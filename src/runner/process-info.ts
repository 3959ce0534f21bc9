import { readFileSync, readdirSync } from 'node:fs';

/** Parses `/proc/PID/stat`; undefined when the process does not exist. */
function readStat(pid: number): { state: string; ppid: number; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: fields restart after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0] ?? '', ppid: Number(rest[1]), startTime: rest[19] ?? '' };
}

/** The start time (clock ticks since boot, as text) of `pid`, or undefined when it does not exist. */
export function processStartTime(pid: number): string | undefined {
  return readStat(pid)?.startTime;
}

/** True when `pid` exists, is not a zombie and (when given) started at `startTime` (safe against pid reuse). */
export function isProcessAlive(pid: number, startTime?: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const s = readStat(pid);
  if (s === undefined || s.state === 'Z' || s.state === 'X') return false;
  return startTime === undefined || startTime === '' || s.startTime === startTime;
}

/** The direct children of `pid` (scans /proc; no CONFIG_PROC_CHILDREN needed). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const s = readStat(Number(n));
    if (s !== undefined && s.ppid === pid) out.push(Number(n));
  }
  return out;
}
