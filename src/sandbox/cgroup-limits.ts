import { TsbuildError } from '../core/index.js';

/** Resource limits of one sandbox, Docker's semantics (`docker run --memory ...`). */
export interface CgroupLimits {
  /** Memory limit in bytes (`--memory`). */
  memory?: number;
  /** Memory plus swap in bytes (`--memory-swap`); -1 means unlimited swap. */
  memorySwap?: number;
  /** Soft limit in bytes (`--memory-reservation`). */
  memoryReservation?: number;
  /** Disable the OOM killer (`--oom-kill-disable`; cgroup v1 only). */
  oomKillDisable?: boolean;
  /** Number of CPUs, fractional (`--cpus 0.5`): a CFS quota over a 100 ms period. */
  cpus?: number;
  /** Relative CPU weight (`--cpu-shares`, 2..262144). */
  cpuShares?: number;
  /** CPUs allowed, a cpuset list such as `0-2,4` (`--cpuset-cpus`). */
  cpusetCpus?: string;
  /** Maximum number of processes (`--pids-limit`); 0 or negative means unlimited. */
  pidsLimit?: number;
}

/** Docker's smallest memory limit (6 MiB). */
export const MIN_MEMORY_BYTES = 6 * 1024 * 1024;
/** The CFS period used for `cpus` (Docker's default, 100 ms). */
export const CFS_PERIOD_US = 100_000;

const MEMORY_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

function badLimit(flag: string, value: string, why: string): TsbuildError {
  return new TsbuildError('SANDBOX_BAD_LIMIT', `invalid ${flag} "${value}": ${why}`, { exitCode: 125 });
}

/** Parses a Docker memory size (`64m`, `1g`, `512k`, `1.5GiB`, `1024`; binary units) into bytes; throws SANDBOX_BAD_LIMIT. */
export function parseMemory(value: string, flag = '--memory'): number {
  const m = /^(\d+(?:\.\d+)?) ?([kmgtp])?(?:i?b)?$/i.exec(value.trim());
  if (m === null) throw badLimit(flag, value, 'expected a size such as 64m, 512k or 1g');
  const bytes = Math.floor(Number(m[1]) * (MEMORY_UNITS[(m[2] ?? '').toLowerCase()] as number));
  if (!Number.isSafeInteger(bytes)) throw badLimit(flag, value, 'size is too large');
  return bytes;
}

/** Parses `--memory-swap`: a size, or `-1` for unlimited swap; throws SANDBOX_BAD_LIMIT. */
export function parseMemorySwap(value: string): number {
  return value.trim() === '-1' ? -1 : parseMemory(value, '--memory-swap');
}

/** Parses a fractional CPU count (`0.5`, `2`, `1.25`) with at most 2 decimals of resolution; throws SANDBOX_BAD_LIMIT. */
export function parseCpus(value: string): number {
  if (!/^\d+(?:\.\d+)?$/.test(value.trim())) throw badLimit('--cpus', value, 'expected a positive number such as 0.5 or 2');
  const cpus = Number(value);
  if (!(cpus >= 0.01)) throw badLimit('--cpus', value, 'the smallest value is 0.01');
  return cpus;
}

/** Parses an integer flag value (`--cpu-shares`, `--pids-limit`); throws SANDBOX_BAD_LIMIT. */
export function parseIntegerLimit(flag: string, value: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw badLimit(flag, value, 'expected an integer');
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw badLimit(flag, value, 'number is too large');
  return n;
}

