import { TsbuildError } from '../../core/index.js';
import { createLogWriter, NO_RESTART, runContainer, runWithHealthcheck, runWithRestartPolicy } from '../../runner/index.js';
import type { RunResult } from '../../sandbox/index.js';
import type { Command } from '../command.js';
import { openContainerDeps } from '../container-deps.js';

/**
 * The hidden `container-monitor ID` command: the per-container monitor that `run -d` and `start`
 * spawn detached. It owns the container until it exits: runs it, records its state, writes its
 * log. Its own messages go to the container's monitor.log.
 */
export const containerMonitorCommand: Command = {
  name: 'container-monitor',
  summary: '(internal) Own a detached container until it exits',
  usage: 'container-monitor CONTAINER-ID',
  options: [],
  async run(args, ctx) {
    const id = args.positionals[0];
    if (id === undefined || !/^[0-9a-f]{64}$/.test(id)) throw new TsbuildError('CLI_MISSING_ARGUMENT', 'container-monitor needs a full container ID', { exitCode: 125 });
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.read(id);
    if (entry === undefined) throw new TsbuildError('RUN_NO_SUCH_CONTAINER', `no such container: ${id}`);
    const log = createLogWriter(deps.containers.logPathOf(id));
    try {
      const runOnce = (restartCount: number): Promise<RunResult> => runWithHealthcheck(deps, entry.config, entry.config.healthcheck, (onStarted, onEnded) => runContainer(deps, entry.config, { stdin: 'ignore', stdout: log.stdout, stderr: log.stderr }, ctx.signal, {
        onWarning: (m) => ctx.stderr.write(`${new Date().toISOString()} WARNING: ${m}\n`),
        restartCount,
        onStarted,
        onEnded,
      }));
      const result = await runWithRestartPolicy(deps.containers, id, entry.config.restartPolicy ?? NO_RESTART, runOnce, ctx.signal);
      return result.exitCode;
    } finally {
      await log.close();
    }
  },
};
