/**
 * The `--runtime=runc` escape hatch: the same RunSpec, written as an OCI bundle (`config.json` + rootfs path) and
 * run by an external OCI runtime (runc, or any runtime with runc's CLI). Also the oracle of the conformance test.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { TsbuildError, notSupportedYet } from '../core/index.js';
import { formatCgroupDirName, readProcessIdentity } from './cgroup-detect.js';
import { CGROUP_PARENT, openSandboxCgroup } from './cgroup.js';
import type { Cgroup, CgroupUsage } from './cgroup-types.js';
import { overlayMountData, overlayRootDirs } from './launcher-spec.js';
import type { OutputSink, SandboxStdio, StdinSource } from './sandbox.js';
import { createSandboxState, newSandboxId, removeSandboxState } from './sandbox-state.js';
import type { RunSpec } from './spec.js';
import { ALL_CAPABILITIES, toOciConfig } from './spec.js';

/** Options of {@link runWithOciRuntime}; process facts come in from the CLI. */
export interface OciRuntimeOptions {
  /** Per-user state directory (the bundle, init files and the runtime's `--root` live in `<stateDir>/<id>/`). */
  readonly stateDir: string;
  /** PID of this process: recorded so stale bundles and cgroups are removed on the next start. */
  readonly ownerPid: number;
  /** True when tsbuild runs without root (not supported with an external runtime yet). */
  readonly rootless: boolean;
  /** The host's resolv.conf copied into the container (default /etc/resolv.conf). */
  readonly resolvConf?: string;
}

/** How the runtime's process ended. */
export interface OciRunResult {
  /** The exit code; 128+n when the process was killed by signal n (runc's convention). */
  readonly exitCode: number;
  /** The signal name when the code is 128+n of a known signal (runc cannot tell it from a plain exit 128+n). */
  readonly signal?: string;
  /** True when the kernel OOM killer killed a process of the container (read from its cgroup before removal). */
  readonly oomKilled: boolean;
  /** Cgroup accounting, when the container's cgroup could be read. */
  readonly usage?: CgroupUsage;
  /** A human text for an abnormal end, e.g. `killed: out of memory, limit 64 MiB`. */
  readonly reason?: string;
}

const SIGNALS: Readonly<Record<number, string>> = {
  1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 4: 'SIGILL', 6: 'SIGABRT', 7: 'SIGBUS', 8: 'SIGFPE', 9: 'SIGKILL',
  10: 'SIGUSR1', 11: 'SIGSEGV', 12: 'SIGUSR2', 13: 'SIGPIPE', 14: 'SIGALRM', 15: 'SIGTERM',
};

