import { TsbuildError } from '../../core/index.js';
import {
  isContainerRunning, killContainer, readLogs, removeContainer, shortContainerId, startMonitor, stopContainer, waitForStop,
  type ContainerEntry, type LogRecord,
} from '../../runner/index.js';
import type { ParsedArgs } from '../args.js';
import { optBool, optString } from '../args.js';
import type { Command, CommandContext } from '../command.js';
import { monitorCommandFor, openContainerDeps, type ContainerDeps } from '../container-deps.js';
import { formatTable, requireArgs, timeAgo } from './image-info.js';
import { containerInspectJson } from './container-inspect.js';

/** Docker's STATUS column: `Up 5 seconds`, `Exited (0) 3 minutes ago`, `Created`. */
export function statusText(e: ContainerEntry, now: number): string {
  const s = e.state;
  if (isContainerRunning(s)) return `Up ${timeAgo(s.startedAt, now).replace(/ ago$/, '')}`;
  if (s.status === 'exited') return `Exited (${s.exitCode}) ${timeAgo(s.finishedAt, now)}`;
  if (s.status === 'created') return 'Created';
  return s.status[0]?.toUpperCase() + s.status.slice(1);
}

/** Docker's COMMAND column: the quoted command line, cut to 20 characters with `…` unless `noTrunc`. */
export function commandText(args: readonly string[], noTrunc: boolean): string {
  const text = args.join(' ');
  return `"${noTrunc || text.length <= 20 ? text : `${text.slice(0, 19)}…`}"`;
}

/** Runs `fn` for each named container, printing the name as given on success, as docker does; the exit code is 1 when any failed. */
async function forEachContainer(args: ParsedArgs, ctx: CommandContext, command: string, fn: (deps: ContainerDeps, e: ContainerEntry) => Promise<void>): Promise<number> {
  requireArgs(args.positionals, 1, command, 'at least 1 argument: CONTAINER');
  const deps = await openContainerDeps(ctx);
  let code = 0;
  for (const name of args.positionals) {
    try {
      await fn(deps, await deps.containers.resolve(name));
      ctx.stdout.write(`${name}\n`);
    } catch (err) {
      if (!(err instanceof TsbuildError)) throw err;
      ctx.stderr.write(`Error response from daemon: ${err.message}\n`);
      code = 1;
    }
  }
  return code;
}

