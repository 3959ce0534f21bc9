import { stat } from 'node:fs/promises';
import { TsbuildError } from '../../core/index.js';
import {
  DEFAULT_DETACH_KEYS, isContainerRunning, killContainer, parseDetachKeys, parseKillSignal, readHealth, readLogs, removeContainer, settleRestarting, shortContainerId, startMonitor, stopContainer, waitForStop,
  type ContainerEntry, type LogRecord,
} from '../../runner/index.js';
import type { ParsedArgs } from '../args.js';
import { optBool, optString } from '../args.js';
import type { Command, CommandContext } from '../command.js';
import { monitorCommandFor, openContainerDeps, type ContainerDeps } from '../container-deps.js';
import { executeGoTemplate, parseGoTemplate } from '../go-template.js';
import { parseLogTime } from '../log-time.js';
import { requireArgs } from './image-info.js';
import { activePortsOf, containerInspectJson } from './container-inspect.js';
import { attachFromCli } from './attach.js';

export { commandText, portsText, psCommand, statusText } from './container-ps.js';

/** Runs `fn` for each named container, printing the name as given on success, as docker does; the exit code is 1 when any failed. */
export async function forEachContainer(args: ParsedArgs, ctx: CommandContext, command: string, fn: (deps: ContainerDeps, e: ContainerEntry) => Promise<void>): Promise<number> {
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

/** `tsbuild logs [-f] [--tail N] [-t] [--since TIME] [--until TIME] CONTAINER`. */
export const logsCommand: Command = {
  name: 'logs',
  summary: 'Fetch the logs of a container',
  usage: 'logs [OPTIONS] CONTAINER',
  options: [
    { name: 'follow', short: 'f', type: 'bool', help: 'Follow log output' },
    { name: 'tail', short: 'n', type: 'string', value: 'N', help: 'Number of lines to show from the end of the logs (default "all")' },
    { name: 'timestamps', short: 't', type: 'bool', help: 'Show timestamps' },
    { name: 'since', type: 'string', value: 'TIME', help: 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)' },
    { name: 'until', type: 'string', value: 'TIME', help: 'Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)' },
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'logs', 'exactly 1 argument: CONTAINER');
    const tailText = optString(args, 'tail') ?? 'all';
    if (tailText !== 'all' && !/^\d+$/.test(tailText)) throw new TsbuildError('CLI_BAD_VALUE', `invalid --tail "${tailText}": a number or "all"`, { exitCode: 125 });
    const now = Date.now();
    const since = optString(args, 'since');
    const until = optString(args, 'until');
    const sinceNs = since === undefined ? undefined : parseLogTime(since, now, 'since');
    const untilNs = until === undefined ? undefined : parseLogTime(until, now, 'until');
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.resolve(args.positionals[0] as string);
    const stamps = optBool(args, 'timestamps');
    const emit = (r: LogRecord): void => {
      (r.stream === 'stderr' ? ctx.stderr : ctx.stdout).write(stamps ? `${r.time} ${r.log}` : r.log);
    };
    await readLogs(deps.containers.logPathOf(entry.config.id), emit, {
      ...(tailText === 'all' ? {} : { tail: Number(tailText) }),
      ...(sinceNs === undefined ? {} : { sinceNs }),
      ...(untilNs === undefined ? {} : { untilNs }),
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

/** Reads and checks `-s/--signal` of kill and stop. Throws CLI_BAD_VALUE naming the value. */
function signalOf(args: ParsedArgs): string | undefined {
  const text = optString(args, 'signal');
  if (text === undefined) return undefined;
  try {
    parseKillSignal(text);
  } catch (err) {
    if (!(err instanceof TsbuildError)) throw err;
    throw new TsbuildError('CLI_BAD_VALUE', `invalid signal "${text}"`, { hint: 'give a signal name (KILL, SIGTERM, USR1, RTMIN+1) or number (9)', exitCode: 125 });
  }
  return text;
}

/** `tsbuild stop [-s SIGNAL] [-t N] CONTAINER...`: the stop signal, then SIGKILL after the timeout. */
export const stopCommand: Command = {
  name: 'stop',
  summary: 'Stop one or more running containers',
  usage: 'stop [OPTIONS] CONTAINER [CONTAINER...]',
  options: [
    { name: 'time', short: 't', type: 'string', value: 'SECONDS', help: 'Seconds to wait before killing the container (default: its --stop-timeout, 10)' },
    { name: 'signal', short: 's', type: 'string', value: 'SIGNAL', help: 'Signal to send to the container (default: its --stop-signal, SIGTERM)' },
  ],
  async run(args, ctx) {
    const t = timeoutOf(args);
    const sig = signalOf(args);
    return forEachContainer(args, ctx, 'stop', (deps, e) => stopContainer(deps.containers, e, t ?? e.config.stopTimeout, ctx.signal, sig));
  },
};

/** `tsbuild kill [-s SIGNAL] CONTAINER...`. */
export const killCommand: Command = {
  name: 'kill',
  summary: 'Kill one or more running containers',
  usage: 'kill [OPTIONS] CONTAINER [CONTAINER...]',
  options: [{ name: 'signal', short: 's', type: 'string', value: 'SIGNAL', help: 'Signal to send to the container: a name (HUP, SIGUSR1, RTMIN+3) or a number (default KILL)' }],
  async run(args, ctx) {
    const sig = signalOf(args) ?? 'KILL';
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
    { name: 'volumes', short: 'v', type: 'bool', help: 'Remove anonymous volumes associated with the container' },
  ],
  async run(args, ctx) {
    const force = optBool(args, 'force');
    return forEachContainer(args, ctx, 'rm', async (deps, e) => {
      if (e.state.status === 'restarting') {
        if (!force) throw new TsbuildError('RUN_RESTARTING', `cannot remove container "/${e.config.name}": container is restarting: stop the container before removing or force remove`, { exitCode: 1 });
        await settleRestarting(deps.containers, e.config.id);
        e = (await deps.containers.inspect(e.config.id)) ?? e;
      }
      if (isContainerRunning(e.state)) {
        if (!force) {
          throw new TsbuildError('RUN_RUNNING', `cannot remove container "/${e.config.name}": container is running: stop the container before removing or force remove`, { exitCode: 1 });
        }
        await killContainer(deps.containers, e, 'SIGKILL').catch(() => undefined);
        if (!(await waitForStop(deps.containers, e.config.id, 30_000, ctx.signal))) {
          throw new TsbuildError('RUN_STOP_TIMEOUT', `container ${shortContainerId(e.config.id)} did not stop after SIGKILL`, { exitCode: 1 });
        }
      }
      await removeContainer(deps, e.config, { volumes: optBool(args, 'volumes'), monitorPid: e.state.monitorPid });
    });
  },
};

/** `tsbuild start CONTAINER...`: runs created or exited containers again under a new monitor (same writable layer). */
export const startCommand: Command = {
  name: 'start',
  summary: 'Start one or more stopped containers',
  usage: 'start [OPTIONS] CONTAINER [CONTAINER...]',
  options: [
    { name: 'attach', short: 'a', type: 'bool', help: 'Attach STDOUT/STDERR and forward signals; the exit code is the container\'s' },
    { name: 'interactive', short: 'i', type: 'bool', help: 'Attach container\'s STDIN (implies --attach)' },
    { name: 'detach-keys', type: 'string', value: 'KEYS', help: `Override the key sequence for detaching a container (default "${DEFAULT_DETACH_KEYS}")` },
  ],
  async run(args, ctx) {
    if (optBool(args, 'interactive')) return startInteractive(args, ctx);
    if (optBool(args, 'attach')) return startAttached(args, ctx);
    return forEachContainer(args, ctx, 'start', async (deps, e) => {
      // A container waiting to restart has a live monitor already (a dead one shows as exited).
      if (isContainerRunning(e.state) || e.state.status === 'restarting') return;
      await startMonitor(deps.containers, e.config.id, monitorCommandFor(ctx, deps.storeRoot, e.config.id), ctx.signal);
    });
  },
};

/**
 * `start -a CONTAINER`: starts the container (unless it runs already), streams its new output until
 * it exits and returns its exit code, as `docker start -a`.
 */
async function startAttached(args: ParsedArgs, ctx: CommandContext): Promise<number> {
  requireArgs(args.positionals, 1, 'start', 'at least 1 argument: CONTAINER');
  if (args.positionals.length > 1) throw new TsbuildError('CLI_CONFLICT', 'you cannot start and attach multiple containers at once', { exitCode: 1 });
  const deps = await openContainerDeps(ctx);
  const e = await deps.containers.resolve(args.positionals[0] as string);
  const logPath = deps.containers.logPathOf(e.config.id);
  // Output of earlier runs stays in the log: only what this run writes is shown.
  const startOffset = await stat(logPath).then((s) => s.size, () => 0);
  if (!isContainerRunning(e.state) && e.state.status !== 'restarting') {
    await startMonitor(deps.containers, e.config.id, monitorCommandFor(ctx, deps.storeRoot, e.config.id), ctx.signal);
  }
  let last: ContainerEntry | undefined = e;
  await readLogs(logPath, (r) => (r.stream === 'stderr' ? ctx.stderr : ctx.stdout).write(r.log), {
    startOffset,
    follow: true,
    isDone: async () => {
      const now = await deps.containers.inspect(e.config.id);
      if (now !== undefined) last = now;
      return now === undefined || !isContainerRunning(now.state);
    },
    signal: ctx.signal,
  });
  return last.state.exitCode;
}

/**
 * `start -a -i CONTAINER` (or `start -i`): starts the container under a monitor that waits for us
 * to attach through its socket first (no output is missed), then relays our stdin and its output
 * as `attach` until it exits (its exit code) or the detach keys are typed. A container that runs
 * already is just attached to.
 */
async function startInteractive(args: ParsedArgs, ctx: CommandContext): Promise<number> {
  requireArgs(args.positionals, 1, 'start', 'at least 1 argument: CONTAINER');
  if (args.positionals.length > 1) throw new TsbuildError('CLI_CONFLICT', 'you cannot start and attach multiple containers at once', { exitCode: 1 });
  const detachKeys = optString(args, 'detach-keys') ?? DEFAULT_DETACH_KEYS;
  parseDetachKeys(detachKeys);
  const deps = await openContainerDeps(ctx);
  const e = await deps.containers.resolve(args.positionals[0] as string);
  const o = { stdin: true, detachKeys, sigProxy: true };
  if (isContainerRunning(e.state) || e.state.status === 'restarting') return attachFromCli(ctx, deps, e, o);
  const command = monitorCommandFor(ctx, deps.storeRoot, e.config.id);
  const waiting = { ...command, args: [...command.args.slice(0, -1), '--wait-attach', e.config.id] };
  let monitorPid: number | undefined;
  const starting = startMonitor(deps.containers, e.config.id, waiting, ctx.signal, (pid) => { monitorPid = pid; });
  const attached = attachFromCli(ctx, deps, e, { ...o, starting: { done: starting, monitorPid: () => monitorPid } });
  try {
    await starting;
  } catch (err) {
    // A monitor that failed to start ends the attempt to attach: its error is the one shown.
    await attached.catch(() => undefined);
    throw err;
  }
  return attached;
}

/** `tsbuild container inspect CONTAINER...` (docker's `container inspect` JSON). */
export const containerCommand: Command = {
  name: 'container',
  summary: 'Manage containers (inspect)',
  usage: 'container inspect [OPTIONS] CONTAINER [CONTAINER...]',
  options: [{ name: 'format', short: 'f', type: 'string', value: 'TEMPLATE', help: 'Format the output using the given Go template ({{.State.Status}}, {{json .Config}})' }],
  stopAtPositional: false,
  async run(args, ctx) {
    const [sub, ...rest] = args.positionals;
    if (sub !== 'inspect') {
      throw new TsbuildError('CLI_UNKNOWN_COMMAND', `"tsbuild container ${sub ?? ''}" is not supported`, { hint: 'supported: tsbuild container inspect CONTAINER...; ps, logs, stop, start, kill, rm are top-level commands', exitCode: 125 });
    }
    requireArgs(rest, 1, 'container inspect', 'at least 1 argument: CONTAINER');
    const formatText = optString(args, 'format');
    const template = formatText === undefined || formatText === 'json' ? undefined : parseGoTemplate(formatText);
    const deps = await openContainerDeps(ctx);
    const out: unknown[] = [];
    let code = 0;
    for (const name of rest) {
      try {
        const e = await deps.containers.resolve(name);
        out.push(containerInspectJson(e, deps, await activePortsOf(deps, e), await readHealth(deps.containers, e.config.id)));
      } catch (err) {
        if (!(err instanceof TsbuildError)) throw err;
        ctx.stderr.write(`Error: ${err.message}\n`);
        code = 1;
      }
    }
    if (formatText === 'json') for (const o of out) ctx.stdout.write(`${JSON.stringify(o)}\n`);
    else if (template !== undefined) for (const o of out) ctx.stdout.write(`${executeGoTemplate(template, o)}\n`);
    else ctx.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
    return code;
  },
};
