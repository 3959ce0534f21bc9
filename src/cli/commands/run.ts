import { userInfo } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { notSupportedYet, TsbuildError } from '../../core/index.js';
import {
  createRunSpec,
  limitsToResources,
  parseCpus,
  parseIntegerLimit,
  parseMemory,
  parseMemorySwap,
  resolveUser,
  runWithOciRuntime,
  Sandbox,
  validateLimits,
  withDockerDefaults,
} from '../../sandbox/index.js';
import type { CgroupLimits, MountSpec, NetworkMode, RunSpec, SandboxStdio } from '../../sandbox/index.js';
import type { OptionSpec, ParsedArgs } from '../args.js';
import { optBool, optList, optString } from '../args.js';
import type { Command, CommandContext } from '../command.js';

/** `docker run`'s flags that `tsbuild run --rootfs` supports. */
export const runOptions: readonly OptionSpec[] = [
  { name: 'rm', type: 'bool', help: 'Remove the container when it exits (always the case with --rootfs)' },
  { name: 'rootfs', type: 'string', value: 'DIR', help: 'Run in this root filesystem directory instead of an image' },
  { name: 'network', type: 'string', value: 'none|host', help: 'Network mode: none (only lo, default) or host' },
  { name: 'memory', short: 'm', type: 'string', value: 'BYTES', help: 'Memory limit (e.g. 64m)' },
  { name: 'memory-swap', type: 'string', value: 'BYTES', help: 'Memory plus swap limit; -1 for unlimited swap' },
  { name: 'memory-reservation', type: 'string', value: 'BYTES', help: 'Memory soft limit' },
  { name: 'cpus', type: 'string', value: 'N', help: 'Number of CPUs (e.g. 0.5)' },
  { name: 'cpu-shares', short: 'c', type: 'string', value: 'N', help: 'CPU shares (relative weight)' },
  { name: 'cpuset-cpus', type: 'string', value: 'LIST', help: 'CPUs in which to allow execution (0-3, 0,1)' },
  { name: 'pids-limit', type: 'string', value: 'N', help: 'Tune container pids limit (-1 for unlimited)' },
  { name: 'user', short: 'u', type: 'string', value: 'USER[:GROUP]', help: 'Username or UID (format: <name|uid>[:<group|gid>])' },
  { name: 'workdir', short: 'w', type: 'string', value: 'DIR', help: 'Working directory inside the container' },
  { name: 'env', short: 'e', type: 'list', value: 'KEY[=VALUE]', help: 'Set environment variables (without a value: taken from the environment)' },
  { name: 'volume', short: 'v', type: 'list', value: 'SRC:DST[:ro]', help: 'Bind mount a host directory or file' },
  { name: 'tmpfs', type: 'list', value: 'DST', help: 'Mount a tmpfs directory' },
  { name: 'hostname', type: 'string', value: 'NAME', help: 'Container host name' },
  { name: 'cap-add', type: 'list', value: 'CAP', help: 'Add Linux capabilities' },
  { name: 'cap-drop', type: 'list', value: 'CAP', help: 'Drop Linux capabilities' },
  { name: 'read-only', type: 'bool', help: 'Mount the container\'s root filesystem as read only' },
  { name: 'interactive', short: 'i', type: 'bool', help: 'Keep STDIN open' },
  { name: 'tty', short: 't', type: 'bool', help: 'Allocate a pseudo-TTY' },
  { name: 'runtime', type: 'string', value: 'runc|PATH', help: 'Run with an external OCI runtime instead of the built-in sandbox' },
];

function bad(code: string, message: string, hint?: string): TsbuildError {
  return new TsbuildError(`SANDBOX_${code}`, message, { exitCode: 125, ...(hint === undefined ? {} : { hint }) });
}

/** Parses `-e K=V` / `-e K` (from the environment; skipped when unset) into `K=V` strings. */
export function parseEnvFlags(values: readonly string[], env: Readonly<Record<string, string | undefined>>): string[] {
  const out: string[] = [];
  for (const v of values) {
    const eq = v.indexOf('=');
    const key = eq === -1 ? v : v.slice(0, eq);
    if (key === '' || /[\s\0]/.test(key)) throw bad('BAD_ENV', `invalid environment variable "${v}": expected KEY=VALUE`);
    if (eq !== -1) out.push(v);
    else if (env[key] !== undefined) out.push(`${key}=${env[key] as string}`);
  }
  return out;
}

