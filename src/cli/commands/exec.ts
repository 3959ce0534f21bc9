import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { TsbuildError } from '../../core/index.js';
import { execInContainer } from '../../runner/index.js';
import type { SandboxStdio } from '../../sandbox/index.js';
import { optBool, optList, optString } from '../args.js';
import type { Command } from '../command.js';
import { openContainerDeps } from '../container-deps.js';
import { requireArgs } from './image-info.js';
import { parseEnvFlags } from './run.js';

/**
 * Parses a docker env file: `KEY=VALUE` lines, `KEY` alone taken from `env` (skipped when unset),
 * blank lines and `#` comments ignored; the value is kept verbatim (no quotes removed, as docker).
 */
export function parseEnvFile(text: string, env: Readonly<Record<string, string | undefined>>, file: string): string[] {
  const out: string[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/^\s+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    const key = eq === -1 ? line.trimEnd() : line.slice(0, eq);
    if (key === '' || /[\s\0]/.test(key)) {
      throw new TsbuildError('CLI_BAD_VALUE', `invalid environment variable in ${file} line ${i + 1}: "${raw}"`, { exitCode: 125 });
    }
    if (eq !== -1) out.push(line);
    else if (env[key] !== undefined) out.push(`${key}=${env[key] as string}`);
  }
  return out;
}

/** A TTY stream's file descriptor (handed to the launcher as it is), else undefined. */
function fdOf(s: object): number | undefined {
  return 'isTTY' in s && s.isTTY === true && 'fd' in s && typeof s.fd === 'number' ? s.fd : undefined;
}

/** `tsbuild exec [-i] [-t] [-d] [-u USER] [-w DIR] [-e K=V] [--env-file F] CONTAINER COMMAND [ARG...]`. */
export const execCommand: Command = {
  name: 'exec',
  summary: 'Run a command in a running container',
  usage: 'exec [OPTIONS] CONTAINER COMMAND [ARG...]',
  options: [
    { name: 'interactive', short: 'i', type: 'bool', help: 'Keep STDIN open' },
    { name: 'tty', short: 't', type: 'bool', help: 'Allocate a pseudo-TTY' },
    { name: 'detach', short: 'd', type: 'bool', help: 'Detached mode: run command in the background' },
    { name: 'user', short: 'u', type: 'string', value: 'USER', help: 'Username or UID (format: "<name|uid>[:<group|gid>]")' },
    { name: 'workdir', short: 'w', type: 'string', value: 'DIR', help: 'Working directory inside the container' },
    { name: 'env', short: 'e', type: 'list', value: 'KEY[=VALUE]', help: 'Set environment variables' },
    { name: 'env-file', type: 'list', value: 'FILE', help: 'Read in a file of environment variables' },
    { name: 'privileged', type: 'bool', help: 'Give extended privileges to the command (every capability)' },
  ],
  stopAtPositional: true,
  async run(args, ctx) {
    requireArgs(args.positionals, 2, 'exec', 'at least 2 arguments: CONTAINER COMMAND [ARG...]');
    const [name, ...command] = args.positionals as [string, ...string[]];
    const workdir = optString(args, 'workdir');
    if (workdir !== undefined && !workdir.startsWith('/')) {
      throw new TsbuildError('CLI_BAD_VALUE', `the working directory "${workdir}" is invalid, it needs to be an absolute path`, { exitCode: 125 });
    }
    const env: string[] = [];
    for (const f of optList(args, 'env-file')) {
      const path = resolve(ctx.cwd, f);
      const text = await readFile(path, 'utf8').catch((err: unknown) => {
        throw new TsbuildError('CLI_BAD_VALUE', `cannot read the env file ${path}: ${(err as Error).message}`, { exitCode: 125 });
      });
      env.push(...parseEnvFile(text, ctx.env, path));
    }
    env.push(...parseEnvFlags(optList(args, 'env'), ctx.env));
    const interactive = optBool(args, 'interactive');
    const terminal = optBool(args, 'tty');
    const detach = optBool(args, 'detach');
    if (terminal && interactive && !detach && fdOf(ctx.stdin) === undefined) {
      throw new TsbuildError('CLI_NOT_A_TTY', 'the input device is not a TTY', { hint: 'drop -t to pipe input into the command, as with docker', exitCode: 1 });
    }
    const stdio: SandboxStdio = detach
      ? { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' }
      : { stdin: interactive ? fdOf(ctx.stdin) ?? ctx.stdin : 'ignore', stdout: fdOf(ctx.stdout) ?? ctx.stdout, stderr: fdOf(ctx.stderr) ?? ctx.stderr };
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.resolve(name);
    const user = optString(args, 'user');
    const result = await execInContainer(deps, entry, {
      command, env, terminal, detach,
      ...(optBool(args, 'privileged') ? { privileged: true } : {}),
      ...(user === undefined ? {} : { user }),
      ...(workdir === undefined ? {} : { workdir }),
    }, stdio, ctx.signal);
    return result.exitCode;
  },
};
