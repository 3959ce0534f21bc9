import { notSupportedYet, TsbuildError } from '../../core/index.js';
import { createContainer, createLogWriter, startMonitor, runContainer, removeContainer, type ContainerRecord } from '../../runner/index.js';
import { limitsToResources, type SandboxStdio } from '../../sandbox/index.js';
import type { ParsedArgs } from '../args.js';
import { optBool, optList, optString } from '../args.js';
import type { CommandContext } from '../command.js';
import { monitorCommandFor, openContainerDeps, type ContainerDeps } from '../container-deps.js';
import { parseEnvFlags, parseLimitFlags, parseMountFlags, parseNetworkFlag } from './run.js';

/** Parses `--stop-timeout` (whole seconds, -1 = wait forever). */
function parseStopTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^-?\d+$/.test(text) || Number(text) < -1) {
    throw new TsbuildError('CLI_BAD_VALUE', `invalid --stop-timeout "${text}": expected whole seconds`, { exitCode: 125 });
  }
  return Number(text);
}

/** Creates the container of `tsbuild run IMAGE ...` from the flags. */
export async function createFromFlags(args: ParsedArgs, ctx: CommandContext, deps: ContainerDeps): Promise<ContainerRecord> {
  const [image, ...command] = args.positionals;
  if (image === undefined) {
    throw new TsbuildError('CLI_MISSING_ARGUMENT', '"tsbuild run" requires at least 1 argument', { hint: 'usage: tsbuild run [OPTIONS] IMAGE [COMMAND] [ARG...]', exitCode: 125 });
  }
  if (optString(args, 'runtime') !== undefined) throw notSupportedYet('--runtime with an image', 'use --rootfs DIR with --runtime');
  const resources = limitsToResources(parseLimitFlags(args));
  const name = optString(args, 'name');
  const hostname = optString(args, 'hostname');
  const entrypoint = optString(args, 'entrypoint');
  const user = optString(args, 'user');
  const workdir = optString(args, 'workdir');
  const stopSignal = optString(args, 'stop-signal');
  const stopTimeout = parseStopTimeout(optString(args, 'stop-timeout'));
  return createContainer(deps, {
    image,
    ...(name === undefined ? {} : { name }),
    process: {
      command,
      env: parseEnvFlags(optList(args, 'env'), ctx.env),
      ...(entrypoint === undefined ? {} : { entrypoint }),
      ...(user === undefined ? {} : { user }),
      ...(workdir === undefined ? {} : { workdir }),
      ...(stopSignal === undefined ? {} : { stopSignal }),
    },
    ...(hostname === undefined ? {} : { hostname }),
    network: parseNetworkFlag(args),
    capAdd: optList(args, 'cap-add'),
    capDrop: optList(args, 'cap-drop'),
    mounts: parseMountFlags(args, ctx.cwd),
    ...(resources === undefined ? {} : { resources }),
    readonlyRootfs: optBool(args, 'read-only'),
    autoRemove: optBool(args, 'rm'),
    ...(stopTimeout === undefined ? {} : { stopTimeout }),
  }, ctx.signal);
}

/**
 * `tsbuild run IMAGE [COMMAND...]`: creates a container (the image's snapshots as lowers, a fresh
 * writable layer), then either starts its monitor and prints the ID (`-d`), or runs it attached:
 * output goes to the terminal and to the container log, the exit code is the container's.
 */
export async function runImage(args: ParsedArgs, ctx: CommandContext): Promise<number> {
  if (optBool(args, 'tty')) throw notSupportedYet('-t with an image', 'pseudo-terminals for containers arrive with a later step; drop -t (or use --rootfs DIR -t)');
  const detach = optBool(args, 'detach');
  if (detach && optBool(args, 'interactive')) throw notSupportedYet('-d with -i', 'attaching stdin to a detached container arrives with a later step');
  const deps = await openContainerDeps(ctx);
  const record = await createFromFlags(args, ctx, deps);
  if (detach) {
    try {
      await startMonitor(deps.containers, record.id, monitorCommandFor(ctx, deps.storeRoot, record.id), ctx.signal);
    } catch (err) {
      // A container whose monitor never started is not left half-created with --rm.
      if (record.autoRemove) await removeContainer(deps, record).catch(() => undefined);
      throw err;
    }
    ctx.stdout.write(`${record.id}\n`);
    return 0;
  }
  const log = createLogWriter(deps.containers.logPathOf(record.id), { stdout: ctx.stdout, stderr: ctx.stderr });
  const stdio: SandboxStdio = { stdin: optBool(args, 'interactive') ? ctx.stdin : 'ignore', stdout: log.stdout, stderr: log.stderr };
  try {
    const result = await runContainer(deps, record, stdio, ctx.signal);
    if (result.reason !== undefined && result.oomKilled) ctx.stderr.write(`tsbuild: ${result.reason}\n`);
    return result.exitCode;
  } finally {
    await log.close();
  }
}
