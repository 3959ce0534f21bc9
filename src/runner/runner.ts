import { readFileSync } from 'node:fs';
import { isTsbuildError, TsbuildError } from '../core/index.js';
import { cleanupStaleCgroups, createRunSpec, listHostDevices, type RootSpec, type RunHooks, type RunResult, type Sandbox, type SandboxPrestart, type SandboxStdio } from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import type { ContainerRecord, ContainerState, ContainerStore } from './container-store.js';
import { ZERO_TIME } from './container-store.js';
import { prepareContainerNetwork, type SlirpLookup, type SlirpProcess } from './network-slirp.js';
import { publishPorts } from './port-forwarder.js';
import { bindingsOfContainer } from './ports.js';
import { portsFileOf } from './ports-state.js';
import { isProcessAlive, processStartTime } from './process-info.js';
import { removeAnonymousVolumes } from './volumes.js';
import { spawnAddonBeside } from '../sys/index.js';
import { stdioForTerminal } from './tty.js';
import { appendExtraHosts, applyDnsConfig, ulimitsToRlimits } from './run-options.js';

/** What running a container needs; the CLI wires concrete instances. */
export interface RunnerDeps {
  readonly containers: ContainerStore;
  readonly snapshotter: Snapshotter;
  readonly sandbox: Sandbox;
  /** Path of the sandbox launcher (to find the container's pid among our children). */
  readonly launcherPath: string;
  /** True when not root: the sandbox gets a user namespace. */
  readonly rootless: boolean;
  /** This process's pid (the owner recorded in state.json). */
  readonly ownerPid: number;
  /** slirp4netns for `--network slirp4netns` (findSlirp4netns); absent: not available. */
  readonly slirp4netns?: SlirpLookup;
}

/** Where `--init` mounts the init binary in the container (docker uses /sbin/docker-init). */
export const INIT_PATH = '/sbin/tsbuild-init';

/** The snapshot key of a container's writable layer. */
export function snapshotKeyOf(id: string): string {
  return `ctr-${id}`;
}

/** The sandbox root of an active snapshot. */
function rootOf(snapshotter: Snapshotter, key: string, readonly: boolean, usedOnce: boolean): Promise<RootSpec> {
  return snapshotter.open(key).then((active) => {
    const m = active.mounts();
    return m.type === 'bind'
      ? { path: m.source, readonly }
      // Relative lowerdirs from the snapshotter's base dir keep long chains within mount(2)'s one page; its probed options (userxattr...) apply.
      // A writable layer mounted once (--rm) is `volatile`: its unmount skips syncing the whole upper file system, as podman does.
      : { overlay: { lowerdirs: m.relativeLowerdirs, upperdir: m.upperdir, workdir: m.workdir, baseDir: m.baseDir, options: usedOnce ? [...m.options, 'volatile'] : m.options }, readonly };
  });
}

/** How {@link runContainer} ends besides the exit code. */
export interface RunContainerOptions {
  /** Called once the container's process runs (its pid recorded), or when it ended before that. */
  readonly onStarted?: () => void;
  /** Called once the container's process exists, as it is about to be released: work that need not come before its command can start then. */
  readonly onCreated?: (pid: number) => void;
  /** Awaited as soon as the container's process has ended, before its state says exited and before --rm removes it (stops health probes). */
  readonly onEnded?: () => Promise<void>;
  /** Receives problems that do not stop the container (e.g. its published ports stopped forwarding). */
  readonly onWarning?: (message: string) => void;
  /** Restarts by the restart policy before this run (recorded in the state). */
  readonly restartCount?: number;
  /** A sandbox started ahead for this run (Sandbox.prestart, with the container's resources); the run takes it. */
  readonly prestart?: SandboxPrestart;
  /** slirp4netns the prestart's launcher started for its network namespace (launcherSlirp); the run waits for its end. */
  readonly slirpAhead?: Promise<SlirpProcess | undefined>;
}

/**
 * Runs the created (or exited) container `id` to completion in this process, which becomes its
 * owner: state.json goes `running` (pid, times) then `exited` (exit code, finish time, error).
 * The writable layer is the container's active snapshot, kept between runs. With `autoRemove`
 * the container is removed afterwards. Resolves with the sandbox result; sandbox errors (e.g.
 * SANDBOX_COMMAND_NOT_FOUND) are recorded and rethrown.
 */
