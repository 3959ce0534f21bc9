/**
 * The built-in sandbox: spawns the native launcher (build/tsbuild-launcher), which enters the
 * namespaces; this side writes the id maps, attaches the cgroup, releases the child and reports
 * how it ended. Every mount lives in the sandbox's own mount namespace, so nothing leaks to the
 * host when the process ends or tsbuild is killed (the launcher and its child die with us).
 */
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { TsbuildError } from '../core/index.js';
import { cleanupStaleCgroups, createCgroup } from './cgroup.js';
import type { CgroupLimits } from './cgroup-limits.js';
import type { Cgroup, CgroupUsage } from './cgroup-types.js';
import { encodeLauncherSpec, overlayRootDirs } from './launcher-spec.js';
import { cleanStaleSandboxStates, createSandboxState, describeOwner, newSandboxId, removeSandboxState } from './sandbox-state.js';
import type { SandboxState } from './sandbox-state.js';
import type { ResourcesSpec, RunSpec } from './spec.js';
import { hasNamespace } from './spec.js';
import type { HostIdentity, IdMaps } from './userns.js';
import { resolveIdMaps, writeIdMaps } from './userns.js';
import { parseStatusLine, setupError, type LauncherStatus } from './launcher-status.js';

/** Where a sandboxed process's stdin comes from. */
export type StdinSource = 'inherit' | 'ignore' | number | Readable;
/** Where a sandboxed process's stdout/stderr go. */
export type OutputSink = 'inherit' | 'ignore' | number | Writable;

/** The stdio of a sandboxed process (default: ignore stdin, inherit outputs). */
export interface SandboxStdio {
  readonly stdin?: StdinSource;
  readonly stdout?: OutputSink;
  readonly stderr?: OutputSink;
}

/** How a sandboxed process ended. */
export interface RunResult {
  /** The exit code, or 128+n when killed by signal n. */
  readonly exitCode: number;
  /** The signal name when the process was killed by a signal. */
  readonly signal?: NodeJS.Signals;
  /** True when the kernel OOM killer ended it (cgroup accounting). */
  readonly oomKilled: boolean;
  /** Cgroup accounting, when the sandbox had a cgroup. */
  readonly usage?: CgroupUsage;
  /** A human text for an abnormal end, e.g. `killed: out of memory, limit 64 MiB`. */
  readonly reason?: string;
}

/** Construction options of a {@link Sandbox}; process facts come in from the CLI. */
export interface SandboxOptions {
  /** Path of the compiled launcher (build/tsbuild-launcher). */
  readonly launcherPath: string;
  /** Per-user directory for sandbox state (init files, overlay mountpoints). */
  readonly stateDir: string;
  /** The invoking user; uid != 0 means rootless (always a user namespace). */
  readonly host: HostIdentity;
  /** PID of this process (owner of the state dirs, for stale cleanup). */
  readonly ownerPid: number;
  /** /etc/subuid and /etc/subgid (defaults). */
  readonly subIdFiles?: { readonly subuid: string; readonly subgid: string };
  /** The host's resolv.conf copied into sandboxes (default /etc/resolv.conf). */
  readonly resolvConf?: string;
  /** Receives warnings (single-id map, cgroup limits that cannot be applied). */
  readonly onWarning?: (msg: string) => void;
}

/** Converts OCI resources to the cgroup limits (Docker semantics) of src/sandbox/cgroup.ts. */
export function resourcesToLimits(r: ResourcesSpec | undefined): CgroupLimits {
  const limits: CgroupLimits = {};
  if (r === undefined) return limits;
  if (r.memory?.limit !== undefined) limits.memory = r.memory.limit;
  if (r.memory?.swap !== undefined) limits.memorySwap = r.memory.swap;
  if (r.memory?.reservation !== undefined) limits.memoryReservation = r.memory.reservation;
  if (r.memory?.disableOOMKiller !== undefined) limits.oomKillDisable = r.memory.disableOOMKiller;
  if (r.cpu?.quota !== undefined && r.cpu.quota > 0) limits.cpus = r.cpu.quota / (r.cpu.period ?? 100_000);
  if (r.cpu?.shares !== undefined) limits.cpuShares = r.cpu.shares;
  if (r.cpu?.cpus !== undefined) limits.cpusetCpus = r.cpu.cpus;
  if (r.pids !== undefined) limits.pidsLimit = r.pids.limit;
  return limits;
}

