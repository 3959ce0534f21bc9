import { TsbuildError } from '../core/index.js';
import {
  ALL_CAPABILITIES, ALL_JOIN_NAMESPACES, computeCapabilities, isProcessFrozen, joinProcess, openProcessCgroup, withDefaultRlimits,
  type JoinResult, type SandboxStdio,
} from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import { mergeEnv } from './container-config.js';
import type { ContainerEntry, ContainerStore } from './container-store.js';
import { requireRunning } from './pause.js';
import { ulimitsToRlimits } from './run-options.js';
import { resolveSnapshotUser } from './snapshot-user.js';

/** What `exec` needs. */
export interface ExecDeps {
  readonly containers: ContainerStore;
  readonly snapshotter: Snapshotter;
  readonly launcherPath: string;
  readonly rootless: boolean;
}

/** The flags of `docker exec`. */
export interface ExecOptions {
  readonly command: readonly string[];
  /** `-e` values, already `K=V`. */
  readonly env: readonly string[];
  /** `-u`: resolved in the container's /etc/passwd and /etc/group; default the container's user. */
  readonly user?: string;
  /** `-w`: default the container's working directory. */
  readonly workdir?: string;
  readonly terminal: boolean;
  readonly detach: boolean;
  /** `--privileged`: every capability (as in a privileged container), whatever the container got. */
  readonly privileged?: boolean;
}

/**
 * Runs a command in a running container, as `docker exec`: in all its namespaces and its cgroup,
 * with its env (plus `-e`), user, working directory, capabilities (all with `privileged`), rlimits (`--ulimit`) and no_new_privs (`--security-opt`). Resolves with
 * how it ended (exit code propagated). Throws RUN_NOT_RUNNING, RUN_PAUSED, RUN_NO_COMMAND,
 * SANDBOX_COMMAND_NOT_FOUND (127), SANDBOX_COMMAND_NOT_EXECUTABLE (126), SANDBOX_BAD_USER/BAD_WORKDIR.
 */
export async function execInContainer(deps: ExecDeps, entry: ContainerEntry, options: ExecOptions, stdio: SandboxStdio, signal?: AbortSignal): Promise<JoinResult> {
  if (options.command.length === 0) throw new TsbuildError('RUN_NO_COMMAND', 'exec needs a command to run', { hint: 'usage: tsbuild exec [OPTIONS] CONTAINER COMMAND [ARG...]', exitCode: 1 });
  const { config, state } = await requireRunning(deps.containers, entry);
  if (isProcessFrozen(state.pid)) {
    throw new TsbuildError('RUN_PAUSED', `container ${config.id} is paused, unpause the container before exec`, { exitCode: 1 });
  }
  const user = options.user === undefined ? config.user : await resolveSnapshotUser(deps.snapshotter, config.snapshotKey, options.user);
  const hostnameEnv = `HOSTNAME=${config.hostname}`;
  const base = config.env.some((v) => v.startsWith('HOSTNAME=')) ? config.env : [...config.env, hostnameEnv];
  const cgroup = await openProcessCgroup(state.pid, { rootless: deps.rootless });
  return joinProcess(deps.launcherPath, {
    targetPid: state.pid,
    namespaces: ALL_JOIN_NAMESPACES,
    args: options.command,
    env: mergeEnv(base, options.env),
    cwd: options.workdir ?? config.cwd,
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids ?? [] },
    // Privileged (the exec or the container): every capability the launcher holds, as docker gives all.
    ...(options.privileged === true || config.privileged === true
      ? { capabilities: ALL_CAPABILITIES, capabilitiesHeld: true }
      : { capabilities: computeCapabilities(config.capAdd, config.capDrop) }),
    // The container's --ulimit values over docker's defaults, as its main process got them.
    rlimits: withDefaultRlimits(config.ulimits === undefined ? undefined : ulimitsToRlimits(config.ulimits)),
    noNewPrivileges: config.noNewPrivileges ?? config.privileged !== true,
    // The container's seccomp policy (docker's default unless privileged or unconfined); an
    // `exec --privileged` in a filtered container keeps the filter, as docker.
    seccomp: config.privileged !== true && config.seccompUnconfined !== true,
    terminal: options.terminal,
    detach: options.detach,
    ...(cgroup === undefined ? {} : { cgroup }),
  }, stdio, signal);
}
