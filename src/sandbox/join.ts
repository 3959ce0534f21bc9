/**
 * Runs a process inside the namespaces of a running process, like nsenter: the launcher's join
 * mode (launcher.c) setns()es into them, chroots to the target's root when the mount namespace
 * is joined, forks (the child enters the pid namespace), is moved into the given cgroup, drops
 * privileges and execs. Used by `exec`; any subset of namespaces works (`['net']` alone too).
 */
import { TsbuildError } from '../core/index.js';
import type { Cgroup } from './cgroup-types.js';
import { badSpec, capabilityMask, joinCgroupFiles, RLIMIT_NUMBERS } from './launcher-spec.js';
import { runHandshake } from './launcher-handshake.js';
import { setupError } from './launcher-status.js';
import type { SandboxStdio } from './sandbox.js';
import type { ProcessUser, Rlimit, RunSpec } from './spec.js';

/** A namespace a joined process can enter (the names of /proc/PID/ns/). */
export type JoinNamespace = 'user' | 'mnt' | 'pid' | 'net' | 'uts' | 'ipc' | 'cgroup';

/** Every namespace a container has, in the order the launcher enters them. */
export const ALL_JOIN_NAMESPACES: readonly JoinNamespace[] = ['user', 'cgroup', 'ipc', 'uts', 'net', 'pid', 'mnt'];

/** What to run where. */
export interface JoinSpec {
  /** Host pid of a process whose namespaces are joined (a container's first process). */
  readonly targetPid: number;
  /** The namespaces to enter; those this process already shares with the target are skipped. */
  readonly namespaces: readonly JoinNamespace[];
  readonly args: readonly string[];
  readonly env: readonly string[];
  /** Absolute; must exist (not created, as docker exec). */
  readonly cwd: string;
  /** The identity to switch to, with `capabilities` kept; absent: the credentials are kept as they are. */
  readonly user?: ProcessUser;
  readonly capabilities?: readonly string[];
  /** Keep only those of `capabilities` the launcher holds (`exec --privileged` on a host whose root lacks some). */
  readonly capabilitiesHeld?: boolean;
  readonly rlimits?: readonly Rlimit[];
  readonly noNewPrivileges?: boolean;
  /** Install docker's default seccomp filter (the container's, unless it is privileged or unconfined), judged against `capabilities`. */
  readonly seccomp?: boolean;
  /** A pseudo-terminal from the target's /dev/pts (needs the mount namespace). */
  readonly terminal?: boolean;
  /** Return once the command was exec'd, leaving it running (stdio should be 'ignore'). */
  readonly detach?: boolean;
  /** The cgroup the process joins before exec (the container's). */
  readonly cgroup?: Cgroup;
}

/** How a joined process ended, or that it was left running (`detach`). */
export interface JoinResult {
  /** The exit code (128+n for signal n); 0 for a detached process. */
  readonly exitCode: number;
  readonly signal?: number;
  /** The host pid of the process. */
  readonly pid: number;
  readonly detached: boolean;
}