export async function runContainer(deps: RunnerDeps, config: ContainerRecord, stdio: SandboxStdio, signal: AbortSignal, options: RunContainerOptions = {}): Promise<RunResult> {
  const { containers } = deps;
  const id = config.id;
  const root = await rootOf(deps.snapshotter, config.snapshotKey, config.readonlyRootfs, config.autoRemove).catch((err: unknown) => {
    if (err instanceof TsbuildError && err.code === 'SNAPSHOT_NOT_FOUND') {
      throw new TsbuildError('RUN_LAYER_GONE', `the writable layer of container ${id.slice(0, 12)} is gone`, {
        cause: err, exitCode: 125, hint: `remove the container with "tsbuild rm ${config.name}" and run the image again`,
      });
    }
    throw err;
  });
  const hostnameEnv = `HOSTNAME=${config.hostname}`;
  const env = config.env.some((e) => e.startsWith('HOSTNAME=')) ? config.env : [...config.env, hostnameEnv];
  // slirp4netns (outbound network) starts in the container's namespaces before its command runs.
  const net = prepareContainerNetwork({ mode: config.network, ...(config.slirpOptions === undefined ? {} : { slirp: config.slirpOptions }) }, deps.slirp4netns, {
    rootless: deps.rootless, tag: containers.dirOf(id), spawnAddon: spawnAddonBeside(deps.launcherPath), ...(options.slirpAhead === undefined ? {} : { ahead: options.slirpAhead }),
  });
  const spec = createRunSpec({
    args: config.init === true ? [INIT_PATH, '--', ...config.args] : config.args,
    root,
    env,
    cwd: config.cwd,
    user: config.user,
    hostname: config.hostname,
    network: net.sandboxMode,
    userNamespace: deps.rootless,
    capAdd: config.capAdd,
    capDrop: config.capDrop,
    mounts: config.mounts,
    // Always a cgroup (when one can be used), even without limits: exec, pause, stats and top need it.
    resources: config.resources ?? {},
    terminal: config.tty === true,
    ...(config.ulimits === undefined ? {} : { rlimits: ulimitsToRlimits(config.ulimits) }),
    ...(config.noNewPrivileges === undefined ? {} : { noNewPrivileges: config.noNewPrivileges }),
    ...(config.seccompUnconfined === true ? { seccomp: 'unconfined' as const } : {}),
    ...(config.shmSize === undefined ? {} : { shmSize: config.shmSize }),
    ...(config.privileged === true ? { privileged: true, devices: listHostDevices() } : {}),
  });
  // --dns* replace lines of the network's resolv.conf; --add-host entries end /etc/hosts.
  const netResolv = net.hooks.resolvConf;
  const hooks: RunHooks = {
    ...net.hooks,
    ...(config.dns === undefined ? {} : { resolvConf: (host: string) => applyDnsConfig(netResolv === undefined ? host : netResolv(host), config.dns) }),
    ...(config.extraHosts === undefined ? {} : { hosts: (text: string) => appendExtraHosts(text, config.extraHosts ?? []) }),
  };
  const running: ContainerState = {
    status: 'running', pid: 0, pidStartTime: '', monitorPid: deps.ownerPid, monitorStartTime: processStartTime(deps.ownerPid) ?? '',
    exitCode: 0, oomKilled: false, error: '', startedAt: new Date().toISOString(), finishedAt: ZERO_TIME,
    ...(options.restartCount === undefined ? {} : { restartCount: options.restartCount }),
  };
  // Published ports are bound before the container starts: a port in use fails the start (RUN_PORT_*), nothing runs.
  const ports = await publishPorts(bindingsOfContainer(config), {
    rootless: deps.rootless, stateFile: portsFileOf(containers, id), tag: containers.dirOf(id), ...(options.onWarning === undefined ? {} : { onWarning: options.onWarning }),
    proxyPath: deps.launcherPath.replace(/[^/]*$/, 'tsbuild-port-proxy'), // beside the launcher, as the init
  });
  await containers.writeState(id, running).catch(async (err: unknown) => {
    await ports.close();
    throw err;
  });
  let started = false;
  const markStarted = (): void => {
    if (!started) {
      started = true;
      options.onStarted?.();
    }
  };
  let ended = false;
  // The sandbox reports the container's pid once its namespaces exist, before its command starts; the
  // state records it once that process runs the command (its environment carries the container's
  // HOSTNAME=; after 500 ms it counts as running anyway, the command may replace its environment).
  // Only that one process is polled, not every child of this process.
  let createdPid: number | undefined;
  const hostnameLine = env.find((e) => e.startsWith('HOSTNAME=')) ?? hostnameEnv;
  // The poll's pause ends early when the run ends (waiting out the timer held up the end of every short run).
  let wake = (): void => undefined;
  const watch = (async () => {
    let since: number | undefined;
    while (!ended) {
      if (createdPid !== undefined) {
        since ??= Date.now();
        const pid = createdPid;
        const environ = readEnviron(pid);
        if ((environ.split('\0').includes(hostnameLine) || Date.now() - since > 500) && !ended) {
          await containers.writeState(id, { ...running, pid, pidStartTime: processStartTime(pid) ?? '' });
          void ports.attach(pid);
          markStarted();
          return;
        }
      }
      // The run may have ended while /proc was read: no new pause then (wake() already ran).
      if (ended) break;
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 5);
        wake = () => {
          clearTimeout(timer);
          r();
        };
      });
    }
  })();
  const netCreated = hooks.onCreated;
  const runHooks: RunHooks = {
    ...hooks,
    onCreated: async (pid: number) => {
      createdPid = pid;
      options.onCreated?.(pid);
      if (netCreated !== undefined) await netCreated(pid);
    },
    // Nothing in the container uses its network once its process has ended: slirp4netns (~1.5 ms to end) stops while
    // the sandbox cleans up. Idempotent: the stop below waits for it.
    onExited: () => {
      void net.stop();
    },
  };
  let result: RunResult | undefined;
  let failure: unknown;
  try {
    result = await deps.sandbox.run(spec, stdioForTerminal(config.tty === true, stdio), signal, runHooks, options.prestart);
  } catch (err) {
    // slirp4netns that the prestarted launcher started failed: the same error as when the run starts it (startSlirp).
    failure = isTsbuildError(err, 'SANDBOX_NETWORK') ? new TsbuildError('RUN_NETWORK', err.message, { exitCode: 125, cause: err, ...(err.hint === undefined ? {} : { hint: err.hint }) }) : err;
  }
  ended = true;
  wake();
  await watch.catch(() => undefined);
  await options.onEnded?.().catch(() => undefined);
  await ports.close();
  // slirp4netns ends before the state says exited, or with --rm while the container is removed (ends: it runs no more
  // code; the kernel releases its tap device by itself, 15-25 ms that no longer hold up the end of the run).
  const netStopped = net.stop();
  if (!config.autoRemove) await netStopped;
  const exitCode = result?.exitCode ?? (failure instanceof TsbuildError ? failure.exitCode ?? 125 : 125);
  const exited: ContainerState = {
    ...running,
    status: 'exited',
    exitCode,
    oomKilled: result?.oomKilled ?? false,
    error: failure === undefined ? '' : (failure as Error).message,
    finishedAt: new Date().toISOString(),
  };
  // With --rm the container goes at once; its exited state is written only when it cannot be removed (what is left
  // of it is recorded as exited, with its code): a state write and a rename cost ~1 ms of every short run.
  if (!config.autoRemove) await containers.writeState(id, exited);
  markStarted();
  if (config.autoRemove) {
    // The sandbox swept stale cgroups during this run (and removed its own): removal skips a second sweep.
    const [removal] = await Promise.allSettled([removeContainer(deps, config, { volumes: true, staleCgroupsSwept: true }), netStopped]);
    if (removal.status === 'rejected') {
      await containers.writeState(id, exited).catch(() => undefined);
      throw removal.reason;
    }
  }
  if (failure !== undefined) throw failure;
  return result as RunResult;
}

