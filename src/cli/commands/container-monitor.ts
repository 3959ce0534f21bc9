import { TsbuildError } from '../../core/index.js';
import { createLogWriter, endAttachedRun, hasOpenStdin, NO_RESTART, runContainer, runWithHealthcheck, runWithRestartPolicy, startAttachServer } from '../../runner/index.js';
import type { RunResult } from '../../sandbox/index.js';
import { optBool } from '../args.js';
import type { Command } from '../command.js';
import { openContainerDeps } from '../container-deps.js';

/** How long `--wait-attach` holds the start for the attaching client (`start -a`) at most. */
const WAIT_ATTACH_MS = 30_000;

/**
 * The hidden `container-monitor ID` command: the per-container monitor that `run -d` and `start`
 * spawn detached. It owns the container until it exits: runs it, records its state, writes its
 * log, and serves its attach socket (live output to every attached client; their input to the
 * container's stdin when it was created with -i). Its own messages go to the container's monitor.log.
 */
export const containerMonitorCommand: Command = {
  name: 'container-monitor',
  summary: '(internal) Own a detached container until it exits',
  usage: 'container-monitor [--wait-attach] CONTAINER-ID',
  options: [{ name: 'wait-attach', type: 'bool', help: 'Start the container once a client attached (start -a -i)' }],
  async run(args, ctx) {
    const id = args.positionals[0];
    if (id === undefined || !/^[0-9a-f]{64}$/.test(id)) throw new TsbuildError('CLI_MISSING_ARGUMENT', 'container-monitor needs a full container ID', { exitCode: 125 });
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.read(id);
    if (entry === undefined) throw new TsbuildError('RUN_NO_SUCH_CONTAINER', `no such container: ${id}`);
    const attach = await startAttachServer(deps.containers, id, { openStdin: await hasOpenStdin(deps.containers, id), tty: entry.config.tty === true, ownerPid: deps.ownerPid });
    const log = createLogWriter(deps.containers.logPathOf(id), { stdout: attach.stdout, stderr: attach.stderr });
    try {
      if (optBool(args, 'wait-attach')) await attach.waitForClient(WAIT_ATTACH_MS);
      const runOnce = async (restartCount: number): Promise<RunResult> => {
        const stdin = attach.stdinForRun() ?? 'ignore';
        let code: number | undefined;
        try {
          const r = await runWithHealthcheck(deps, entry.config, entry.config.healthcheck, (onStarted, onEnded) => runContainer(deps, entry.config, { stdin, stdout: log.stdout, stderr: log.stderr }, ctx.signal, {
            onWarning: (m) => ctx.stderr.write(`${new Date().toISOString()} WARNING: ${m}\n`),
            restartCount,
            onStarted,
            onEnded,
          }));
          code = r.exitCode;
          return r;
        } finally {
          await endAttachedRun(attach, log, deps.containers, id, code);
        }
      };
      const result = await runWithRestartPolicy(deps.containers, id, entry.config.restartPolicy ?? NO_RESTART, runOnce, ctx.signal);
      return result.exitCode;
    } finally {
      await attach.close();
      await log.close();
    }
  },
};
