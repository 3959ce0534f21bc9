/**
 * Restart policies (docker's `--restart`): the owner of a container (its monitor) runs it again
 * after it exits, with docker's back-off (100 ms doubling up to 1 minute, reset after 10 s of
 * running). `stop`/`kill` leave a marker file that ends the loop for good.
 */
import { unlinkSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import type { RunResult } from '../sandbox/index.js';
import type { ContainerStore } from './container-store.js';
import { isProcessAlive } from './process-info.js';

/** A restart policy as docker's HostConfig.RestartPolicy. */
export interface RestartPolicy {
  readonly Name: 'no' | 'on-failure' | 'always' | 'unless-stopped';
  readonly MaximumRetryCount: number;
}

/** The default policy: never restart. */
export const NO_RESTART: RestartPolicy = { Name: 'no', MaximumRetryCount: 0 };

/** Parses `--restart no|on-failure[:N]|always|unless-stopped`. Throws RUN_BAD_RESTART. */
export function parseRestartPolicy(text: string): RestartPolicy {
  const [name, count, ...extra] = text.split(':');
  const fail = (why: string): TsbuildError => new TsbuildError('RUN_BAD_RESTART', `invalid restart policy "${text}": ${why}`, {
    hint: 'use no, on-failure[:MAX-RETRIES], always or unless-stopped', exitCode: 125,
  });
  if (extra.length > 0) throw fail('too many colons');
  if (name === 'on-failure') {
    if (count !== undefined && !/^\d+$/.test(count)) throw fail('the maximum retry count must be a whole number');
    return { Name: 'on-failure', MaximumRetryCount: count === undefined ? 0 : Number(count) };
  }
  if (name === 'no' || name === 'always' || name === 'unless-stopped') {
    if (count !== undefined) throw fail(`maximum retry count cannot be used with restart policy "${name}"`);
    return { Name: name, MaximumRetryCount: 0 };
  }
  throw fail('unknown policy');
}

/** True when `policy` restarts a container that exited with `exitCode` after `restarts` restarts. */
export function shouldRestart(policy: RestartPolicy, exitCode: number, restarts: number): boolean {
  if (policy.Name === 'always' || policy.Name === 'unless-stopped') return true;
  if (policy.Name === 'on-failure') return exitCode !== 0 && (policy.MaximumRetryCount === 0 || restarts < policy.MaximumRetryCount);
  return false;
}

/** Docker's back-off before the next restart: `previous` doubled (from 100 ms, at most 1 min), reset after a run of 10 s or more. */
export function nextRestartDelay(previous: number, ranMs: number): number {
  if (ranMs >= 10_000) return 100;
  return previous === 0 ? 100 : Math.min(previous * 2, 60_000);
}

function markerOf(containers: ContainerStore, id: string): string {
  return join(containers.dirOf(id), 'stop-requested');
}

/** Records that the container was stopped by hand (`stop`, `kill`, `rm -f`): its restart policy no longer applies. */
export async function requestStop(containers: ContainerStore, id: string): Promise<void> {
  await writeFile(markerOf(containers, id), `${new Date().toISOString()}\n`).catch(() => undefined);
}

/** Forgets a manual stop (a new `start`). One unlink, synchronous: every start waits for it, and there is rarely a marker. */
export async function clearStopRequest(containers: ContainerStore, id: string): Promise<void> {
  try {
    unlinkSync(markerOf(containers, id));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** True when the container was stopped by hand since its last start. */
export async function isStopRequested(containers: ContainerStore, id: string): Promise<boolean> {
  return stat(markerOf(containers, id)).then(() => true, () => false);
}

/**
 * Ends the restart loop of a container waiting to restart (`restarting`): marks the stop and
 * waits (up to `ms`) until its monitor has settled it as exited or is gone. True when settled.
 */
export async function settleRestarting(containers: ContainerStore, id: string, ms = 10_000): Promise<boolean> {
  const e = await containers.read(id);
  if (e?.state.status !== 'restarting') return true;
  await requestStop(containers, id);
  const deadline = Date.now() + ms;
  for (;;) {
    const s = (await containers.read(id))?.state;
    if (s === undefined || s.status !== 'restarting' || !isProcessAlive(s.monitorPid, s.monitorStartTime)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One run of the container, given how many restarts came before it. */
export type RunOnce = (restartCount: number) => Promise<RunResult>;

/**
 * Runs a container under its restart policy: `runOnce` until the policy says no, a manual stop
 * was recorded, the container was removed, or `signal` aborts. Between runs the state is
 * `restarting` (ps: `Restarting (CODE) ... ago`). Resolves with the last run's result.
 */
export async function runWithRestartPolicy(containers: ContainerStore, id: string, policy: RestartPolicy, runOnce: RunOnce, signal: AbortSignal): Promise<RunResult> {
  await clearStopRequest(containers, id);
  let restarts = 0;
  let delay = 0;
  for (;;) {
    const began = Date.now();
    const result = await runOnce(restarts);
    if (!shouldRestart(policy, result.exitCode, restarts) || signal.aborted || (await isStopRequested(containers, id))) return result;
    const e = await containers.read(id);
    if (e === undefined || e.state.status !== 'exited') return result;
    delay = nextRestartDelay(delay, Date.now() - began);
    await containers.writeState(id, { ...e.state, status: 'restarting' });
    const until = Date.now() + delay;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, Math.min(50, until - Date.now())));
      if (signal.aborted || (await isStopRequested(containers, id)) || (await containers.read(id)) === undefined) {
        const now = await containers.read(id);
        if (now !== undefined) await containers.writeState(id, { ...now.state, status: 'exited' });
        return result;
      }
    }
    restarts++;
  }
}