/** Encodes a JoinSpec for the launcher (pure; the run-mode token format). Throws SANDBOX_BAD_SPEC. */
export function encodeJoinSpec(spec: JoinSpec): Buffer {
  const tokens: string[] = [];
  const add = (...t: (string | number | bigint)[]): void => {
    for (const v of t) {
      const s = String(v);
      if (s.includes('\0')) throw badSpec(`spec value contains a NUL byte: ${JSON.stringify(s.slice(0, 60))}`);
      tokens.push(s);
    }
  };
  if (!Number.isInteger(spec.targetPid) || spec.targetPid <= 0) throw badSpec(`invalid target pid ${spec.targetPid}`);
  if (!spec.cwd.startsWith('/')) throw badSpec(`working directory "${spec.cwd}" must be absolute`);
  if (spec.args.length === 0) throw badSpec('no command to run');
  if (spec.terminal === true && !spec.namespaces.includes('mnt')) throw badSpec('a terminal needs the mount namespace (its /dev/pts)');
  add('join', spec.targetPid);
  // On v1 the process joins the container's cgroup itself (launcher.c join_child: the tasks files are opened
  // before the launcher enters the namespaces): no grace period, and nothing for joinProcess to attach.
  for (const f of joinCgroupFiles(spec.cgroup?.selfJoinFiles)) add('cgroup', f);
  for (const ns of spec.namespaces) {
    if (!ALL_JOIN_NAMESPACES.includes(ns)) throw badSpec(`unknown namespace "${String(ns)}"`);
    add('ns', ns);
  }
  add('detach', spec.detach === true ? 1 : 0);
  add('nnp', spec.noNewPrivileges === true ? 1 : 0);
  if (spec.seccomp === true) add('seccomp', 'default');
  add('terminal', spec.terminal === true ? 1 : 0);
  add('cwd', spec.cwd);
  for (const r of spec.rlimits ?? []) {
    const n = RLIMIT_NUMBERS[r.type];
    if (n === undefined) throw badSpec(`unknown rlimit "${r.type}"`);
    add('rlimit', n, r.soft, r.hard);
  }
  if (spec.user !== undefined) {
    const u = spec.user;
    for (const id of [u.uid, u.gid, ...(u.additionalGids ?? [])]) {
      if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) throw badSpec(`invalid user or group id ${id}`);
    }
    add('caps', capabilityMask(spec.capabilities ?? []));
    if (spec.capabilitiesHeld === true) add('capsheld', 1);
    add('user', u.uid, u.gid, (u.additionalGids ?? []).join(','));
  } else if (spec.seccomp === true) {
    add('caps', capabilityMask(spec.capabilities ?? [])); // what the filter is judged against
  }
  for (const e of spec.env) add('env', e);
  for (const a of spec.args) add('arg', a);
  return Buffer.from(tokens.map((t) => `${t}\0`).join(''), 'utf8');
}

/**
 * Runs `spec` with the launcher at `launcherPath` and resolves with how it ended. Throws
 * SANDBOX_COMMAND_NOT_FOUND (exitCode 127), SANDBOX_COMMAND_NOT_EXECUTABLE (126), SANDBOX_BAD_WORKDIR,
 * SANDBOX_JOIN (the target is gone or a namespace cannot be entered), SANDBOX_SETUP, SANDBOX_LAUNCHER,
 * SANDBOX_ABORTED (the signal fired: the process was killed).
 */
export async function joinProcess(launcherPath: string, spec: JoinSpec, stdio: SandboxStdio = {}, signal?: AbortSignal): Promise<JoinResult> {
  signal?.throwIfAborted();
  const r = await runHandshake({
    launcherPath,
    input: encodeJoinSpec(spec),
    stdio,
    detached: spec.detach === true,
    signal,
    onPid: async (pid, go) => {
      if (spec.cgroup !== undefined && spec.cgroup.selfJoinFiles === undefined) await spec.cgroup.addProcess(pid);
      go.end('g');
    },
  });
  if (r.releaseError !== undefined) throw r.releaseError;
  const error = r.lines.find((l) => l.error !== undefined)?.error;
  if (r.aborted) {
    throw new TsbuildError('SANDBOX_ABORTED', `process stopped: ${String((signal?.reason as Error | undefined)?.message ?? signal?.reason ?? 'aborted')}`, { cause: signal?.reason, exitCode: 137 });
  }
  if (error !== undefined) {
    if (error.step === 'open-namespace' || error.step === 'open-root' || error.step === 'setns' || error.step === 'chroot') {
      throw new TsbuildError('SANDBOX_JOIN', `cannot enter the namespaces of process ${spec.targetPid} (${error.step} ${error.detail}): errno ${error.errno}`, { exitCode: 125 });
    }
    // setupError reads only process.args and process.user of the spec.
    const forMessages = { process: { args: spec.args, user: spec.user ?? { uid: 0, gid: 0, additionalGids: [] } } } as unknown as RunSpec;
    throw setupError(error, forMessages);
  }
  const pid = r.pid;
  if (pid === undefined) throw new TsbuildError('SANDBOX_LAUNCHER', `the sandbox launcher ended without a status (exit ${String(await r.exited)})`, { exitCode: 125 });
  if (r.detached) return { exitCode: 0, pid, detached: true };
  const end = r.lines.find((l) => l.exitCode !== undefined || l.signal !== undefined);
  if (end === undefined) throw new TsbuildError('SANDBOX_LAUNCHER', `the sandbox launcher ended without a status (exit ${String(await r.exited)})`, { exitCode: 125 });
  return end.signal !== undefined
    ? { exitCode: 128 + end.signal, signal: end.signal, pid, detached: false }
    : { exitCode: end.exitCode ?? 125, pid, detached: false };
}