/** `tsbuild ps [-a] [-q] [--no-trunc] [--format json]`. */
export const psCommand: Command = {
  name: 'ps',
  summary: 'List containers',
  usage: 'ps [OPTIONS]',
  options: [
    { name: 'all', short: 'a', type: 'bool', help: 'Show all containers (default shows just running)' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only display container IDs' },
    { name: 'no-trunc', type: 'bool', help: 'Don\'t truncate output' },
    { name: 'format', type: 'string', value: 'json|table', help: 'Format output: table (default) or json (one object per line)' },
    { name: 'filter', short: 'f', type: 'list', value: 'FILTER', help: 'Filter output', notSupported: 'filters arrive with a later step of the containers issue' },
  ],
  async run(args, ctx) {
    const deps = await openContainerDeps(ctx);
    const all = optBool(args, 'all');
    const noTrunc = optBool(args, 'no-trunc');
    const now = Date.now();
    const list = (await deps.containers.list()).filter((e) => all || isContainerRunning(e.state));
    const id = (e: ContainerEntry): string => (noTrunc ? e.config.id : shortContainerId(e.config.id));
    if (optBool(args, 'quiet')) {
      for (const e of list) ctx.stdout.write(`${id(e)}\n`);
      return 0;
    }
    const format = optString(args, 'format') ?? 'table';
    if (format === 'json') {
      for (const e of list) {
        ctx.stdout.write(`${JSON.stringify({
          Command: commandText(e.config.args, noTrunc),
          CreatedAt: e.config.created,
          ID: id(e),
          Image: e.config.image,
          Labels: Object.entries(e.config.labels).map(([k, v]) => `${k}=${v}`).join(','),
          LocalVolumes: '0',
          Mounts: '',
          Names: e.config.name,
          Networks: e.config.network,
          Ports: '',
          RunningFor: timeAgo(e.config.created, now),
          Size: 'N/A',
          State: isContainerRunning(e.state) ? 'running' : e.state.status,
          Status: statusText(e, now),
        })}\n`);
      }
      return 0;
    }
    if (format !== 'table') throw new TsbuildError('CLI_BAD_VALUE', `--format takes table or json, not "${format}"`, { hint: 'Go templates are not supported yet', exitCode: 125 });
    const rows = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES']];
    for (const e of list) rows.push([id(e), e.config.image, commandText(e.config.args, noTrunc), timeAgo(e.config.created, now), statusText(e, now), '', e.config.name]);
    ctx.stdout.write(`${formatTable(rows)}\n`);
    return 0;
  },
};

/** `tsbuild logs [-f] [--tail N] [-t] CONTAINER`. */
export const logsCommand: Command = {
  name: 'logs',
  summary: 'Fetch the logs of a container',
  usage: 'logs [OPTIONS] CONTAINER',
  options: [
    { name: 'follow', short: 'f', type: 'bool', help: 'Follow log output' },
    { name: 'tail', short: 'n', type: 'string', value: 'N', help: 'Number of lines to show from the end of the logs (default "all")' },
    { name: 'timestamps', short: 't', type: 'bool', help: 'Show timestamps' },
    { name: 'since', type: 'string', value: 'TIME', help: 'Show logs since a time', notSupported: '--since arrives with a later step of the containers issue' },
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'logs', 'exactly 1 argument: CONTAINER');
    const tailText = optString(args, 'tail') ?? 'all';
    if (tailText !== 'all' && !/^\d+$/.test(tailText)) throw new TsbuildError('CLI_BAD_VALUE', `invalid --tail "${tailText}": a number or "all"`, { exitCode: 125 });
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.resolve(args.positionals[0] as string);
    const stamps = optBool(args, 'timestamps');
    const emit = (r: LogRecord): void => {
      (r.stream === 'stderr' ? ctx.stderr : ctx.stdout).write(stamps ? `${r.time} ${r.log}` : r.log);
    };
    await readLogs(deps.containers.logPathOf(entry.config.id), emit, {
      ...(tailText === 'all' ? {} : { tail: Number(tailText) }),
      follow: optBool(args, 'follow'),
      isDone: async () => {
        const e = await deps.containers.inspect(entry.config.id);
        return e === undefined || !isContainerRunning(e.state);
      },
      signal: ctx.signal,
    });
    return 0;
  },
};

/** Reads `-t/--time/--timeout N` of stop (whole seconds). */
function timeoutOf(args: ParsedArgs): number | undefined {
  const t = optString(args, 'time');
  if (t === undefined) return undefined;
  if (!/^-?\d+$/.test(t)) throw new TsbuildError('CLI_BAD_VALUE', `invalid --time "${t}": whole seconds`, { exitCode: 125 });
  return Number(t);
}

/** `tsbuild stop [-t N] CONTAINER...`: the stop signal, then SIGKILL after the timeout. */
export const stopCommand: Command = {
  name: 'stop',
  summary: 'Stop one or more running containers',
  usage: 'stop [OPTIONS] CONTAINER [CONTAINER...]',
  options: [
    { name: 'time', short: 't', type: 'string', value: 'SECONDS', help: 'Seconds to wait before killing the container (default: its --stop-timeout, 10)' },
    { name: 'signal', short: 's', type: 'string', value: 'SIGNAL', help: 'Signal to send to the container', notSupported: 'set --stop-signal at run time' },
  ],
  async run(args, ctx) {
    const t = timeoutOf(args);
    return forEachContainer(args, ctx, 'stop', (deps, e) => stopContainer(deps.containers, e, t ?? e.config.stopTimeout, ctx.signal));
  },
};

