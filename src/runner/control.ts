import { constants } from 'node:os';
import { TsbuildError } from '../core/index.js';
import { thawProcessCgroup } from '../sandbox/index.js';
import type { ContainerEntry, ContainerStore } from './container-store.js';
import { parseSignal } from './container-config.js';
import { isProcessAlive } from './process-info.js';
import { requestStop, settleRestarting } from './restart.js';
import { isContainerRunning } from './runner.js';

/** The signal numbers of this platform by name (`SIGTERM` -> 15). */
export const SIGNALS: Readonly<Record<string, number>> = constants.signals as unknown as Record<string, number>;

/** Linux's real-time signal range (glibc's SIGRTMIN, the kernel's SIGRTMAX). */
const SIGRTMIN = 34;
const SIGRTMAX = 64;

/**
 * Parses a signal for `kill -s` as docker: a name with or without SIG (`USR1`, `SIGHUP`), a number
 * (1..64, also real-time ones without a name here), or `RTMIN+N`/`RTMAX-N`. Throws RUN_BAD_SIGNAL.
 */
export function parseKillSignal(text: string): { name: string; number: number } {
  const rt = /^(?:SIG)?RT(MIN|MAX)([+-]\d+)?$/i.exec(text);
  const n = rt !== null ? (rt[1]?.toUpperCase() === 'MIN' ? SIGRTMIN : SIGRTMAX) + Number(rt[2] ?? 0) : /^\d+$/.test(text) ? Number(text) : undefined;
  if (n === undefined) return parseSignal(text, SIGNALS);
  const name = Object.keys(SIGNALS).find((k) => SIGNALS[k] === n);
  if (n >= 1 && n <= SIGRTMAX && (name !== undefined || n >= SIGRTMIN)) return { name: name ?? `SIGRT${n}`, number: n };
  throw new TsbuildError('RUN_BAD_SIGNAL', `invalid signal: ${text}`, { exitCode: 125 });
}

/** Waits until container `id` is no longer running (or gone); true when it stopped within `ms`. */
export async function waitForStop(containers: ContainerStore, id: string, ms: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const e = await containers.inspect(id);
    if (e === undefined || !isContainerRunning(e.state)) return true;
    if (Date.now() >= deadline) return false;
    signal?.throwIfAborted();
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits (up to 10 s) for a running container's pid to be recorded; returns the fresh entry. */
export async function withPid(containers: ContainerStore, entry: ContainerEntry): Promise<ContainerEntry> {
  let e: ContainerEntry | undefined = entry;
  for (let i = 0; i < 500 && e !== undefined && isContainerRunning(e.state) && e.state.pid === 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    e = await containers.inspect(entry.config.id);
  }
  return e ?? entry;
}

/**
 * Sends `signal` (name or number) to the container's first process (the pid namespace's init:
 * SIGKILL ends every process in it). Throws RUN_NOT_RUNNING, RUN_BAD_SIGNAL.
 */
export async function killContainer(containers: ContainerStore, entry: ContainerEntry, signal: string): Promise<void> {
  const sig = parseKillSignal(signal);
  // A terminating signal by hand ends the restart policy (as docker's manual stop).
  if (isContainerRunning(entry.state) && ['SIGKILL', 'SIGTERM', 'SIGINT', parseSignal(entry.config.stopSignal, SIGNALS).name].includes(sig.name)) await requestStop(containers, entry.config.id);
  const e = await withPid(containers, entry);
  if (!isContainerRunning(e.state) || e.state.pid === 0) {
    throw new TsbuildError('RUN_NOT_RUNNING', `container ${e.config.id} is not running`, { exitCode: 1 });
  }
  // SECURITY: the recorded start time guards against signalling a reused pid.
  if (!isProcessAlive(e.state.pid, e.state.pidStartTime)) return;
  try {
    process.kill(e.state.pid, sig.number);
    // A paused container handles SIGKILL only once thawed (as docker kill / rm -f of a paused container).
    if (sig.number === SIGNALS.SIGKILL) await thawProcessCgroup(e.state.pid);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') {
      throw new TsbuildError('RUN_KILL', `cannot signal container ${e.config.id.slice(0, 12)}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * Stops a container as `docker stop`: its StopSignal (or `stopSignal`, as `stop -s`), then SIGKILL
 * after `timeoutSec` (negative: wait forever). A container that is not running is left as it is.
 * Resolves once it has exited.
 */
export async function stopContainer(containers: ContainerStore, entry: ContainerEntry, timeoutSec: number, signal?: AbortSignal, stopSignal?: string): Promise<void> {
  // A stop by hand ends the restart policy (also of a container waiting to restart).
  await requestStop(containers, entry.config.id);
  await settleRestarting(containers, entry.config.id);
  if (!isContainerRunning(entry.state)) return;
  try {
    await killContainer(containers, entry, stopSignal ?? entry.config.stopSignal);
  } catch (err) {
    if (err instanceof TsbuildError && err.code === 'RUN_NOT_RUNNING') return;
    throw err;
  }
  // A paused container is thawed so that it can handle its stop signal.
  const pid = (await containers.inspect(entry.config.id))?.state.pid ?? 0;
  if (pid > 0) await thawProcessCgroup(pid);
  const ms = timeoutSec < 0 ? Number.MAX_SAFE_INTEGER : timeoutSec * 1000;
  if (await waitForStop(containers, entry.config.id, ms, signal)) return;
  await killContainer(containers, entry, 'SIGKILL').catch((err: unknown) => {
    if (!(err instanceof TsbuildError && err.code === 'RUN_NOT_RUNNING')) throw err;
  });
  if (!(await waitForStop(containers, entry.config.id, 30_000, signal))) {
    throw new TsbuildError('RUN_STOP_TIMEOUT', `container ${entry.config.id.slice(0, 12)} did not stop after SIGKILL`, { exitCode: 1 });
  }
}
