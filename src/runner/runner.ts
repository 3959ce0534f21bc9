import { readFile, readlink } from 'node:fs/promises';
import { TsbuildError } from '../core/index.js';
import { createRunSpec, parseGroup, parsePasswd, resolveUserFromTables, type RootSpec, type RunResult, type Sandbox, type SandboxStdio } from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import type { ContainerRecord, ContainerState, ContainerStore } from './container-store.js';
import { ZERO_TIME } from './container-store.js';
import { childPids, isProcessAlive, processStartTime } from './process-info.js';

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
}

/** The snapshot key of a container's writable layer. */
export function snapshotKeyOf(id: string): string {
  return `ctr-${id}`;
}

/** Reads a small file the snapshot `name` shows at `path` (without mounting), or undefined. */
async function readSnapshotFile(snapshotter: Snapshotter, name: string, path: string): Promise<string | undefined> {
  const host = await snapshotter.lookup(name, path);
  if (host === undefined) return undefined;
  return readFile(host, 'utf8').catch(() => undefined);
}

/** Resolves `user` (`name`, `uid`, `name:group`...) against the snapshot's /etc/passwd and /etc/group. Throws SANDBOX_* as `run --rootfs`. */
export async function resolveSnapshotUser(snapshotter: Snapshotter, name: string, user: string): Promise<{ uid: number; gid: number; additionalGids: number[]; home: string | undefined }> {
  const passwd = await readSnapshotFile(snapshotter, name, '/etc/passwd');
  const group = await readSnapshotFile(snapshotter, name, '/etc/group');
  const r = resolveUserFromTables(user, passwd === undefined ? undefined : parsePasswd(passwd), group === undefined ? undefined : parseGroup(group));
  return { uid: r.uid, gid: r.gid, additionalGids: r.additionalGids, home: r.home };
}

/** The sandbox root of an active snapshot. */
function rootOf(snapshotter: Snapshotter, key: string, readonly: boolean): Promise<RootSpec> {
  return snapshotter.open(key).then((active) => {
    const m = active.mounts();
    return m.type === 'bind'
      ? { path: m.source, readonly }
      // Relative lowerdirs from the snapshotter's base dir keep long chains within mount(2)'s one page; its probed options (userxattr...) apply.
      : { overlay: { lowerdirs: m.relativeLowerdirs, upperdir: m.upperdir, workdir: m.workdir, baseDir: m.baseDir, options: m.options }, readonly };
  });
}

/**
 * Finds the host pid of the container's first process: a child of one of our launcher children
 * whose environment carries the container's `HOSTNAME=` (set for every container, as docker).
 * With `loose` (the process may have replaced its environment), the only child of our only
 * launcher is taken too: a monitor owns exactly one container.
 */
async function findContainerPid(launcherPath: string, ownerPid: number, hostnameEnv: string, loose: boolean): Promise<number | undefined> {
  const launchers: number[] = [];
  for (const l of childPids(ownerPid)) {
    const exe = await readlink(`/proc/${l}/exe`).catch(() => '');
    if (exe === launcherPath) launchers.push(l);
  }
  for (const l of launchers) {
    for (const c of childPids(l)) {
      const environ = await readFile(`/proc/${c}/environ`, 'latin1').catch(() => '');
      if (environ.split('\0').includes(hostnameEnv)) return c;
    }
  }
  if (loose && launchers.length === 1) {
    const children = childPids(launchers[0] as number);
    if (children.length === 1) return children[0];
  }
  return undefined;
}

/** How {@link runContainer} ends besides the exit code. */
export interface RunContainerOptions {
  /** Called once the container's process runs (its pid recorded), or when it ended before that. */
  readonly onStarted?: () => void;
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
  const root = await rootOf(deps.snapshotter, config.snapshotKey, config.readonlyRootfs).catch((err: unknown) => {
    if (err instanceof TsbuildError && err.code === 'SNAPSHOT_NOT_FOUND') {
      throw new TsbuildError('RUN_LAYER_GONE', `the writable layer of container ${id.slice(0, 12)} is gone`, {
        cause: err, exitCode: 125, hint: `remove the container with "tsbuild rm ${config.name}" and run the image again`,
      });
    }
    throw err;
  });
  const hostnameEnv = `HOSTNAME=${config.hostname}`;
  const env = config.env.some((e) => e.startsWith('HOSTNAME=')) ? config.env : [...config.env, hostnameEnv];
  const spec = createRunSpec({
    args: config.args,
    root,
    env,
    cwd: config.cwd,
    user: config.user,
    hostname: config.hostname,
    network: config.network,
    userNamespace: deps.rootless,
    capAdd: config.capAdd,
    capDrop: config.capDrop,
    mounts: config.mounts,
    ...(config.resources === undefined ? {} : { resources: config.resources }),
    terminal: false,
  });
  const running: ContainerState = {
    status: 'running', pid: 0, pidStartTime: '', monitorPid: deps.ownerPid, monitorStartTime: processStartTime(deps.ownerPid) ?? '',
    exitCode: 0, oomKilled: false, error: '', startedAt: new Date().toISOString(), finishedAt: ZERO_TIME,
  };
  await containers.writeState(id, running);
  let started = false;
  const markStarted = (): void => {
    if (!started) {
      started = true;
      options.onStarted?.();
    }
  };
  let ended = false;
  // Find the container's pid while it starts, so stop/kill from other processes can signal it.
  const watch = (async () => {
    const since = Date.now();
    while (!ended) {
      const pid = await findContainerPid(deps.launcherPath, deps.ownerPid, env.find((e) => e.startsWith('HOSTNAME=')) ?? hostnameEnv, Date.now() - since > 500);
      if (pid !== undefined && !ended) {
        await containers.writeState(id, { ...running, pid, pidStartTime: processStartTime(pid) ?? '' });
        markStarted();
        return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  let result: RunResult | undefined;
  let failure: unknown;
  try {
    result = await deps.sandbox.run(spec, stdio, signal);
  } catch (err) {
    failure = err;
  }
  ended = true;
  await watch.catch(() => undefined);
  const exitCode = result?.exitCode ?? (failure instanceof TsbuildError ? failure.exitCode ?? 125 : 125);
  await containers.writeState(id, {
    ...running,
    status: 'exited',
    exitCode,
    oomKilled: result?.oomKilled ?? false,
    error: failure === undefined ? '' : (failure as Error).message,
    finishedAt: new Date().toISOString(),
  });
  markStarted();
  if (config.autoRemove) await removeContainer(deps, config);
  if (failure !== undefined) throw failure;
  return result as RunResult;
}

/** Removes a container that is not running: its writable layer (snapshot), state, logs and name. */
export async function removeContainer(deps: Pick<RunnerDeps, 'containers' | 'snapshotter'>, config: ContainerRecord): Promise<void> {
  await deps.snapshotter.remove(config.snapshotKey);
  await deps.containers.remove(config.id, config.name);
}

/** True while the container's owner process lives (state `running` and not a ghost). */
export function isContainerRunning(state: ContainerState): boolean {
  return state.status === 'running' && isProcessAlive(state.monitorPid, state.monitorStartTime);
}