/** Parses `-v SRC:DST[:ro|rw]` into a bind mount (SRC absolute or ./relative to `cwd`). */
export function parseVolume(value: string, cwd: string): MountSpec {
  const parts = value.split(':');
  const [src, dst, mode, ...extra] = parts;
  if (src === undefined || dst === undefined || src === '' || extra.length > 0 || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
    throw bad('BAD_MOUNT', `invalid volume "${value}": expected SRC:DST[:ro|rw]`);
  }
  if (!isAbsolute(src) && !src.startsWith('.')) {
    throw bad('BAD_MOUNT', `volume source "${src}" must be a host path`, 'named volumes are not supported with --rootfs; use an absolute path or ./relative');
  }
  if (!isAbsolute(dst)) throw bad('BAD_MOUNT', `volume destination "${dst}" must be an absolute path`);
  return { destination: dst, type: 'bind', source: resolve(cwd, src), options: ['rbind', 'rprivate', ...(mode === 'ro' ? ['ro'] : [])] };
}

/** Parses the resource flags into validated limits (SANDBOX_BAD_LIMIT). */
export function parseLimitFlags(args: ParsedArgs): CgroupLimits {
  const limits: CgroupLimits = {};
  const s = (n: string): string | undefined => optString(args, n);
  if (s('memory') !== undefined) limits.memory = parseMemory(s('memory') as string);
  if (s('memory-swap') !== undefined) limits.memorySwap = parseMemorySwap(s('memory-swap') as string);
  if (s('memory-reservation') !== undefined) limits.memoryReservation = parseMemory(s('memory-reservation') as string, '--memory-reservation');
  if (s('cpus') !== undefined) limits.cpus = parseCpus(s('cpus') as string);
  if (s('cpu-shares') !== undefined) limits.cpuShares = parseIntegerLimit('--cpu-shares', s('cpu-shares') as string);
  if (s('cpuset-cpus') !== undefined) limits.cpusetCpus = s('cpuset-cpus') as string;
  if (s('pids-limit') !== undefined) limits.pidsLimit = parseIntegerLimit('--pids-limit', s('pids-limit') as string);
  validateLimits(limits);
  // As docker: --memory without --memory-swap allows as much swap as memory.
  return withDockerDefaults(limits);
}

/** Directory for sandbox state: $TSBUILD_RUN_DIR, /run/tsbuild as root, else $XDG_RUNTIME_DIR/tsbuild or the store root. */
function stateDirFor(ctx: CommandContext, uid: number): string {
  const runDir = ctx.env.TSBUILD_RUN_DIR;
  if (runDir !== undefined && runDir !== '') return join(resolve(ctx.cwd, runDir), 'sandbox');
  if (uid === 0) return '/run/tsbuild/sandbox';
  const runtime = ctx.env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && runtime !== '') return join(runtime, 'tsbuild', 'sandbox');
  const root = ctx.global.root ?? ctx.env.TSBUILD_ROOT
    ?? join(ctx.env.XDG_DATA_HOME ?? join(ctx.env.HOME ?? userInfo().homedir, '.local', 'share'), 'tsbuild');
  return join(resolve(ctx.cwd, root), 'sandbox-state');
}

