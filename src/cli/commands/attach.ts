import { spawnSync } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { TsbuildError } from '../../core/index.js';
import {
  attachContainer, DEFAULT_DETACH_KEYS, killContainer, parseDetachKeys, type AttachIo, type AttachOptions, type AttachResult, type ContainerEntry,
} from '../../runner/index.js';
import type { ParsedArgs } from '../args.js';
import { optBool, optString } from '../args.js';
import type { Command, CommandContext } from '../command.js';
import { openContainerDeps, type ContainerDeps } from '../container-deps.js';
import { terminalFdOf, withRawTerminal } from '../terminal.js';
import { requireArgs } from './image-info.js';

/** Signals `--sig-proxy` passes on to the container (not SIGKILL/SIGSTOP, which cannot be caught). */
const PROXIED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** How a CLI attach session is wired. */
export interface CliAttachOptions {
  /** Relay our stdin (false: `--no-stdin`). */
  readonly stdin: boolean;
  /** `--detach-keys` text (docker's format). */
  readonly detachKeys: string;
  /** Pass the signals we receive on to the container (no tty only, as docker). */
  readonly sigProxy: boolean;
  /** The container is being started (`start -a -i`) by a monitor: see AttachOptions. */
  readonly starting?: AttachOptions['starting'];
}

/** The size of the terminal on `s` (a tty.WriteStream), if it is one. */
function sizeOf(s: Writable): { rows: number; cols: number } | undefined {
  const t = s as Writable & { rows?: number; columns?: number; isTTY?: boolean };
  return t.isTTY === true && typeof t.rows === 'number' && typeof t.columns === 'number' ? { rows: t.rows, cols: t.columns } : undefined;
}

/**
 * Turns off output processing (onlcr) of our terminal on `stdin`, which node's raw mode keeps: the
 * container's pty already made its newlines \r\n (cfmakeraw, as docker). Restored with the rest
 * of the saved mode when raw mode ends. Best effort.
 */
function rawOutput(stdin: Readable): void {
  const fd = terminalFdOf(stdin);
  if (fd !== undefined) spawnSync('stty', ['-opost'], { stdio: [fd, 'ignore', 'ignore'] });
}

/**
 * Attaches our stdio to container `entry` (its monitor's socket) until it exits (its exit code) or
 * the detach keys are typed (0). A tty container gets our terminal in raw mode and its size (also
 * on resize); without a tty, `sigProxy` passes our signals on. Throws CLI_NOT_A_TTY for a tty
 * container with stdin that is not a terminal (docker's check).
 */
export async function attachFromCli(ctx: CommandContext, deps: ContainerDeps, entry: ContainerEntry, o: CliAttachOptions): Promise<number> {
  const tty = entry.config.tty === true;
  const detachKeys = parseDetachKeys(o.detachKeys);
  const stdin: Readable | undefined = o.stdin ? ctx.stdin : undefined;
  if (tty && stdin !== undefined && terminalFdOf(stdin) === undefined) {
    throw new TsbuildError('CLI_NOT_A_TTY', 'the input device is not a TTY', { hint: 'use --no-stdin, or attach from a terminal', exitCode: 1 });
  }
  const sizeStream = sizeOf(ctx.stdout) !== undefined ? ctx.stdout : ctx.stderr;
  const io: AttachIo = {
    ...(stdin === undefined ? {} : { stdin }),
    stdout: ctx.stdout,
    stderr: ctx.stderr,
    detachKeys,
    ...(tty ? {
      terminalSize: () => sizeOf(sizeStream),
      onResize: (cb: () => void) => {
        sizeStream.on('resize', cb);
        return () => sizeStream.off('resize', cb);
      },
    } : {}),
  };
  const proxies: [NodeJS.Signals, () => void][] = [];
  if (o.sigProxy && !tty) {
    for (const sig of PROXIED_SIGNALS) {
      const h = (): void => {
        void deps.containers.inspect(entry.config.id).then((e) => (e === undefined ? undefined : killContainer(deps.containers, e, sig))).catch(() => undefined);
      };
      process.on(sig, h);
      proxies.push([sig, h]);
    }
  }
  let result: AttachResult;
  try {
    result = await withRawTerminal(tty ? stdin : undefined, () => {
      if (tty && stdin !== undefined) rawOutput(stdin);
      return attachContainer(deps.containers, entry, io, {
      ...(o.starting === undefined ? {} : { starting: o.starting }),
      // With the signals proxied, an interrupt is the container's to handle: we end with it.
      ...(proxies.length > 0 ? {} : { signal: ctx.signal }),
      });
    });
  } finally {
    for (const [sig, h] of proxies) process.off(sig, h);
  }
  // Everything received reaches our stdout before we exit.
  await new Promise<void>((resolve) => ctx.stdout.write(Buffer.alloc(0), () => resolve()));
  return result.detached ? 0 : result.exitCode;
}

/** Reads attach's `--detach-keys` and `--sig-proxy` (default true). */
export function attachFlags(args: ParsedArgs): { detachKeys: string; sigProxy: boolean } {
  return { detachKeys: optString(args, 'detach-keys') ?? DEFAULT_DETACH_KEYS, sigProxy: args.options['sig-proxy'] !== false };
}

/** `tsbuild attach [--no-stdin] [--detach-keys KEYS] [--sig-proxy] CONTAINER`. */
export const attachCommand: Command = {
  name: 'attach',
  summary: 'Attach local standard input, output, and error streams to a running container',
  usage: 'attach [OPTIONS] CONTAINER',
  options: [
    { name: 'no-stdin', type: 'bool', help: 'Do not attach STDIN' },
    { name: 'detach-keys', type: 'string', value: 'KEYS', help: `Override the key sequence for detaching a container (default "${DEFAULT_DETACH_KEYS}")` },
    { name: 'sig-proxy', type: 'bool', help: 'Proxy all received signals to the process (default true; --sig-proxy=false to turn off)' },
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'attach', 'exactly 1 argument: CONTAINER');
    if (args.positionals.length > 1) throw new TsbuildError('CLI_BAD_ARGUMENT', '"tsbuild attach" requires exactly 1 argument', { hint: 'usage: tsbuild attach [OPTIONS] CONTAINER', exitCode: 1 });
    const flags = attachFlags(args);
    parseDetachKeys(flags.detachKeys); // bad keys fail before anything is looked up
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.resolve(args.positionals[0] as string);
    return attachFromCli(ctx, deps, entry, { stdin: !optBool(args, 'no-stdin'), ...flags });
  },
};
