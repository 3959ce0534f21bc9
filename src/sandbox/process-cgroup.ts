/**
 * The sandbox cgroup a running process belongs to (found from /proc/PID/cgroup), and the live
 * accounting `stats`, `top` and `pause` read from it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { parseCgroupDirName, parseProcCgroup } from './cgroup-detect.js';
import { listCgroupPids, readOptionalCgroupFile, writeCgroupFile } from './cgroup-fs.js';
import { parseKeyValueFile } from './cgroup-limits.js';
import type { Cgroup } from './cgroup-types.js';
import { CGROUP_PARENT, openSandboxCgroup } from './cgroup.js';
import { CgroupV1 } from './cgroup-v1.js';
import { CgroupV2 } from './cgroup-v2.js';

/** Live accounting of a sandbox cgroup (0 where the kernel does not account). */
export interface CgroupStats {
  /** CPU time of every process, in nanoseconds. */
  readonly cpuUsageNs: number;
  /** Memory in use without the inactive page cache (docker's "MEM USAGE"). */
  readonly memoryUsageBytes: number;
  /** The memory limit; undefined when unlimited. */
  readonly memoryLimitBytes: number | undefined;
  readonly pids: number;
  readonly blockReadBytes: number;
  readonly blockWriteBytes: number;
}

/** The sandbox cgroup `dirName` found in a `/proc/PID/cgroup` text (the `tsbuild/<dirName>` leaf), or undefined. */
export function sandboxCgroupNameOf(procCgroupText: string): string | undefined {
  const parsed = parseProcCgroup(procCgroupText);
  for (const path of [...parsed.v1.values(), ...(parsed.v2 === undefined ? [] : [parsed.v2])]) {
    const parts = path.split('/');
    const leaf = parts[parts.length - 1] ?? '';
    // SECURITY: only a cgroup tsbuild made (tsbuild/<name>.owner-P-T) is ever frozen or read, never the host's own.
    if (parts[parts.length - 2] === CGROUP_PARENT && parseCgroupDirName(leaf) !== undefined) return leaf;
  }
  return undefined;
}

/**
 * Opens the sandbox cgroup that process `pid` runs in; undefined when it runs in none (a rootless
 * sandbox without a delegated cgroup v2) or is gone.
 */
export async function openProcessCgroup(pid: number, options: { readonly rootless: boolean }): Promise<Cgroup | undefined> {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  const name = sandboxCgroupNameOf(text);
  return name === undefined ? undefined : openSandboxCgroup(name, { rootless: options.rootless });
}

/** The freezer directory of the sandbox cgroup of `pid` (v1 freezer.state or v2 cgroup.freeze), or undefined. */
function freezerOf(pid: number, root: string): { kind: 'v1' | 'v2'; dir: string } | undefined {
  let parsed;
  try {
    parsed = parseProcCgroup(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
  } catch {
    return undefined;
  }
  const isSandbox = (path: string | undefined): path is string => path !== undefined && sandboxCgroupNameOf(`0::${path}`) !== undefined;
  const v1 = parsed.v1.get('freezer');
  if (isSandbox(v1)) return { kind: 'v1', dir: join(root, 'freezer', v1) };
  if (isSandbox(parsed.v2)) {
    for (const base of [root, join(root, 'unified')]) {
      if (existsSync(join(base, parsed.v2, 'cgroup.events'))) return { kind: 'v2', dir: join(base, parsed.v2) };
    }
  }
  return undefined;
}

/**
 * True when process `pid` runs in a frozen (paused) sandbox cgroup; false when it does not, has
 * no sandbox cgroup or is gone. Synchronous: a few reads of pseudo files (for listings).
 */
export function isProcessFrozen(pid: number, root = '/sys/fs/cgroup'): boolean {
  const f = freezerOf(pid, root);
  try {
    if (f?.kind === 'v1') return readFileSync(join(f.dir, 'freezer.state'), 'utf8').trim() === 'FROZEN';
    if (f?.kind === 'v2') return parseKeyValueFile(readFileSync(join(f.dir, 'cgroup.events'), 'utf8')).get('frozen') === 1;
  } catch {
    // gone meanwhile
  }
  return false;
}

/** Thaws the sandbox cgroup of `pid` when it is frozen (so a signal sent to a paused container is handled); no-op otherwise. */
export async function thawProcessCgroup(pid: number, root = '/sys/fs/cgroup'): Promise<void> {
  if (!isProcessFrozen(pid, root)) return;
  const f = freezerOf(pid, root);
  if (f === undefined) return;
  await writeCgroupFile(f.dir, f.kind === 'v1' ? 'freezer.state' : 'cgroup.freeze', f.kind === 'v1' ? 'THAWED' : '0');
}

/** True when the cgroup is frozen (paused). */
export async function isCgroupFrozen(cgroup: Cgroup): Promise<boolean> {
  if (cgroup instanceof CgroupV1) {
    const dir = cgroup.directories.get('freezer');
    return dir !== undefined && (await readOptionalCgroupFile(dir, 'freezer.state'))?.trim() === 'FROZEN';
  }
  if (cgroup instanceof CgroupV2) {
    return parseKeyValueFile((await readOptionalCgroupFile(cgroup.directory, 'cgroup.events')) ?? '').get('frozen') === 1;
  }
  return false;
}

/** The pids of every process in the cgroup (host pids, sorted). */
export async function listCgroupProcesses(cgroup: Cgroup): Promise<number[]> {
  const dir = cgroup instanceof CgroupV1 ? (cgroup.directories.get('pids') ?? cgroup.directories.get('freezer') ?? [...cgroup.directories.values()][0])
    : cgroup instanceof CgroupV2 ? cgroup.directory : undefined;
  if (dir === undefined) throw new TsbuildError('SANDBOX_CGROUP', 'the sandbox cgroup has no directory to list');
  return [...new Set(await listCgroupPids(dir))].sort((a, b) => a - b);
}

/** v1 blkio `Read`/`Write` totals of `blkio.throttle.io_service_bytes` (`MAJ:MIN Op N` lines). */
function parseBlkio(text: string | undefined): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of (text ?? '').split('\n')) {
    const [, op, n] = line.trim().split(/\s+/);
    if (op === 'Read') read += Number(n);
    else if (op === 'Write') write += Number(n);
  }
  return { read, write };
}

