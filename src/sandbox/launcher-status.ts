/**
 * The launcher's status lines (fd 4): `pid N`, `error<TAB>STEP<TAB>ERRNO<TAB>DETAIL`,
 * `exit N`, `signal N`; and their translation into TsbuildErrors. (A prestarted launcher's `netns` and
 * `slirp PID` come first: Sandbox.prestart reads them.)
 */
import { getSystemErrorMap } from 'node:util';
import { TsbuildError } from '../core/index.js';
import type { RunSpec } from './spec.js';

/** A failed launcher step. */
export interface LauncherError {
  readonly step: string;
  readonly errno: number;
  readonly detail: string;
}

/** One parsed status line (exactly one field set). */
export interface LauncherStatus {
  readonly pid?: number;
  readonly error?: LauncherError;
  readonly exitCode?: number;
  readonly signal?: number;
}

/** Parses one status line; undefined for an unknown line. */
export function parseStatusLine(line: string): LauncherStatus | undefined {
  if (line.startsWith('error\t')) {
    const [, step = '?', errno = '0', ...detail] = line.split('\t');
    return { error: { step, errno: Number(errno), detail: detail.join('\t') } };
  }
  const m = /^(pid|exit|signal) (\d+)$/.exec(line);
  if (m === null) return undefined;
  const n = Number(m[2]);
  return m[1] === 'pid' ? { pid: n } : m[1] === 'exit' ? { exitCode: n } : { signal: n };
}

/** `ENOENT (no such file or directory)` for an errno number. */
export function describeErrno(errno: number): string {
  const entry = getSystemErrorMap().get(-errno);
  if (entry !== undefined) return `${entry[0]} (${entry[1]})`;
  // Not in libuv's map, but what execve says for a binary of another architecture.
  return errno === ENOEXEC ? 'ENOEXEC (exec format error)' : `errno ${errno}`;
}

const ENOEXEC = 8;

/** The TsbuildError for a failed launcher step: 127 for a missing command, 126 for one not executable, else 125. */
export function setupError(e: LauncherError, spec: RunSpec): TsbuildError {
  const why = describeErrno(e.errno);
  if (e.step === 'exec') {
    const cmd = spec.process.args[0] ?? '';
    if (e.errno === 2) {
      return new TsbuildError('SANDBOX_COMMAND_NOT_FOUND', `command not found in the container: ${e.detail}`, {
        hint: cmd.includes('/') ? `no executable file at ${cmd} in the root filesystem` : 'check the command name and PATH inside the root filesystem',
        exitCode: 127,
      });
    }
    return new TsbuildError('SANDBOX_COMMAND_NOT_EXECUTABLE', `cannot execute ${e.detail} in the container: ${why}`, {
      exitCode: 126,
      ...(e.errno === ENOEXEC ? { hint: 'it is not an executable for this machine: a binary of another architecture (an image for another platform) runs only with an emulator registered in binfmt_misc, e.g. qemu-user-static' } : {}),
    });
  }
  if (e.step === 'chdir') {
    return new TsbuildError('SANDBOX_BAD_WORKDIR', `cannot change to the working directory ${e.detail}: ${why}`, { exitCode: 125 });
  }
  if (e.step === 'setgid' || e.step === 'setuid' || e.step === 'setgroups') {
    return new TsbuildError('SANDBOX_BAD_USER', `cannot switch to ${e.step === 'setuid' ? `uid ${spec.process.user.uid}` : `gid ${spec.process.user.gid}`}: ${why}`, {
      hint: 'in a rootless sandbox only the mapped ids (/etc/subuid, /etc/subgid) exist',
      exitCode: 125,
    });
  }
  if (e.step === 'slirp4netns') {
    // The launcher started it (Sandbox.prestart's slirp4netns): it ended or was not ready; the detail has its last stderr lines.
    return new TsbuildError('SANDBOX_NETWORK', `cannot start slirp4netns for the container's network: ${e.detail}${e.errno === 0 ? '' : `: ${why}`}`, {
      exitCode: 125, hint: 'use --network host, or --network none for no network',
    });
  }
  return new TsbuildError('SANDBOX_SETUP', `sandbox setup failed at step "${e.step}" (${e.detail}): ${why}`, { exitCode: 125 });
}