/** Runs `runtime args...` to completion, capturing stderr; resolves with the exit code (never throws for non-zero). */
function runQuiet(runtime: string, args: readonly string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(runtime, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    child.on('error', (err) => resolve({ code: -1, stderr: err.message }));
    child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

function stdioMode(s: StdinSource | OutputSink | undefined, dflt: 'inherit' | 'ignore'): 'inherit' | 'ignore' | 'pipe' | number {
  return s === undefined ? dflt : typeof s === 'string' || typeof s === 'number' ? s : 'pipe';
}

/**
 * Runs `spec` with the OCI runtime `runtime` (`runc`, found in PATH, or a path): writes a bundle, `runc run`s it in
 * the foreground with stdio forwarded, and removes the bundle and the runtime's state afterwards. An overlay root is
 * mounted in a private mount namespace of the runtime (`unshare -m`), so it never shows on the host. The cgroup is
 * named like tsbuild's own (`tsbuild/<name>.owner-<pid>-<start>`) so a SIGKILLed tsbuild's containers are removed by
 * cleanupStaleCgroups. On abort: `runc kill KILL`, then `runc delete --force`; throws SANDBOX_ABORTED.
 * Throws SANDBOX_RUNTIME_NOT_FOUND, SANDBOX_ROOTFS_NOT_FOUND, SANDBOX_RUNTIME (the runtime failed before the process).
 */
export async function runWithOciRuntime(runtime: string, spec: RunSpec, stdio: SandboxStdio, signal: AbortSignal | undefined, options: OciRuntimeOptions): Promise<OciRunResult> {
  signal?.throwIfAborted();
  if (options.rootless) throw notSupportedYet('--runtime with rootless tsbuild', 'run as root, or use the built-in sandbox');
  const roots = spec.root.overlay === undefined ? [spec.root.path] : overlayRootDirs(spec.root.overlay);
  for (const dir of roots) {
    if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
      throw new TsbuildError('SANDBOX_ROOTFS_NOT_FOUND', `root filesystem directory ${dir} does not exist`, { exitCode: 125 });
    }
  }
  const id = newSandboxId();
  const resolvConf = await readFile(options.resolvConf ?? '/etc/resolv.conf', 'utf8').catch(() => '');
  const hostname = spec.hostname ?? id;
  const state = await createSandboxState(options.stateDir, id, { hostname, resolvConf }, options.ownerPid);
  const runtimeRoot = join(state.dir, 'runtime');
  const owner = await readProcessIdentity(options.ownerPid);
  const cgroupName = owner === undefined ? undefined : formatCgroupDirName(`oci-${id}`, owner);
  const containerId = `tsbuild-${id}`;
  let cgroup: Cgroup | undefined;
  try {
    await mkdir(runtimeRoot);
    const rootPath = spec.root.overlay === undefined ? spec.root.path : state.rootMount;
    const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
    const rlimits = await clampRlimits(spec.process.rlimits, status);
    const capabilities = heldCapabilities(spec.process, status);
    const config = toOciConfig({ ...spec, hostname, process: { ...spec.process, rlimits, capabilities }, mounts: [...spec.mounts, ...state.initMounts] }, {
      rootPath,
      ...(cgroupName === undefined ? {} : { cgroupsPath: `/${CGROUP_PARENT}/${cgroupName}` }),
    });
    await writeFile(join(state.dir, 'config.json'), JSON.stringify(config, null, 2));
    const logFile = join(state.dir, 'runtime.log');
    const runArgs = ['--root', runtimeRoot, '--log', logFile, '--log-format', 'json', 'run', '--keep', '--bundle', state.dir, containerId];
    let command = runtime;
    let args = runArgs;
    if (spec.root.overlay !== undefined) {
      const m = overlayMountData(spec.root.overlay, { below: [state.initLayer], userns: false });
      // SECURITY: the overlay is mounted in a private mount namespace that only the runtime inherits.
      // Relative lowerdirs resolve from baseDir: mount(8) runs in a subshell there (same mount namespace).
      command = 'unshare';
      args = ['--mount', '--propagation', 'private', '--', 'sh', '-c', '(cd "$3" && exec mount -t overlay overlay -o "$1" "$2") && shift 3 && exec "$@"', 'sh', m.data, rootPath, m.baseDir ?? '/', runtime, ...runArgs];
    }
    const exit = await runForeground(runtime, command, args, runtimeRoot, containerId, stdio, signal);
    await throwRuntimeError(logFile, spec);
    // `--keep` leaves the stopped container's cgroup in place until `delete`: read its accounting first.
    cgroup = cgroupName === undefined ? undefined : await openSandboxCgroup(cgroupName, { rootless: false }).catch(() => undefined);
    const usage = await cgroup?.usage().catch(() => undefined);
    const oomKilled = usage?.oomKilled === true && exit.exitCode === 128 + 9;
    const limit = spec.linux.resources?.memory?.limit;
    const reason = oomKilled
      ? `killed: out of memory, limit ${limit === undefined ? 'unknown' : `${Number((limit / 1048576).toFixed(1))} MiB`}`
      : exit.signal === undefined ? undefined : `killed by ${exit.signal}`;
    return { ...exit, oomKilled, ...(usage === undefined ? {} : { usage }), ...(reason === undefined ? {} : { reason }) };
  } finally {
    await runQuiet(runtime, ['--root', runtimeRoot, 'delete', '--force', containerId]);
    // Belt and braces: whatever the runtime left of the cgroup (it normally removes it at delete).
    await cgroup?.destroy().catch(() => undefined);
    await removeSandboxState(state);
  }
}

const LIMIT_ROWS: Readonly<Record<string, string>> = {
  RLIMIT_CPU: 'Max cpu time', RLIMIT_FSIZE: 'Max file size', RLIMIT_DATA: 'Max data size', RLIMIT_STACK: 'Max stack size',
  RLIMIT_CORE: 'Max core file size', RLIMIT_RSS: 'Max resident set', RLIMIT_NPROC: 'Max processes', RLIMIT_NOFILE: 'Max open files',
  RLIMIT_MEMLOCK: 'Max locked memory', RLIMIT_AS: 'Max address space', RLIMIT_LOCKS: 'Max file locks',
  RLIMIT_SIGPENDING: 'Max pending signals', RLIMIT_MSGQUEUE: 'Max msgqueue size', RLIMIT_NICE: 'Max nice priority',
  RLIMIT_RTPRIO: 'Max realtime priority', RLIMIT_RTTIME: 'Max realtime timeout',
};

/** A capability set of this process from /proc/self/status (`CapPrm`, `CapEff`), or undefined when unreadable. */
function capabilitySet(status: string, field: 'CapPrm' | 'CapEff'): bigint | undefined {
  const hex = new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1];
  return hex === undefined ? undefined : BigInt(`0x${hex}`);
}

/** Privileged (`capabilitiesHeld`): only the capabilities this process holds, as the launcher's `capsheld` (runc fails on the others). */
function heldCapabilities(p: RunSpec['process'], status: string): readonly string[] {
  const held = p.capabilitiesHeld === true ? capabilitySet(status, 'CapPrm') : undefined;
  if (held === undefined) return p.capabilities;
  return p.capabilities.filter((c) => ((held >> BigInt(ALL_CAPABILITIES.indexOf(c))) & 1n) === 1n);
}