/** v2 `io.stat` totals (`MAJ:MIN rbytes=N wbytes=N ...` lines). */
function parseIoStat(text: string | undefined): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const m of (text ?? '').matchAll(/\b([rw])bytes=(\d+)/g)) {
    if (m[1] === 'r') read += Number(m[2]);
    else write += Number(m[2]);
  }
  return { read, write };
}

/** A memory limit file's value; undefined for "max" or the v1 "unlimited" sentinel (near 2^63). */
function limitOf(text: string | undefined): number | undefined {
  const t = text?.trim();
  if (t === undefined || t === '' || t === 'max') return undefined;
  const n = Number(t);
  return Number.isFinite(n) && n < 2 ** 62 ? n : undefined;
}

/** Reads the live accounting of a sandbox cgroup (docker's formulas: usage minus inactive file cache). */
export async function readCgroupStats(cgroup: Cgroup): Promise<CgroupStats> {
  if (cgroup instanceof CgroupV1) {
    const d = cgroup.directories;
    const read = async (c: string, f: string): Promise<string | undefined> => {
      const dir = d.get(c);
      return dir === undefined ? undefined : readOptionalCgroupFile(dir, f);
    };
    const usage = Number((await read('memory', 'memory.usage_in_bytes'))?.trim() ?? 0);
    const stat = parseKeyValueFile((await read('memory', 'memory.stat')) ?? '');
    const blk = parseBlkio((await read('blkio', 'blkio.throttle.io_service_bytes_recursive')) ?? (await read('blkio', 'blkio.throttle.io_service_bytes')));
    return {
      cpuUsageNs: Number((await read('cpuacct', 'cpuacct.usage'))?.trim() ?? 0),
      memoryUsageBytes: Math.max(0, usage - (stat.get('total_inactive_file') ?? 0)),
      memoryLimitBytes: limitOf(await read('memory', 'memory.limit_in_bytes')),
      pids: Number((await read('pids', 'pids.current'))?.trim() ?? (await listCgroupProcesses(cgroup)).length),
      blockReadBytes: blk.read,
      blockWriteBytes: blk.write,
    };
  }
  if (cgroup instanceof CgroupV2) {
    const read = (f: string): Promise<string | undefined> => readOptionalCgroupFile(cgroup.directory, f);
    const cpu = parseKeyValueFile((await read('cpu.stat')) ?? '');
    const stat = parseKeyValueFile((await read('memory.stat')) ?? '');
    const io = parseIoStat(await read('io.stat'));
    const current = Number((await read('memory.current'))?.trim() ?? 0);
    return {
      cpuUsageNs: (cpu.get('usage_usec') ?? 0) * 1000,
      memoryUsageBytes: Math.max(0, current - (stat.get('inactive_file') ?? 0)),
      memoryLimitBytes: limitOf(await read('memory.max')),
      pids: Number((await read('pids.current'))?.trim() ?? (await listCgroupProcesses(cgroup)).length),
      blockReadBytes: io.read,
      blockWriteBytes: io.write,
    };
  }
  throw new TsbuildError('INTERNAL', 'unknown cgroup implementation');
}
