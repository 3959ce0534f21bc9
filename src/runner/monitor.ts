import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import type { ContainerStore } from './container-store.js';

/** How to start a monitor process: the CLI re-executes itself with its hidden `container-monitor` command. */
export interface MonitorCommand {
  readonly execPath: string;
  /** Everything after execPath, ending with the container ID. */
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
}

/** The file that receives the monitor's own messages (not the container's output). */
export function monitorLogPathOf(containers: ContainerStore, id: string): string {
  return join(containers.dirOf(id), 'monitor.log');
}

/**
 * Starts the per-container monitor (like conmon): detached in its own session, stdio on
 * `monitor.log`, so it survives the CLI exiting or being killed; the monitor runs the container
 * and records its state. Resolves once the container runs (its pid recorded) or has already
 * ended; throws RUN_MONITOR with the monitor's message when it dies before that. `onSpawned`
 * gets the monitor's pid at once (`start -a -i` connects to its attach socket while it starts).
 */
export async function startMonitor(containers: ContainerStore, id: string, command: MonitorCommand, signal?: AbortSignal, onSpawned?: (pid: number) => void): Promise<void> {
  const logPath = monitorLogPathOf(containers, id);
  const before = (await containers.read(id))?.state.startedAt;
  const fd = openSync(logPath, 'a', 0o640);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;
  try {
    const child = spawn(command.execPath, command.args, {
      cwd: command.cwd,
      env: command.env as NodeJS.ProcessEnv,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    child.once('error', (err) => { spawnError = err; });
    child.once('exit', (code, sig) => { exit = { code, signal: sig }; });
    child.unref();
    if (child.pid !== undefined) onSpawned?.(child.pid);
  } finally {
    closeSync(fd);
  }
  for (;;) {
    signal?.throwIfAborted();
    const e = await containers.read(id);
    const s = e?.state;
    if (s !== undefined && s.startedAt !== before && ((s.status === 'running' && s.pid > 0) || s.status === 'exited')) return;
    if (e === undefined && exit !== undefined) return; // ran and was removed (--rm)
    if (spawnError !== undefined || (exit !== undefined && (s === undefined || s.status !== 'running'))) {
      if (s !== undefined && s.startedAt !== before && s.status === 'exited') return;
      let text = '';
      try {
        text = readFileSync(logPath, 'utf8').trim().split('\n').slice(-5).join('\n');
      } catch {
        // no message
      }
      throw new TsbuildError('RUN_MONITOR', `the container monitor failed${spawnError === undefined ? ` (exit ${String(exit?.code ?? exit?.signal)})` : `: ${spawnError.message}`}${text === '' ? '' : `: ${text}`}`, { exitCode: 125 });
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