/** Converts Docker-style cgroup limits to OCI `linux.resources` (the inverse of {@link resourcesToLimits}). */
export function limitsToResources(l: CgroupLimits): ResourcesSpec | undefined {
  const memory = {
    ...(l.memory === undefined ? {} : { limit: l.memory }),
    ...(l.memorySwap === undefined ? {} : { swap: l.memorySwap }),
    ...(l.memoryReservation === undefined ? {} : { reservation: l.memoryReservation }),
    ...(l.oomKillDisable === undefined ? {} : { disableOOMKiller: l.oomKillDisable }),
  };
  const cpu = {
    ...(l.cpus === undefined ? {} : { quota: Math.round(l.cpus * 100_000), period: 100_000 }),
    ...(l.cpuShares === undefined ? {} : { shares: l.cpuShares }),
    ...(l.cpusetCpus === undefined ? {} : { cpus: l.cpusetCpus }),
  };
  const r: ResourcesSpec = {
    ...(Object.keys(memory).length === 0 ? {} : { memory }),
    ...(Object.keys(cpu).length === 0 ? {} : { cpu }),
    ...(l.pidsLimit === undefined ? {} : { pids: { limit: l.pidsLimit } }),
  };
  return Object.keys(r).length === 0 ? undefined : r;
}

const SIGNAL_NAMES: Readonly<Record<number, NodeJS.Signals>> = {
  1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 4: 'SIGILL', 5: 'SIGTRAP', 6: 'SIGABRT', 7: 'SIGBUS', 8: 'SIGFPE',
  9: 'SIGKILL', 10: 'SIGUSR1', 11: 'SIGSEGV', 12: 'SIGUSR2', 13: 'SIGPIPE', 14: 'SIGALRM', 15: 'SIGTERM',
};