/** Removes a container that is not running: its writable layer (snapshot), state, logs and name; with `volumes` its anonymous volumes too. */
export async function removeContainer(deps: Pick<RunnerDeps, 'containers' | 'snapshotter'> & Partial<Pick<RunnerDeps, 'rootless'>>, config: ContainerRecord, options: { readonly volumes?: boolean; readonly monitorPid?: number; readonly staleCgroupsSwept?: boolean } = {}): Promise<void> {
  // Every part is attempted even when one fails (nothing half-removed is kept for lack of trying);
  // the first failure is reported.
  const failures: unknown[] = [];
  const rootless = deps.rootless ?? false;
  // A monitor killed with SIGKILL cannot remove the container's cgroup: that one must go (a failure is reported),
  // then every other cgroup whose owner is gone (best effort: those belong to other runs).
  if (options.monitorPid !== undefined && options.monitorPid > 0) {
    await cleanupStaleCgroups({ rootless, ownerPid: options.monitorPid }).catch((err: unknown) => { failures.push(err); });
  }
  if (options.staleCgroupsSwept !== true) await cleanupStaleCgroups({ rootless }).catch(() => undefined);
  await deps.snapshotter.remove(config.snapshotKey).catch((err: unknown) => { failures.push(err); });
  await deps.containers.remove(config.id, config.name).catch((err: unknown) => { failures.push(err); });
  if (options.volumes === true) await removeAnonymousVolumes(config).catch((err: unknown) => { failures.push(err); });
  if (failures.length > 0) throw failures[0];
}

/**
 * The environment block of process `pid` ('' when it cannot be read): read synchronously, a few KiB of
 * /proc, where node:fs's readFile takes five thread-pool round trips and a 64 KiB buffer for a file of no size.
 */
function readEnviron(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return '';
  }
}

/** True while the container's owner process lives (state `running` and not a ghost). */
export function isContainerRunning(state: ContainerState): boolean {
  return state.status === 'running' && isProcessAlive(state.monitorPid, state.monitorStartTime);
}