/** `tsbuild kill [-s SIGNAL] CONTAINER...`. */
export const killCommand: Command = {
  name: 'kill',
  summary: 'Kill one or more running containers',
  usage: 'kill [OPTIONS] CONTAINER [CONTAINER...]',
  options: [{ name: 'signal', short: 's', type: 'string', value: 'SIGNAL', help: 'Signal to send to the container (default KILL)' }],
  async run(args, ctx) {
    const sig = optString(args, 'signal') ?? 'KILL';
    return forEachContainer(args, ctx, 'kill', (deps, e) => killContainer(deps.containers, e, sig));
  },
};

/** `tsbuild rm [-f] CONTAINER...`: removes state, logs, the writable layer and the name. */
export const rmCommand: Command = {
  name: 'rm',
  summary: 'Remove one or more containers',
  usage: 'rm [OPTIONS] CONTAINER [CONTAINER...]',
  options: [
    { name: 'force', short: 'f', type: 'bool', help: 'Force the removal of a running container (uses SIGKILL)' },
    { name: 'volumes', short: 'v', type: 'bool', help: 'Remove anonymous volumes (there are none yet)' },
  ],
  async run(args, ctx) {
    const force = optBool(args, 'force');
    return forEachContainer(args, ctx, 'rm', async (deps, e) => {
      if (isContainerRunning(e.state)) {
        if (!force) {
          throw new TsbuildError('RUN_RUNNING', `cannot remove container "/${e.config.name}": container is running: stop the container before removing or force remove`, { exitCode: 1 });
        }
        await killContainer(deps.containers, e, 'SIGKILL').catch(() => undefined);
        if (!(await waitForStop(deps.containers, e.config.id, 30_000, ctx.signal))) {
          throw new TsbuildError('RUN_STOP_TIMEOUT', `container ${shortContainerId(e.config.id)} did not stop after SIGKILL`, { exitCode: 1 });
        }
      }
      await removeContainer(deps, e.config);
    });
  },
};

/** `tsbuild start CONTAINER...`: runs created or exited containers again under a new monitor (same writable layer). */
export const startCommand: Command = {
  name: 'start',
  summary: 'Start one or more stopped containers',
  usage: 'start [OPTIONS] CONTAINER [CONTAINER...]',
  options: [
    { name: 'attach', short: 'a', type: 'bool', help: 'Attach STDOUT/STDERR', notSupported: 'use "tsbuild logs -f" after start' },
    { name: 'interactive', short: 'i', type: 'bool', help: 'Attach STDIN', notSupported: 'attaching arrives with a later step of the containers issue' },
  ],
  async run(args, ctx) {
    return forEachContainer(args, ctx, 'start', async (deps, e) => {
      if (isContainerRunning(e.state)) return;
      await startMonitor(deps.containers, e.config.id, monitorCommandFor(ctx, deps.storeRoot, e.config.id), ctx.signal);
    });
  },
};

/** `tsbuild container inspect CONTAINER...` (docker's `container inspect` JSON). */
export const containerCommand: Command = {
  name: 'container',
  summary: 'Manage containers (inspect)',
  usage: 'container inspect [OPTIONS] CONTAINER [CONTAINER...]',
  options: [{ name: 'format', short: 'f', type: 'string', value: 'TEMPLATE', help: 'Format the output', notSupported: 'templates for containers arrive later; pipe the JSON to jq' }],
  stopAtPositional: false,
  async run(args, ctx) {
    const [sub, ...rest] = args.positionals;
    if (sub !== 'inspect') {
      throw new TsbuildError('CLI_UNKNOWN_COMMAND', `"tsbuild container ${sub ?? ''}" is not supported`, { hint: 'supported: tsbuild container inspect CONTAINER...; ps, logs, stop, start, kill, rm are top-level commands', exitCode: 125 });
    }
    requireArgs(rest, 1, 'container inspect', 'at least 1 argument: CONTAINER');
    const deps = await openContainerDeps(ctx);
    const out: unknown[] = [];
    let code = 0;
    for (const name of rest) {
      try {
        out.push(containerInspectJson(await deps.containers.resolve(name), deps));
      } catch (err) {
        if (!(err instanceof TsbuildError)) throw err;
        ctx.stderr.write(`Error: ${err.message}\n`);
        code = 1;
      }
    }
    ctx.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
    return code;
  },
};