/**
 * Without CAP_SYS_RESOURCE no runtime can raise a hard rlimit above ours: clamp to our own hard limits (from
 * /proc/self/limits), as the built-in launcher does, instead of letting runc fail with EPERM.
 */
async function clampRlimits(rlimits: RunSpec['process']['rlimits'], status: string): Promise<RunSpec['process']['rlimits']> {
  const capEff = capabilitySet(status, 'CapEff');
  if (capEff !== undefined && (capEff & (1n << 24n)) !== 0n) return rlimits;
  const limits = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  return rlimits.map((r) => {
    const row = LIMIT_ROWS[r.type];
    const line = row === undefined ? undefined : limits.split('\n').find((l) => l.startsWith(row));
    const fields = line?.slice(26).trim().split(/\s+/);
    const hardText = fields?.[1];
    if (hardText === undefined || hardText === 'unlimited' || !/^\d+$/.test(hardText)) return r;
    const hard = Math.min(r.hard, Number(hardText));
    return { ...r, hard, soft: Math.min(r.soft, hard) };
  });
}

/** Throws the runtime's own failure (logged as JSON lines with level "error"), if any, as a TsbuildError. */
async function throwRuntimeError(logFile: string, spec: RunSpec): Promise<void> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  const messages: string[] = [];
  for (const line of text.split('\n')) {
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === 'error' || entry.level === 'fatal') && typeof entry.msg === 'string') messages.push(entry.msg);
    } catch {
      // not a JSON line
    }
  }
  const msg = messages[messages.length - 1];
  if (msg === undefined) return;
  if (/executable file not found|exec: .*no such file or directory/.test(msg)) {
    throw new TsbuildError('SANDBOX_COMMAND_NOT_FOUND', `"${spec.process.args[0] ?? ''}" not found in the container: ${msg}`, { exitCode: 127 });
  }
  throw new TsbuildError('SANDBOX_RUNTIME', `the OCI runtime failed: ${msg}`, { exitCode: 125 });
}

async function runForeground(runtime: string, command: string, args: readonly string[], runtimeRoot: string, containerId: string, stdio: SandboxStdio, signal: AbortSignal | undefined): Promise<{ exitCode: number; signal?: string }> {
  const child = spawn(command, args, { stdio: [stdioMode(stdio.stdin, 'ignore'), stdioMode(stdio.stdout, 'inherit'), stdioMode(stdio.stderr, 'inherit')] });
  const done: Promise<void>[] = [];
  const forward = (from: Readable | null, to: OutputSink | undefined): void => {
    if (from === null || to === undefined || typeof to !== 'object') return;
    done.push(new Promise((resolve) => {
      from.on('data', (chunk: Buffer) => (to as Writable).write(chunk));
      from.on('end', resolve);
      from.on('error', () => resolve());
    }));
  };
  if (typeof stdio.stdin === 'object' && child.stdin !== null) {
    child.stdin.on('error', () => undefined);
    stdio.stdin.pipe(child.stdin);
  }
  forward(child.stdout, stdio.stdout);
  forward(child.stderr, stdio.stderr);
  let aborted = false;
  const kill = (): void => {
    aborted = true;
    // SIGKILL to `runc run` would orphan the container: ask the runtime to kill it (retrying while it is still being
    // created), and only as a last resort kill the runtime process; `delete --force` afterwards removes the rest.
    const deadline = Date.now() + 10_000;
    const attempt = (): void => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        return;
      }
      void runQuiet(runtime, ['--root', runtimeRoot, 'kill', '--all', containerId, 'KILL']).then(() => setTimeout(attempt, 100));
    };
    attempt();
  };
  signal?.addEventListener('abort', kill, { once: true });
  try {
    const exit = await new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', (err) => {
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
        reject(new TsbuildError(missing ? 'SANDBOX_RUNTIME_NOT_FOUND' : 'SANDBOX_RUNTIME', `cannot start the OCI runtime "${command}": ${err.message}`, {
          cause: err, exitCode: 125, ...(missing ? { hint: 'install it (apt-get install runc) or give its path: --runtime /path/to/runc' } : {}),
        }));
      });
      child.once('close', (code, sig) => resolve({ code, sig }));
    });
    await Promise.all(done);
    if (aborted) {
      throw new TsbuildError('SANDBOX_ABORTED', `container stopped: ${String((signal?.reason as Error | undefined)?.message ?? signal?.reason ?? 'aborted')}`, { cause: signal?.reason, exitCode: 137 });
    }
    const exitCode = exit.code ?? 128 + 9;
    const name = exitCode > 128 ? SIGNALS[exitCode - 128] : undefined;
    return name === undefined ? { exitCode } : { exitCode, signal: name };
  } finally {
    signal?.removeEventListener('abort', kill);
  }
}