/** Builds the RunSpec of `tsbuild run --rootfs` from the flags. */
export async function buildRunSpec(args: ParsedArgs, ctx: CommandContext, rootfs: string, command: readonly string[], rootless: boolean): Promise<RunSpec> {
  const network = optString(args, 'network') ?? 'none';
  if (network !== 'none' && network !== 'host') {
    throw bad('BAD_NETWORK', `--network takes none or host, not "${network}"`, 'bridge networks and published ports arrive with a later issue');
  }
  const resources = limitsToResources(parseLimitFlags(args));
  const env = parseEnvFlags(optList(args, 'env'), ctx.env);
  const userFlag = optString(args, 'user');
  const user = userFlag === undefined ? await resolveUser(rootfs, 'root').catch(() => ({ uid: 0, gid: 0, additionalGids: [], home: '/root' })) : await resolveUser(rootfs, userFlag);
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home ?? '/'}`);
  const mounts: MountSpec[] = [
    ...optList(args, 'volume').map((v) => parseVolume(v, ctx.cwd)),
    ...optList(args, 'tmpfs').map((d): MountSpec => {
      if (!isAbsolute(d)) throw bad('BAD_MOUNT', `--tmpfs destination "${d}" must be an absolute path`);
      return { destination: d, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] };
    }),
  ];
  const hostname = optString(args, 'hostname');
  const workdir = optString(args, 'workdir');
  return createRunSpec({
    args: command,
    root: { path: rootfs, readonly: optBool(args, 'read-only') },
    env,
    ...(workdir === undefined ? {} : { cwd: workdir }),
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
    ...(hostname === undefined ? {} : { hostname }),
    network: network as NetworkMode,
    terminal: optBool(args, 'tty'),
    userNamespace: rootless,
    capAdd: optList(args, 'cap-add'),
    capDrop: optList(args, 'cap-drop'),
    mounts,
    ...(resources === undefined ? {} : { resources }),
  });
}

/** `tsbuild run`: for now only `--rootfs DIR` (image-based run arrives with containers). */
export const runCommand: Command = {
  name: 'run',
  summary: 'Run a command in a new container',
  usage: 'run [OPTIONS] --rootfs DIR [--] COMMAND [ARG...]',
  options: runOptions,
  stopAtPositional: true,
  async run(args, ctx) {
    const rootfsFlag = optString(args, 'rootfs');
    if (rootfsFlag === undefined) {
      throw notSupportedYet('"tsbuild run IMAGE"', 'running images arrives with containers; use --rootfs DIR to run in a root filesystem directory');
    }
    const command = args.positionals;
    if (command.length === 0) {
      throw new TsbuildError('CLI_MISSING_ARGUMENT', '"tsbuild run --rootfs DIR" requires a command to run', {
        hint: 'usage: tsbuild run --rootfs DIR -- COMMAND [ARG...]',
        exitCode: 125,
      });
    }
    const rootfs = resolve(ctx.cwd, rootfsFlag);
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const rootless = uid !== 0;
    const spec = await buildRunSpec(args, ctx, rootfs, command, rootless);
    // A terminal on our side is handed to the launcher as a file descriptor (raw mode, window size).
    const fdOf = (s: object): number | undefined => ('isTTY' in s && s.isTTY === true && 'fd' in s && typeof s.fd === 'number' ? s.fd : undefined);
    if (optBool(args, 'tty') && optBool(args, 'interactive') && fdOf(ctx.stdin) === undefined) {
      throw bad('NOT_A_TTY', 'the input device is not a TTY', 'drop -t to pipe input into the container, as with docker');
    }
    const stdio: SandboxStdio = {
      stdin: optBool(args, 'interactive') ? fdOf(ctx.stdin) ?? ctx.stdin : 'ignore',
      stdout: fdOf(ctx.stdout) ?? ctx.stdout,
      stderr: fdOf(ctx.stderr) ?? ctx.stderr,
    };
    const warn = (msg: string): void => {
      ctx.stderr.write(`WARNING: ${msg}\n`);
    };
    const stateDir = stateDirFor(ctx, uid);
    const runtime = optString(args, 'runtime');
    if (runtime !== undefined) {
      const result = await runWithOciRuntime(runtime, spec, stdio, ctx.signal, { stateDir, ownerPid: process.pid, rootless });
      if (result.reason !== undefined) ctx.stderr.write(`tsbuild: ${result.reason}\n`);
      return result.exitCode;
    }
    const sandbox = new Sandbox({
      launcherPath: ctx.env.TSBUILD_LAUNCHER ?? fileURLToPath(new URL('../../../build/tsbuild-launcher', import.meta.url)),
      stateDir,
      host: { uid, gid, user: userInfo().username },
      ownerPid: process.pid,
      onWarning: warn,
    });
    const result = await sandbox.run(spec, stdio, ctx.signal);
    if (result.reason !== undefined) ctx.stderr.write(`tsbuild: ${result.reason}\n`);
    return result.exitCode;
  },
};