function formatMiB(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`;
}

/** Runs RunSpecs with the native launcher. Holds no mutable state besides a one-time stale cleanup. */
export class Sandbox {
  readonly #options: SandboxOptions;
  /** One-time work (stale cleanup, launcher check, owner identity), done by the first run. */
  #ready: Promise<string> | undefined;

  constructor(options: SandboxOptions) {
    this.#options = options;
  }

  /** True when sandboxes need a user namespace (not root). */
  get rootless(): boolean {
    return this.#options.host.uid !== 0;
  }

  /**
   * Runs `spec` to completion. Resolves with the exit code (128+n for signal n); throws
   * SANDBOX_ROOTFS_NOT_FOUND, SANDBOX_COMMAND_NOT_FOUND (exitCode 127), SANDBOX_SETUP (a
   * launcher step failed, with its errno), SANDBOX_ABORTED (the signal fired; the whole pid
   * namespace was killed), SANDBOX_LAUNCHER (missing launcher).
   */
  async run(spec: RunSpec, stdio: SandboxStdio = {}, signal?: AbortSignal): Promise<RunResult> {
    signal?.throwIfAborted();
    const o = this.#options;
    this.#ready ??= this.#prepare();
    const owner = await this.#ready.catch((err: unknown) => {
      this.#ready = undefined;
      throw err;
    });
    this.#checkRoot(spec);
    // SECURITY: rootless sandboxes always get a user namespace; the launcher never runs setuid.
    const runSpec: RunSpec = this.rootless && !hasNamespace(spec, 'user')
      ? { ...spec, linux: { ...spec.linux, namespaces: [...spec.linux.namespaces, { type: 'user' }] } }
      : spec;
    let maps: IdMaps | undefined;
    if (hasNamespace(runSpec, 'user')) {
      const planned = await resolveIdMaps(o.host, o.subIdFiles ?? { subuid: '/etc/subuid', subgid: '/etc/subgid' });
      if (planned.warning !== undefined) o.onWarning?.(planned.warning);
      maps = runSpec.linux.uidMappings !== undefined && runSpec.linux.gidMappings !== undefined
        ? { ...planned.maps, uid: runSpec.linux.uidMappings, gid: runSpec.linux.gidMappings }
        : planned.maps;
    }
    const id = newSandboxId();
    let resolvConf = '';
    try {
      resolvConf = readFileSync(o.resolvConf ?? '/etc/resolv.conf', 'utf8');
    } catch {
      // no resolver configuration on the host: an empty resolv.conf
    }
    const state = await createSandboxState(o.stateDir, id, { hostname: runSpec.hostname ?? id, resolvConf }, o.ownerPid, runSpec.root.overlay !== undefined ? 'shared' : 'none', owner);
    let cgroup: Cgroup | undefined;
    try {
      const limits = resourcesToLimits(runSpec.linux.resources);
      if (runSpec.linux.resources !== undefined) {
        cgroup = await createCgroup(`sandbox-${id}`, limits, {
          rootless: this.rootless,
          ...(o.onWarning === undefined ? {} : { onWarning: o.onWarning }),
        });
      }
      const status = await this.#launch(runSpec, state, maps, cgroup, stdio, signal);
      const usage = cgroup === undefined ? undefined : await cgroup.usage();
      const oomKilled = usage?.oomKilled === true && status.signal === 9;
      const exitCode = status.signal !== undefined ? 128 + status.signal : (status.exitCode ?? 125);
      const signalName = status.signal === undefined ? undefined : SIGNAL_NAMES[status.signal];
      const reason = oomKilled
        ? `killed: out of memory, limit ${limits.memory === undefined ? 'unknown' : formatMiB(limits.memory)}`
        : signalName === undefined ? undefined : `killed by ${signalName}`;
      return {
        exitCode,
        oomKilled,
        ...(signalName === undefined ? {} : { signal: signalName }),
        ...(usage === undefined ? {} : { usage }),
        ...(reason === undefined ? {} : { reason }),
      };
    } finally {
      await cgroup?.destroy().catch((err: unknown) => o.onWarning?.(`cannot remove the sandbox cgroup: ${(err as Error).message}`));
      await removeSandboxState(state).catch((err: unknown) => o.onWarning?.((err as Error).message));
    }
  }

  /** Checks the launcher, removes stale state of dead owners; resolves with this process's owner text. */
  async #prepare(): Promise<string> {
    const o = this.#options;
    try {
      await access(o.launcherPath, constants.X_OK);
    } catch (err) {
      throw new TsbuildError('SANDBOX_LAUNCHER', `the sandbox launcher ${o.launcherPath} is missing or not executable`, {
        cause: err,
        hint: 'build it with "npm run build" (needs a C compiler: apt-get install gcc libc6-dev)',
        exitCode: 125,
      });
    }
    // What a SIGKILLed tsbuild left (state dirs, cgroups) goes before we add ours.
    await cleanStaleSandboxStates(o.stateDir);
    await cleanupStaleCgroups({ rootless: o.host.uid !== 0 }).catch((err: unknown) => {
      o.onWarning?.(`could not remove stale cgroups: ${err instanceof Error ? err.message : String(err)}`);
    });
    return describeOwner(o.ownerPid);
  }

  #checkRoot(spec: RunSpec): void {
    const dirs = spec.root.overlay === undefined ? [spec.root.path] : overlayRootDirs(spec.root.overlay);
    for (const dir of dirs) {
      if (statSync(dir, { throwIfNoEntry: false })?.isDirectory() !== true) {
        throw new TsbuildError('SANDBOX_ROOTFS_NOT_FOUND', `root filesystem directory ${dir} does not exist`, { exitCode: 125 });
      }
    }
  }

  /** Spawns the launcher and drives the handshake; resolves with the final status. */
  async #launch(spec: RunSpec, state: SandboxState, maps: IdMaps | undefined, cgroup: Cgroup | undefined, stdio: SandboxStdio, signal?: AbortSignal): Promise<LauncherStatus> {
    const input = encodeLauncherSpec(spec, {
      rootfs: spec.root.overlay === undefined ? spec.root.path : state.rootMount,
      extraLowerdirs: spec.root.overlay === undefined ? [] : [state.initLayer],
      extraMounts: state.initMounts,
    });
    const mode = (s: StdinSource | OutputSink | undefined, dflt: 'inherit' | 'ignore'): 'inherit' | 'ignore' | 'pipe' | number =>
      s === undefined ? dflt : typeof s === 'string' || typeof s === 'number' ? s : 'pipe';
    const child = spawn(this.#options.launcherPath, [], {
      stdio: [mode(stdio.stdin, 'ignore'), mode(stdio.stdout, 'inherit'), mode(stdio.stderr, 'inherit'), 'pipe', 'pipe', 'pipe'],
    });
    const specPipe = child.stdio[3] as Writable;
    const statusPipe = child.stdio[4] as Readable;
    const goPipe = (child.stdio as unknown as (Readable | Writable | null)[])[5] as Writable;
    const outputs: Promise<void>[] = [];
    const forward = (from: Readable | null, to: StdinSource | OutputSink | undefined): void => {
      if (from === null || to === undefined || typeof to === 'string' || typeof to === 'number') return;
      const sink = to as Writable;
      from.on('data', (chunk: Buffer) => sink.write(chunk));
      // finished() also settles when the pipe closes without 'end' (destroyed after a kill).
      outputs.push(finished(from).catch(() => undefined));
    };
    const stdinSource = typeof stdio.stdin === 'object' ? (stdio.stdin as Readable) : undefined;
    if (stdinSource !== undefined && child.stdin !== null) {
      const stdin = child.stdin;
      stdin.on('error', () => undefined);
      stdinSource.pipe(stdin);
      // The caller's stream outlives the container: stop reading it when the container is gone.
      child.once('close', () => {
        stdinSource.unpipe(stdin);
        stdinSource.pause();
      });
    }
    forward(child.stdout, stdio.stdout);
    forward(child.stderr, stdio.stderr);
    for (const p of [specPipe, goPipe]) p.on('error', () => undefined);

    let pid: number | undefined;
    let aborted = false;
    const killAll = (): void => {
      aborted = true;
      // SECURITY: SIGKILL of the pid namespace's init kills everything in it.
      if (pid !== undefined) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      }
      child.kill('SIGKILL');
    };
    signal?.addEventListener('abort', killAll, { once: true });
    const spawnError = new Promise<never>((_, reject) => child.once('error', (err) => reject(new TsbuildError('SANDBOX_LAUNCHER', `cannot start the sandbox launcher ${this.#options.launcherPath}: ${err.message}`, { cause: err, exitCode: 125 }))));
    spawnError.catch(() => undefined);
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));

    try {
      specPipe.end(input);
      const lines: LauncherStatus[] = [];
      let buffered = '';
      let release: Promise<void> = Promise.resolve();
      statusPipe.setEncoding('utf8');
      statusPipe.on('data', (text: string) => {
        buffered += text;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const parsed = parseStatusLine(buffered.slice(0, nl));
          buffered = buffered.slice(nl + 1);
          if (parsed === undefined) continue;
          lines.push(parsed);
          if (parsed.pid !== undefined) {
            const childPid = parsed.pid;
            pid = childPid;
            release = (async () => {
              if (maps !== undefined) await writeIdMaps(childPid, maps);
              if (cgroup !== undefined) await cgroup.addProcess(childPid);
              goPipe.end('g');
            })();
            release.catch(() => goPipe.destroy());
          }
        }
      });
      const statusDone = new Promise<void>((resolve) => statusPipe.once('close', resolve));
      await Promise.race([Promise.all([exited, statusDone]), spawnError]);
      await release;
      await Promise.all(outputs);
      const error = lines.find((l) => l.error !== undefined)?.error;
      if (aborted) {
        throw new TsbuildError('SANDBOX_ABORTED', `sandbox stopped: ${String((signal?.reason as Error | undefined)?.message ?? signal?.reason ?? 'aborted')}`, { cause: signal?.reason, exitCode: 137 });
      }
      if (error !== undefined) throw setupError(error, spec);
      const end = lines.find((l) => l.exitCode !== undefined || l.signal !== undefined);
      if (end === undefined) {
        throw new TsbuildError('SANDBOX_LAUNCHER', `the sandbox launcher ended without a status (exit ${String(await exited)})`, { exitCode: 125 });
      }
      return end;
    } finally {
      signal?.removeEventListener('abort', killAll);
      if (child.exitCode === null && child.signalCode === null) killAll();
    }
  }
}
