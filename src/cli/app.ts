import { readFileSync } from 'node:fs';
import { suggest, TsbuildError } from '../core/index.js';
import { formatOptions, parseArgs, type OptionSpec } from './args.js';
import type { Command, CommandContext, GlobalOptions } from './command.js';
import { commands, findCommand } from './commands/index.js';
import { renderError } from './render-error.js';

/** Options accepted before the command name. */
export const globalOptionSpecs: readonly OptionSpec[] = [
  { name: 'root', type: 'string', value: 'DIR', help: 'Store root (default $TSBUILD_ROOT, /var/lib/tsbuild as root, else $XDG_DATA_HOME/tsbuild)' },
  { name: 'debug', short: 'D', type: 'bool', help: 'Show stack traces and debug output' },
  { name: 'version', short: 'v', type: 'bool', help: 'Print version information and quit' },
];

/** Returns the package version from package.json. */
export function readVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    'Usage:  tsbuild [OPTIONS] COMMAND',
    '        tsbuild [OPTIONS] [BUILD OPTIONS] PATH   (same as "tsbuild build")',
    '',
    'A daemonless container image toolchain.',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Global options:',
    formatOptions(globalOptionSpecs),
    '',
    'Run "tsbuild COMMAND --help" for more information on a command.',
  ].join('\n');
}

/** Help text of one command. */
export function commandHelp(cmd: Command): string {
  return [`Usage:  tsbuild ${cmd.usage}`, '', cmd.summary, '', 'Options:', formatOptions(cmd.options)].join('\n');
}

/** Splits global options from the rest; the first non-option word ends them. */
function splitGlobal(argv: readonly string[]): { global: GlobalOptions; version: boolean; help: boolean; rest: string[] } {
  let root: string | undefined;
  let debug = false;
  let version = false;
  let help = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--debug' || a === '-D') debug = true;
    else if (a === '--version' || a === '-v') version = true;
    else if (a === '--help' || a === '-h') help = true;
    else if (a === '--root') root = argv[++i];
    else if (a.startsWith('--root=')) root = a.slice('--root='.length);
    else break;
  }
  if (root === '') throw new TsbuildError('CLI_MISSING_VALUE', 'flag --root needs a value', { exitCode: 125 });
  return { global: { ...(root === undefined ? {} : { root }), debug }, version, help, rest: argv.slice(i) };
}

/** What the CLI needs from its host process. */
export type CliIo = Omit<CommandContext, 'global' | 'sources'>;

/**
 * Runs the CLI with `argv` (without node and script): resolves to the exit code and never
 * throws; errors are rendered to `io.stderr` (stack traces only with --debug).
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const sources = new Map<string, string>();
  let debug = argv.includes('--debug') || argv.includes('-D');
  try {
    const { global, version, help, rest } = splitGlobal(argv);
    debug = global.debug;
    if (version) {
      io.stdout.write(`tsbuild version ${readVersion()}\n`);
      return 0;
    }
    const first = rest[0];
    if (first === undefined || (help && rest.length === 0)) {
      io.stdout.write(`${mainHelp()}\n`);
      return first === undefined && !help ? 1 : 0;
    }
    if (first === 'help') {
      const target = rest[1] === undefined ? undefined : findCommand(rest[1]);
      io.stdout.write(`${target === undefined ? mainHelp() : commandHelp(target)}\n`);
      return 0;
    }
    let cmd = findCommand(first);
    let cmdArgv = rest.slice(1);
    if (cmd === undefined) {
      // `tsbuild -f Dockerfile -t x .` and `tsbuild .` are `tsbuild build ...`.
      if (first.startsWith('-') || first === '.' || first.includes('/')) {
        cmd = findCommand('build') as Command;
        cmdArgv = rest;
      } else {
        const guess = suggest(first, commands.map((c) => c.name));
        throw new TsbuildError('CLI_UNKNOWN_COMMAND', `unknown command "${first}"`, {
          hint: guess === undefined ? 'run "tsbuild --help" for the list of commands' : `did you mean "tsbuild ${guess}"?`,
          exitCode: 125,
        });
      }
    }
    const parsed = parseArgs(cmdArgv, cmd.options, cmd.name, cmd.stopAtPositional ?? false);
    if (parsed.options.help === true || help) {
      io.stdout.write(`${commandHelp(cmd)}\n`);
      return 0;
    }
    // Own property descriptors, not a spread: a lazy `stdin` getter stays lazy.
    const ctx = Object.defineProperties({ global, sources, argv }, Object.getOwnPropertyDescriptors(io)) as CommandContext;
    return await cmd.run(parsed, ctx);
  } catch (err) {
    io.stderr.write(`${renderError(err, { debug, sources })}\n`);
    return err instanceof TsbuildError ? err.exitCode : 1;
  }
}
