import { readFileSync } from 'node:fs';

/** The fields of `/proc/PID/stat` that tsbuild reads. */
export interface ProcStat {
  /** One letter: R, S, D, Z (zombie), X (dead), T, ... */
  readonly state: string;
  readonly ppid: number;
  /** Start time in clock ticks since boot, as text (with the pid, a process identity safe against reuse). */
  readonly startTime: string;
}

/** Parses `/proc/PID/stat`; undefined when the process does not exist. */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
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

/**
 * True when `pid` runs: it exists, is not a zombie waiting to be reaped (a killed process whose
 * parent died stays one until init reaps it, which can take a while in a container or VM) and,
 * when `startTime` is given, is the same process (not a reused pid).
 */
export function isPidRunning(pid: number, startTime?: string): boolean {
  const s = readProcStat(pid);
  if (s === undefined || s.state === 'Z' || s.state === 'X') return false;
  return startTime === undefined || startTime === '' || s.startTime === startTime;
}
