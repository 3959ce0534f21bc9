/**
 * The built-in sandbox: spawns the native launcher (build/tsbuild-launcher), which enters the
 * namespaces; this side writes the id maps, attaches the cgroup, releases the child and reports
 * how it ended. Every mount lives in the sandbox's own mount namespace, so nothing leaks to the
 * host when the process ends or tsbuild is killed (the launcher and its child die with us).
 */
import { constants, readFileSync, statSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { TsbuildError } from '../core/index.js';
import { accessInPool } from '../sys/index.js';
import { cleanupStaleCgroups, createCgroup } from './cgroup.js';
import type { CgroupLimits } from './cgroup-limits.js';
import type { Cgroup, CgroupUsage } from './cgroup-types.js';
import { runHandshake } from './launcher-handshake.js';
import { launcherStdioModes, startLauncher, type StartedLauncher } from './launcher-process.js';
import { LauncherZygote, zygoteModes } from './launcher-zygote.js';
import { encodeLauncherSpec, overlayRootDirs, type LauncherTarget } from './launcher-spec.js';
import { cleanStaleSandboxStates, initFileMounts, newSandboxId, prepareSharedState, renderInitFiles, type SharedSandboxState } from './sandbox-state.js';
import type { ResourcesSpec, RunSpec } from './spec.js';
import { hasNamespace } from './spec.js';
import type { EnclosingIdMaps, HostIdentity, IdMaps } from './userns.js';
import { resolveIdMaps, writeIdMaps } from './userns.js';
import { setupError, type LauncherStatus } from './launcher-status.js';

/** Where a sandboxed process's stdin comes from. */
export type StdinSource = 'inherit' | 'ignore' | number | Readable;
/** Where a sandboxed process's stdout/stderr go. */
export type OutputSink = 'inherit' | 'ignore' | number | Writable;

/** The stdio of a sandboxed process (default: ignore stdin, inherit outputs). */
export interface SandboxStdio {
  readonly stdin?: StdinSource;
  readonly stdout?: OutputSink;
  readonly stderr?: OutputSink;
  /** The caller holds the terminal on stdin in raw mode and restores it after the output it forwards (see LauncherTarget). */
  readonly callerRestoresTerminal?: boolean;
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

/** Per-run additions to {@link Sandbox.run} (the OCI runtime spec's createRuntime hooks, in process). */
export interface RunHooks {
  /** Rewrites the resolv.conf text copied into the sandbox (the host's), e.g. for slirp4netns's DNS forwarder. */
  readonly resolvConf?: (hostText: string) => string;
  /** Rewrites the generated /etc/hosts text (e.g. `--add-host` entries). */
  readonly hosts?: (text: string) => string;
  /** Runs once the namespaces exist (id maps written, cgroup joined), before the process starts; a rejection ends the run with it. */
  readonly onCreated?: (pid: number) => Promise<void>;
  /**
   * Called once the launcher reports that the process ended, before the sandbox's own clean-up (the launcher's exit,
   * the cgroup's removal): what served only that process (slirp4netns) can stop meanwhile.
   */
  readonly onExited?: () => void;
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
  /**
   * Set when this process is root of a non-initial user namespace (a rootless build re-executed there,
   * see readEnclosingIdMaps): sandboxes are then rootless, each in a nested user namespace with an
   * identity map over these ids.
   */
  readonly enclosingIdMaps?: EnclosingIdMaps;
  /** /etc/subuid and /etc/subgid (defaults). */
  readonly subIdFiles?: { readonly subuid: string; readonly subgid: string };
  /** The host's resolv.conf copied into sandboxes (default /etc/resolv.conf). */
  readonly resolvConf?: string;
  /** Receives warnings (single-id map, cgroup limits that cannot be applied). */
  readonly onWarning?: (msg: string) => void;
  /**
   * Fork the launchers of runs with piped or discarded output from a launcher zygote (a build's
   * RUN steps; see launcher-zygote.ts), started by the first such run; {@link Sandbox.close} stops
   * it. Off when `TSBUILD_ZYGOTE=0`.
   */
  readonly zygote?: boolean;
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

/**
 * A sandbox started ahead of its spec ({@link Sandbox.prestart}): the launcher is spawned and joins the
 * sandbox's new cgroup itself while the caller prepares the root file system.
 */
export interface SandboxPrestart {
  /**
   * With `slirp4netns`: the pid of the slirp4netns the launcher started for the sandbox's new network namespace
   * (made before the spec came; the sandbox's process is born in it). The launcher owns it: the run's process
   * starts once it is ready, its exit fd closes when that process ends, and it is killed with the launcher.
   * Undefined without the option (or rootless), or when the launcher failed first (the run reports why).
   */
  readonly slirpPid: Promise<number | undefined>;
  /** Ends the launcher and removes the cgroup unless a run took this start (then nothing); idempotent. */
  dispose(): Promise<void>;
}

/** Options of {@link Sandbox.prestart}. */
export interface PrestartOptions {
  /**
   * The launcher makes the sandbox's network namespace at once and starts slirp4netns for it (root only: without a
   * user namespace; {@link SandboxPrestart.slirpPid}): `file` run as `argv0` with `args`, which must name the namespace
   * as `--netns-type=path /proc/self/fd/5` and use fd 3 as its ready fd and fd 4 as its exit fd (launcher.c
   * start_slirp). The run's spec must have a new network namespace (network `none`) and no user namespace.
   */
  readonly slirp4netns?: { readonly file: string; readonly argv0: string; readonly args: readonly string[] };
}

/** How long a prestarted launcher stays in its container's cgroup after the clone before it moves out (see #launch). */
const RELEASE_AFTER_MS = 50;

/** What a prestart made (Sandbox.prestart). */
interface PrestartParts {
  readonly id: string;
  readonly shared: SharedSandboxState;
  readonly cgroup: Cgroup | undefined;
  readonly launcher: StartedLauncher;
  /** The launcher attaches to the cgroup itself (its clone is then born there); not with a pids limit, which it would count against. */
  readonly early: boolean;
}

class Prestart implements SandboxPrestart {
  readonly #parts: Promise<PrestartParts>;
  readonly slirpPid: Promise<number | undefined>;
  readonly #onWarning: ((msg: string) => void) | undefined;
  /** Open until a run takes it or it is disposed of. */
  #state: 'open' | 'taken' | 'disposed' = 'open';

  constructor(parts: Promise<PrestartParts>, slirp: boolean, onWarning: ((msg: string) => void) | undefined) {
    this.#parts = parts;
    this.#onWarning = onWarning;
    parts.catch(() => undefined);
    // The launcher's first lines: "netns", then "slirp PID" (an error line instead stays for the handshake).
    this.slirpPid = !slirp ? Promise.resolve(undefined) : parts.then(async (p) => {
      if (p.launcher.pid === undefined || (await p.launcher.expectLine(/^netns$/)) === undefined) return undefined;
      const line = await p.launcher.expectLine(/^slirp \d+$/);
      return line === undefined ? undefined : Number(line.slice('slirp '.length));
    }, () => undefined);
  }

  /** The parts for one run; throws what the start failed with, or INTERNAL when already taken. */
  async take(): Promise<PrestartParts> {
    if (this.#state !== 'open') throw new TsbuildError('INTERNAL', `a prestarted sandbox was used after it was ${this.#state}`);
    this.#state = 'taken';
    return this.#parts;
  }

  async dispose(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'disposed';
    const parts = await this.#parts.catch(() => undefined);
    if (parts === undefined) return;
    parts.launcher.kill();
    await parts.launcher.exited;
    // Never in place of the caller's own error: a warning, as a run's cgroup that cannot be removed.
    await parts.cgroup?.destroy().catch((err: unknown) => this.#onWarning?.(`cannot remove the sandbox cgroup: ${(err as Error).message}`));
  }
}

/** Runs RunSpecs with the native launcher. Holds no mutable state besides one-time preparation. */
export class Sandbox {
  readonly #options: SandboxOptions;
  /** One-time work (launcher check, the state dir's shared parts), done by the first run. */
  #ready: Promise<SharedSandboxState> | undefined;
  /** The one-time removal of what SIGKILLed tsbuilds left, started once the first sandbox's command was released. */
  #swept: Promise<void> | undefined;
  /** The planned id maps (from /etc/subuid and /etc/subgid), read by the first run with a user namespace. */
  #idMaps: ReturnType<typeof resolveIdMaps> | undefined;
  /** The launcher zygote (options.zygote), started by the first run that can use it. */
  #zygote: LauncherZygote | undefined;

  constructor(options: SandboxOptions) {
    this.#options = options;
  }

  /** True when sandboxes need a user namespace (not root, or root of a non-initial user namespace). */
  get rootless(): boolean {
    return this.#options.host.uid !== 0 || this.#options.enclosingIdMaps !== undefined;
  }

  /**
   * Runs `spec` to completion. Resolves with the exit code (128+n for signal n); throws
   * SANDBOX_ROOTFS_NOT_FOUND, SANDBOX_COMMAND_NOT_FOUND (exitCode 127), SANDBOX_SETUP (a
   * launcher step failed, with its errno), SANDBOX_ABORTED (the signal fired; the whole pid
   * namespace was killed), SANDBOX_LAUNCHER (missing launcher), or what a hook threw.
   */
  async run(spec: RunSpec, stdio: SandboxStdio = {}, signal?: AbortSignal, hooks: RunHooks = {}, prestart?: SandboxPrestart): Promise<RunResult> {
    const o = this.#options;
    // A prestart's launcher is ended (unless the handshake took it) and its cgroup removed by the finally below.
    const pre = prestart === undefined ? undefined : await (prestart as Prestart).take();
    let cgroup: Cgroup | undefined = pre?.cgroup;
    try {
      signal?.throwIfAborted();
      const shared = pre?.shared ?? await this.#prepared();
      // A directory root is checked here (one stat); an overlay root's directories (one per layer) only when its mount fails.
      if (spec.root.overlay === undefined) this.#checkRoot(spec);
      // SECURITY: rootless sandboxes always get a user namespace; the launcher never runs setuid.
      const runSpec: RunSpec = this.rootless && !hasNamespace(spec, 'user')
        ? { ...spec, linux: { ...spec.linux, namespaces: [...spec.linux.namespaces, { type: 'user' }] } }
        : spec;
      let maps: IdMaps | undefined;
      if (hasNamespace(runSpec, 'user')) {
        const first = this.#idMaps === undefined;
        this.#idMaps ??= resolveIdMaps(o.host, o.subIdFiles ?? { subuid: '/etc/subuid', subgid: '/etc/subgid' }, o.enclosingIdMaps);
        const planned = await this.#idMaps;
        if (first && planned.warning !== undefined) o.onWarning?.(planned.warning);
        maps = runSpec.linux.uidMappings !== undefined && runSpec.linux.gidMappings !== undefined
          ? { ...planned.maps, uid: runSpec.linux.uidMappings, gid: runSpec.linux.gidMappings }
          : planned.maps;
      }
      const id = pre?.id ?? newSandboxId();
      let resolvConf = '';
      try {
        resolvConf = readFileSync(o.resolvConf ?? '/etc/resolv.conf', 'utf8');
      } catch {
        // no resolver configuration on the host: an empty resolv.conf
      }
      if (hooks.resolvConf !== undefined) resolvConf = hooks.resolvConf(resolvConf);
      // Nothing per sandbox on the host: the launcher writes the init files to a tmpfs in the sandbox's
      // mount namespace and mounts the overlay on the shared, empty .rootfs (see sandbox-state.ts).
      const target: LauncherTarget = {
        rootfs: runSpec.root.overlay === undefined ? runSpec.root.path : shared.rootMount,
        extraLowerdirs: runSpec.root.overlay === undefined ? [] : [shared.initLayer],
        extraMounts: initFileMounts(shared.filesDir),
        filesDir: shared.filesDir,
        files: renderInitFiles({ hostname: runSpec.hostname ?? id, resolvConf }).map((f) => (f.name === 'hosts' && hooks.hosts !== undefined ? { ...f, content: hooks.hosts(f.content) } : f)),
        ...(stdio.callerRestoresTerminal === true ? { callerRestoresTerminal: true } : {}),
      };
      const limits = resourcesToLimits(runSpec.linux.resources);
      if (pre === undefined && runSpec.linux.resources !== undefined) {
        cgroup = await this.#createCgroup(id, limits);
      }
      // A launcher making the network namespace reports it and its slirp4netns first (SandboxPrestart.slirpPid reads those lines): the
      // handshake reads the status pipe only after it.
      if (prestart !== undefined) await prestart.slirpPid;
      const status = await this.#launch(runSpec, target, maps, cgroup, stdio, signal, hooks, pre);
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
      // A prestarted launcher the handshake never took (a failure before it) ends here; once it has ended, nothing.
      if (pre !== undefined) {
        pre.launcher.kill();
        await pre.launcher.exited;
      }
      await cgroup?.destroy().catch((err: unknown) => o.onWarning?.(`cannot remove the sandbox cgroup: ${(err as Error).message}`));
      await this.#swept;
    }
  }

  /**
   * Starts a sandbox ahead of its spec: the one-time preparation, the cgroup of `resources` (none when
   * undefined), and the launcher with stdio fds of `stdio`'s kinds. On cgroup v2 the launcher moves into
   * the cgroup in the background: that attach waits for a kernel grace period (7-35 ms), which then
   * overlaps the caller's work instead of holding up the start; the sandbox's process is born in the
   * cgroup and the launcher moves back out once it has cloned it. On v1 the sandbox's process joins the
   * cgroup itself after its clone, through `tasks`, without that wait (Cgroup.selfJoinFiles). Pass the
   * result to one {@link run} whose spec has the same resources and stdio of the same kinds, or dispose of it.
   */
  async prestart(resources: ResourcesSpec | undefined, stdio: SandboxStdio, options: PrestartOptions = {}): Promise<SandboxPrestart> {
    const o = this.#options;
    // SECURITY: a network namespace made by the launcher belongs to the host's user namespace: root only.
    const slirp = this.rootless ? undefined : options.slirp4netns;
    // Up to the launcher's spawn only synchronous work (cgroup files are written synchronously, cgroup-fs.ts): the
    // caller awaits no I/O here, and the launcher starts its cgroup attach as early as it can.
    // The one-time preparation (launcher check, stale state, the state dir's shared parts) goes on meanwhile. It starts
    // first: its first file operation starts libuv's thread pool, whose threads could not be created while the
    // launcher's attach waits (a cgroup attach holds back every fork and thread creation of the machine until then).
    const ready = this.#prepared();
    // Handled below once the launcher runs; a cgroup that cannot be made throws first (no unhandled rejection).
    ready.catch(() => undefined);
    const id = newSandboxId();
    const cgroup = resources === undefined ? undefined : await this.#createCgroup(id, resourcesToLimits(resources));
    // Where the sandbox's process cannot join its cgroup itself without a grace period (v2: Cgroup.selfJoinFiles),
    // the launcher joins it, before it reads its spec (launcher.c --cgroup): nothing of this process waits for
    // that, and the child it clones once it has the spec is born in the cgroup.
    const early = cgroup !== undefined && cgroup.selfJoinFiles === undefined && resources?.pids?.limit === undefined;
    // "--slirp4netns" takes the rest of the command line.
    const args = [
      ...(early ? (cgroup as Cgroup).procsFiles.flatMap((f) => ['--cgroup', f]) : []),
      ...(slirp === undefined ? [] : ['--netns', '--slirp4netns', slirp.file, slirp.argv0, ...slirp.args]),
    ];
    const launcher = startLauncher(o.launcherPath, launcherStdioModes(stdio), false, args);
    const parts = ready.then((shared) => ({ id, shared, cgroup, launcher, early }), async (err: unknown) => {
      launcher.kill();
      await launcher.exited;
      await cgroup?.destroy().catch(() => undefined);
      throw err;
    });
    return new Prestart(parts, slirp !== undefined, o.onWarning);
  }

  /** Stops the launcher zygote, if one was started, and resolves once it has exited; a later run starts a new one. */
  async close(): Promise<void> {
    const zygote = this.#zygote;
    this.#zygote = undefined;
    await zygote?.close();
  }

  #zygoteFor(stdio: SandboxStdio): LauncherZygote | undefined {
    if (this.#options.zygote !== true || process.env.TSBUILD_ZYGOTE === '0' || zygoteModes(stdio) === undefined) return undefined;
    this.#zygote ??= new LauncherZygote(this.#options.launcherPath);
    return this.#zygote;
  }

  /** The one-time preparation, started by the first caller; a failed one is tried again by the next. */
  #prepared(): Promise<SharedSandboxState> {
    this.#ready ??= this.#prepare().catch((err: unknown) => {
      this.#ready = undefined;
      throw err;
    });
    return this.#ready;
  }

  /** The cgroup of sandbox `id` with `limits` (undefined when none can be used). */
  #createCgroup(id: string, limits: CgroupLimits): Promise<Cgroup | undefined> {
    return createCgroup(`sandbox-${id}`, limits, { rootless: this.rootless, ...(this.#options.onWarning === undefined ? {} : { onWarning: this.#options.onWarning }) });
  }

  /**
   * Removes what SIGKILLed tsbuilds left (cgroups; the OCI runtime path's per-sandbox state dirs), once per instance.
   * Started once the first sandbox's command is released: the sweep (~1.5 ms of this thread's time, ten cgroupfs
   * directories read) then overlaps the command instead of holding up its start. Nothing of a live owner is
   * touched, so it needs no order with our own state. Never rejects: a failure is a warning.
   */
  #sweepStale(): void {
    const o = this.#options;
    const warn = (what: string) => (err: unknown): void => o.onWarning?.(`could not remove ${what}: ${err instanceof Error ? err.message : String(err)}`);
    this.#swept ??= (async () => {
      await cleanStaleSandboxStates(o.stateDir).catch(warn('stale sandbox state'));
      await cleanupStaleCgroups({ rootless: this.rootless }).catch(warn('stale cgroups'));
    })();
  }

  /** Checks the launcher and creates the state dir's shared parts (once per instance). */
  async #prepare(): Promise<SharedSandboxState> {
    const o = this.#options;
    try {
      await accessInPool(o.launcherPath, constants.X_OK);
    } catch (err) {
      throw new TsbuildError('SANDBOX_LAUNCHER', `the sandbox launcher ${o.launcherPath} is missing or not executable`, {
        cause: err,
        hint: 'build it with "npm run build" (needs a C compiler: apt-get install gcc libc6-dev)',
        exitCode: 125,
      });
    }
    return prepareSharedState(o.stateDir);
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
  async #launch(spec: RunSpec, target: LauncherTarget, maps: IdMaps | undefined, cgroup: Cgroup | undefined, stdio: SandboxStdio, signal: AbortSignal | undefined, hooks: RunHooks, pre?: PrestartParts): Promise<LauncherStatus> {
    const { onCreated, onExited } = hooks;
    const early = pre?.early === true && cgroup !== undefined;
    // On v1 the sandbox's process joins its cgroup itself, first thing after its clone (launcher.c run_child),
    // through the `tasks` files: a task moving only itself takes no grace period. Else this process attaches it.
    const selfJoin = cgroup?.selfJoinFiles;
    let releaseTimer: NodeJS.Timeout | undefined;
    const releaseAtStart = maps === undefined && (cgroup === undefined || selfJoin !== undefined) && onCreated === undefined;
    const handshake = runHandshake({
      launcherPath: this.#options.launcherPath,
      input: encodeLauncherSpec(spec, selfJoin === undefined ? target : { ...target, joinCgroups: selfJoin }),
      stdio,
      zygote: pre === undefined ? this.#zygoteFor(stdio) : undefined,
      ...(pre === undefined ? {} : { launcher: pre.launcher.attach(stdio) }),
      signal,
      // Two releases (launcher.c run_child): 'm' after the id maps, then the child sets up its file
      // system while the cgroup is joined and the hooks run; 'g' lets the command start. With none
      // of them (a root build's RUN step) 'g' goes with the spec: the child never waits for us.
      releaseAtStart,
      ...(onExited === undefined ? {} : { onEnded: onExited }),
      onPid: async (pid, go) => {
        if (maps !== undefined) {
          await writeIdMaps(pid, maps);
          go.write('m');
        }
        // A prestarted launcher was in the cgroup when it cloned the child: it moves back out, in the
        // background, once the container has run for RELEASE_AFTER_MS (a short run ends first, and its
        // launcher with it: an attach in flight would hold up the cgroup's removal at the end for a grace
        // period, as it holds cgroup_mutex). A failure only leaves it counted with the container until it ends.
        const launcherPid = pre?.launcher.pid;
        if (early && launcherPid !== undefined) {
          releaseTimer = setTimeout(() => {
            cgroup.releaseProcess(launcherPid).catch((err: unknown) => this.#options.onWarning?.(`the sandbox launcher stays in the container's cgroup: ${(err as Error).message}`));
          }, RELEASE_AFTER_MS);
          releaseTimer.unref();
        }
        // The cgroup attach waits for a kernel grace period (asynchronously): the hooks (slirp4netns) run meanwhile.
        await Promise.all([early || selfJoin !== undefined ? undefined : cgroup?.addProcess(pid), onCreated?.(pid)]);
        go.end('g');
        this.#sweepStale();
      },
    });
    // Released with its spec: the command does not wait for this thread.
    if (releaseAtStart) this.#sweepStale();
    const r = await handshake;
    // The launcher has ended: it left the cgroup with its exit.
    clearTimeout(releaseTimer);
    const error = r.lines.find((l) => l.error !== undefined)?.error;
    if (r.aborted) {
      throw new TsbuildError('SANDBOX_ABORTED', `sandbox stopped: ${String((signal?.reason as Error | undefined)?.message ?? signal?.reason ?? 'aborted')}`, { cause: signal?.reason, exitCode: 137 });
    }
    // A failed release stops the child at wait-for-parent: report its cause. A child that failed its set-up
    // first (the release then found it gone) reports its own step.
    if (r.releaseError !== undefined && (error === undefined || error.step === 'wait-for-parent')) throw r.releaseError;
    if (error !== undefined && (error.step === 'mount-overlay' || error.step === 'chdir-overlay-dir')) this.#checkRoot(spec);
    if (error !== undefined) throw setupError(error, spec);
    const end = r.lines.find((l) => l.exitCode !== undefined || l.signal !== undefined);
    if (end === undefined) {
      throw new TsbuildError('SANDBOX_LAUNCHER', `the sandbox launcher ended without a status (exit ${String(await r.exited)})`, { exitCode: 125 });
    }
    return end;
  }
}