/** Parses a cpuset list (`0-2,4`) into sorted, distinct CPU numbers; throws SANDBOX_BAD_LIMIT. */
export function parseCpuset(value: string, flag = '--cpuset-cpus'): number[] {
  const out = new Set<number>();
  const text = value.trim();
  if (text === '') return [];
  for (const part of text.split(',')) {
    const m = /^(\d{1,4})(?:-(\d{1,4}))?$/.exec(part.trim());
    if (m === null) throw badLimit(flag, value, 'expected a list such as 0-2,4');
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw badLimit(flag, value, `range ${part} is reversed`);
    for (let i = lo; i <= hi; i++) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

/** Checks a limit set for consistency (Docker's rules); throws SANDBOX_BAD_LIMIT naming the flag. */
export function validateLimits(limits: CgroupLimits): void {
  const nonNegInt = (flag: string, v: number | undefined): void => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw badLimit(flag, String(v), 'expected a non-negative integer');
  };
  nonNegInt('--memory', limits.memory);
  nonNegInt('--memory-reservation', limits.memoryReservation);
  if (limits.memory !== undefined && limits.memory !== 0 && limits.memory < MIN_MEMORY_BYTES) {
    throw badLimit('--memory', String(limits.memory), 'the minimum memory limit is 6 MiB');
  }
  if (limits.memorySwap !== undefined && limits.memorySwap !== -1) {
    nonNegInt('--memory-swap', limits.memorySwap);
    if (limits.memory === undefined || limits.memory === 0) {
      throw badLimit('--memory-swap', String(limits.memorySwap), 'a swap limit needs --memory as well');
    }
    if (limits.memorySwap < limits.memory) {
      throw badLimit('--memory-swap', String(limits.memorySwap), 'must be at least --memory (it is memory plus swap)');
    }
  }
  if (limits.memoryReservation !== undefined && limits.memory !== undefined && limits.memory > 0 && limits.memoryReservation > limits.memory) {
    throw badLimit('--memory-reservation', String(limits.memoryReservation), 'must be smaller than --memory');
  }
  if (limits.cpus !== undefined && (!Number.isFinite(limits.cpus) || limits.cpus < 0.01)) {
    throw badLimit('--cpus', String(limits.cpus), 'the smallest value is 0.01');
  }
  if (limits.cpuShares !== undefined && limits.cpuShares !== 0 && (!Number.isSafeInteger(limits.cpuShares) || limits.cpuShares < 2 || limits.cpuShares > 262144)) {
    throw badLimit('--cpu-shares', String(limits.cpuShares), 'the range is 2 to 262144');
  }
  if (limits.cpusetCpus !== undefined) parseCpuset(limits.cpusetCpus);
  if (limits.pidsLimit !== undefined && !Number.isSafeInteger(limits.pidsLimit)) {
    throw badLimit('--pids-limit', String(limits.pidsLimit), 'expected an integer');
  }
}

/** Docker's defaults (moby `adaptContainerSettings`): `--memory` without `--memory-swap` allows as much swap again. */
export function withDockerDefaults(limits: CgroupLimits): CgroupLimits {
  if ((limits.memory ?? 0) > 0 && limits.memorySwap === undefined) return { ...limits, memorySwap: (limits.memory as number) * 2 };
  return limits;
}

/** True when at least one limit would be applied. */
export function hasLimits(limits: CgroupLimits): boolean {
  return (limits.memory ?? 0) > 0 || limits.memorySwap !== undefined || (limits.memoryReservation ?? 0) > 0 ||
    limits.oomKillDisable === true || limits.cpus !== undefined || (limits.cpuShares ?? 0) > 0 ||
    limits.cpusetCpus !== undefined || (limits.pidsLimit ?? 0) > 0;
}

/** One cgroup interface file and the value to write into it, in write order. */
export interface CgroupWrite {
  readonly controller: string;
  readonly file: string;
  readonly value: string;
}

/** The cgroup v1 file writes for a validated limit set (cpuset excluded: it depends on the parent). */
export function limitsToV1Writes(limits: CgroupLimits): CgroupWrite[] {
  const w: CgroupWrite[] = [];
  const memory = limits.memory ?? 0;
  if (memory > 0) w.push({ controller: 'memory', file: 'memory.limit_in_bytes', value: String(memory) });
  if (limits.memorySwap !== undefined && memory > 0) {
    w.push({ controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: limits.memorySwap === -1 ? '-1' : String(limits.memorySwap) });
  }
  if ((limits.memoryReservation ?? 0) > 0) w.push({ controller: 'memory', file: 'memory.soft_limit_in_bytes', value: String(limits.memoryReservation) });
  if (limits.oomKillDisable === true) w.push({ controller: 'memory', file: 'memory.oom_control', value: '1' });
  if ((limits.cpuShares ?? 0) > 0) w.push({ controller: 'cpu', file: 'cpu.shares', value: String(limits.cpuShares) });
  if (limits.cpus !== undefined) {
    w.push({ controller: 'cpu', file: 'cpu.cfs_period_us', value: String(CFS_PERIOD_US) });
    w.push({ controller: 'cpu', file: 'cpu.cfs_quota_us', value: String(cpusToQuota(limits.cpus)) });
  }
  const pids = limits.pidsLimit ?? 0;
  if (pids > 0) w.push({ controller: 'pids', file: 'pids.max', value: String(pids) });
  return w;
}

/** The cgroup v2 file writes for a validated limit set (cpuset excluded). Swap: v2 limits swap alone, so memory-swap minus memory. */
export function limitsToV2Writes(limits: CgroupLimits): CgroupWrite[] {
  const w: CgroupWrite[] = [];
  const memory = limits.memory ?? 0;
  if (memory > 0) w.push({ controller: 'memory', file: 'memory.max', value: String(memory) });
  if (limits.memorySwap !== undefined && memory > 0) {
    w.push({ controller: 'memory', file: 'memory.swap.max', value: limits.memorySwap === -1 ? 'max' : String(limits.memorySwap - memory) });
  }
  if ((limits.memoryReservation ?? 0) > 0) w.push({ controller: 'memory', file: 'memory.low', value: String(limits.memoryReservation) });
  if ((limits.cpuShares ?? 0) > 0) w.push({ controller: 'cpu', file: 'cpu.weight', value: String(sharesToWeight(limits.cpuShares as number)) });
  if (limits.cpus !== undefined) w.push({ controller: 'cpu', file: 'cpu.max', value: `${cpusToQuota(limits.cpus)} ${CFS_PERIOD_US}` });
  const pids = limits.pidsLimit ?? 0;
  if (pids > 0) w.push({ controller: 'pids', file: 'pids.max', value: String(pids) });
  return w;
}

/** CFS quota in microseconds per {@link CFS_PERIOD_US} for a CPU count. */
export function cpusToQuota(cpus: number): number {
  return Math.round(cpus * CFS_PERIOD_US);
}

/** Converts v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), the formula runc and crun use. */
export function sharesToWeight(shares: number): number {
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

/** Reads `key value` lines (cpu.stat, memory.events, memory.oom_control) into a map of numbers. */
export function parseKeyValueFile(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key !== undefined && key !== '' && value !== undefined && /^\d+$/.test(value)) out.set(key, Number(value));
  }
  return out;
}

/** Parses a v2 `cpu.max` value (`max 100000` or `50000 100000`) into quota (undefined = unlimited) and period. */
export function parseCpuMax(text: string): { quota: number | undefined; period: number } {
  const [q, p] = text.trim().split(/\s+/);
  const period = Number(p ?? CFS_PERIOD_US);
  if (q === undefined || q === '' || !Number.isFinite(period)) throw new TsbuildError('SANDBOX_CGROUP', `unreadable cpu.max value "${text.trim()}"`);
  return { quota: q === 'max' ? undefined : Number(q), period };
}

/** Parses a v2 limit value (`max` or a number) into a number, Infinity for `max`. */
export function parseMaxValue(text: string): number {
  const t = text.trim();
  return t === 'max' ? Infinity : Number(t);
}
