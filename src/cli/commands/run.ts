import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { notSupportedYet, TsbuildError } from '../../core/index.js';
import {
  createRunSpec,
  listHostDevices,
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
import type { CgroupLimits, MountSpec, NetworkMode, RunHooks, RunSpec, SandboxStdio } from '../../sandbox/index.js';
import type { OptionSpec, ParsedArgs } from '../args.js';
import { optBool, optList, optString } from '../args.js';
import type { Command, CommandContext } from '../command.js';
import { launcherPathFor, stateDirFor } from '../container-deps.js';
import { runImage } from './run-image.js';
import { isVolumeRequest, parseMountFlag, parseTmpfsFlag, parseVolumeFlag, readEnvFiles, type StorageFlags } from './run-mounts.js';
import { appendExtraHosts, applyDnsConfig, resolveGroupAdd, ulimitsToRlimits, type VolumeRequest } from '../../runner/index.js';
import { parseContainerRunOptions } from './run-flags.js';

/** `docker run`'s flags that `tsbuild run --rootfs` supports. */
export const runOptions: readonly OptionSpec[] = [
  { name: 'detach', short: 'd', type: 'bool', help: 'Run the container in the background and print its ID' },
  { name: 'name', type: 'string', value: 'NAME', help: 'Assign a name to the container' },
  { name: 'entrypoint', type: 'string', value: 'CMD', help: 'Overwrite the default ENTRYPOINT of the image ("" clears it)' },
  { name: 'stop-signal', type: 'string', value: 'SIGNAL', help: 'Signal to stop the container (default: the image\'s STOPSIGNAL, else SIGTERM)' },
  { name: 'stop-timeout', type: 'string', value: 'SECONDS', help: 'Timeout to stop a container before SIGKILL (default 10)' },
  { name: 'rm', type: 'bool', help: 'Remove the container when it exits (always the case with --rootfs)' },
  { name: 'rootfs', type: 'string', value: 'DIR', help: 'Run in this root filesystem directory instead of an image' },
  { name: 'network', type: 'string', value: 'MODE', help: 'Network mode: private (default: own namespace, outbound through slirp4netns when installed), slirp4netns[:allow_host_loopback=true,mtu=N,...], none (only lo) or host; with --rootfs: none (default) or host' },
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
  { name: 'volume', short: 'v', type: 'list', value: '[SRC:]DST[:ro]', help: 'Bind mount a host path (absolute or ./), or mount a named (NAME:DST) or anonymous (DST) volume' },
  { name: 'tmpfs', type: 'list', value: 'DST[:OPTS]', help: 'Mount a tmpfs directory (options: size=64m,mode=1777,ro,exec...)' },
  { name: 'hostname', type: 'string', value: 'NAME', help: 'Container host name' },
  { name: 'cap-add', type: 'list', value: 'CAP', help: 'Add Linux capabilities' },
  { name: 'cap-drop', type: 'list', value: 'CAP', help: 'Drop Linux capabilities' },
  { name: 'read-only', type: 'bool', help: 'Mount the container\'s root filesystem as read only' },
  { name: 'interactive', short: 'i', type: 'bool', help: 'Keep STDIN open' },
  { name: 'tty', short: 't', type: 'bool', help: 'Allocate a pseudo-TTY' },
  { name: 'runtime', type: 'string', value: 'runc|PATH', help: 'Run with an external OCI runtime instead of the built-in sandbox' },
  { name: 'publish', short: 'p', type: 'list', value: '[IP:][HOSTPORT:]CTRPORT[/PROTO]', help: 'Publish a container\'s port(s) to the host (tcp or udp; ranges 8000-8001:80-81)' },
  { name: 'publish-all', short: 'P', type: 'bool', help: 'Publish all exposed ports to free host ports' },
  { name: 'restart', type: 'string', value: 'POLICY', help: 'Restart policy: no, on-failure[:N], always, unless-stopped (default no)' },
  { name: 'env-file', type: 'list', value: 'FILE', help: 'Read environment variables from a file (KEY=VALUE lines)' },
  { name: 'mount', type: 'list', value: 'SPEC', help: 'Attach a filesystem mount (type=bind|volume|tmpfs,src=...,dst=...[,readonly])' },
  { name: 'init', type: 'bool', help: 'Run an init inside the container that forwards signals and reaps processes' },
  { name: 'health-cmd', type: 'string', value: 'CMD', help: 'Command to run to check health (run with /bin/sh -c)' },
  { name: 'health-interval', type: 'string', value: 'DURATION', help: 'Time between running the check (ms|s|m|h) (default 30s)' },
  { name: 'health-timeout', type: 'string', value: 'DURATION', help: 'Maximum time to allow one check to run (ms|s|m|h) (default 30s)' },
  { name: 'health-retries', type: 'string', value: 'N', help: 'Consecutive failures needed to report unhealthy (default 3)' },
  { name: 'health-start-period', type: 'string', value: 'DURATION', help: 'Start period for the container to initialize before counting retries (default 0s)' },
  { name: 'health-start-interval', type: 'string', value: 'DURATION', help: 'Time between running the check during the start period (default 5s)' },
  { name: 'no-healthcheck', type: 'bool', help: 'Disable any container-specified HEALTHCHECK' },
  { name: 'pull', type: 'string', value: 'POLICY', help: 'Pull image before running: always, missing, never (default missing)' },
  { name: 'oom-kill-disable', type: 'bool', help: 'Disable OOM Killer (cgroup v1 only; ignored with a warning on v2)' },
  { name: 'label', short: 'l', type: 'list', value: 'KEY[=VALUE]', help: 'Set meta data on a container (over the image\'s labels)' },
  { name: 'label-file', type: 'list', value: 'FILE', help: 'Read in a line delimited file of labels' },
  { name: 'expose', type: 'list', value: 'PORT[/PROTO]', help: 'Expose a port or a range of ports (-P publishes them)' },
  { name: 'add-host', type: 'list', value: 'HOST:IP', help: 'Add a custom host-to-IP mapping to /etc/hosts' },
  { name: 'dns', type: 'list', value: 'IP', help: 'Set custom DNS servers' },
  { name: 'dns-search', type: 'list', value: 'DOMAIN', help: 'Set custom DNS search domains ("." for none)' },
  { name: 'dns-option', type: 'list', value: 'OPTION', help: 'Set DNS options (e.g. ndots:2)' },
  { name: 'ulimit', type: 'list', value: 'NAME=SOFT[:HARD]', help: 'Ulimit options (e.g. nofile=1024:2048)' },
  { name: 'group-add', type: 'list', value: 'GROUP', help: 'Add additional groups to join (names from the image\'s /etc/group, or gids)' },
  { name: 'shm-size', type: 'string', value: 'BYTES', help: 'Size of /dev/shm (default 64m)' },
  { name: 'security-opt', type: 'list', value: 'OPT', help: 'Security options: no-new-privileges[=true|false] (on by default in tsbuild)' },
  { name: 'cidfile', type: 'string', value: 'FILE', help: 'Write the container ID to the file (it must not exist)' },
  { name: 'privileged', type: 'bool', help: 'Give extended privileges to this container (every capability, the host\'s devices, no masked paths)' },
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
  if (optBool(args, 'oom-kill-disable')) limits.oomKillDisable = true;
  validateLimits(limits);
  // As docker: --memory without --memory-swap allows as much swap as memory.
  return withDockerDefaults(limits);
}

/** Reads `--network` (none or host). Throws SANDBOX_BAD_NETWORK. */
export function parseNetworkFlag(args: ParsedArgs): NetworkMode {
  const network = optString(args, 'network') ?? 'none';
  if (network !== 'none' && network !== 'host') {
    throw bad('BAD_NETWORK', `--network takes none or host, not "${network}"`, 'bridge networks and published ports arrive with a later issue');
  }
  return network;
}

/** Reads `-v`, `--mount` and `--tmpfs` into mounts and volume requests (in that order). Throws SANDBOX_BAD_MOUNT. */
export function parseStorageFlags(args: ParsedArgs, cwd: string): StorageFlags {
  const mounts: MountSpec[] = [];
  const volumes: VolumeRequest[] = [];
  for (const x of [...optList(args, 'volume').map((v) => parseVolumeFlag(v, cwd)), ...optList(args, 'mount').map((m) => parseMountFlag(m, cwd))]) {
    if (isVolumeRequest(x)) volumes.push(x);
    else mounts.push(x);
  }
  mounts.push(...optList(args, 'tmpfs').map(parseTmpfsFlag));
  return { mounts, volumes };
}

/** Reads `-v`, `--mount` and `--tmpfs` into mounts for `--rootfs` (no volumes there). Throws SANDBOX_BAD_MOUNT. */
export function parseMountFlags(args: ParsedArgs, cwd: string): MountSpec[] {
  const { mounts, volumes } = parseStorageFlags(args, cwd);
  if (volumes.length > 0) {
    throw bad('BAD_MOUNT', `volume "${volumes[0]?.name ?? volumes[0]?.destination ?? ''}" needs an image: volumes are not supported with --rootfs`, 'use an absolute path or ./relative host directory');
  }
  return mounts;
}

/** The environment of `--env-file` files then `-e` flags (later wins, as docker). Throws CLI_BAD_ENV_FILE, SANDBOX_BAD_ENV. */
export function parseEnvironment(args: ParsedArgs, ctx: Pick<CommandContext, 'env' | 'cwd'>): string[] {
  return [...readEnvFiles(optList(args, 'env-file'), ctx.cwd, ctx.env), ...parseEnvFlags(optList(args, 'env'), ctx.env)];
}

/** Builds the RunSpec of `tsbuild run --rootfs` from the flags. */
export async function buildRunSpec(args: ParsedArgs, ctx: CommandContext, rootfs: string, command: readonly string[], rootless: boolean): Promise<RunSpec> {
  const network = parseNetworkFlag(args);
  const resources = limitsToResources(parseLimitFlags(args));
  const env = parseEnvironment(args, ctx);
  const userFlag = optString(args, 'user');
  const user = userFlag === undefined ? await resolveUser(rootfs, 'root').catch(() => ({ uid: 0, gid: 0, additionalGids: [], home: '/root' })) : await resolveUser(rootfs, userFlag);
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home ?? '/'}`);
  const mounts = parseMountFlags(args, ctx.cwd);
  const hostname = optString(args, 'hostname');
  const workdir = optString(args, 'workdir');
  const extra = parseContainerRunOptions(args);
  const groups = extra.groupAdd === undefined || extra.groupAdd.length === 0 ? [] : resolveGroupAdd(extra.groupAdd, await readFile(join(rootfs, 'etc', 'group'), 'utf8').catch(() => undefined));
  return createRunSpec({
    args: command,
    root: { path: rootfs, readonly: optBool(args, 'read-only') },
    env,
    ...(workdir === undefined ? {} : { cwd: workdir }),
    user: { uid: user.uid, gid: user.gid, additionalGids: [...new Set([...user.additionalGids, ...groups])] },
    ...(hostname === undefined ? {} : { hostname }),
    network,
    ...(extra.ulimits === undefined || extra.ulimits.length === 0 ? {} : { rlimits: ulimitsToRlimits(extra.ulimits) }),
    ...(extra.noNewPrivileges === undefined ? {} : { noNewPrivileges: extra.noNewPrivileges }),
    ...(extra.seccompUnconfined === true ? { seccomp: 'unconfined' as const } : {}),
    ...(extra.shmSize === undefined ? {} : { shmSize: extra.shmSize }),
    ...(extra.privileged === true ? { privileged: true, devices: listHostDevices() } : {}),
    terminal: optBool(args, 'tty'),
    userNamespace: rootless,
    capAdd: optList(args, 'cap-add'),
    capDrop: optList(args, 'cap-drop'),
    mounts,
    ...(resources === undefined ? {} : { resources }),
  });
}

/** `tsbuild run IMAGE [COMMAND...]` (a container, see run-image.ts) or `tsbuild run --rootfs DIR COMMAND...` (a one-off sandbox). */
export const runCommand: Command = {
  name: 'run',
  summary: 'Run a command in a new container',
  usage: 'run [OPTIONS] IMAGE [COMMAND] [ARG...]  |  run [OPTIONS] --rootfs DIR [--] COMMAND [ARG...]',
  options: runOptions,
  stopAtPositional: true,
  async run(args, ctx) {
    const rootfsFlag = optString(args, 'rootfs');
    if (rootfsFlag === undefined) return runImage(args, ctx);
    for (const flag of ['detach', 'name', 'entrypoint', 'stop-signal', 'stop-timeout', 'publish', 'publish-all', 'restart', 'pull', 'init', 'health-cmd', 'health-interval', 'health-timeout', 'health-retries', 'health-start-period', 'health-start-interval', 'no-healthcheck', 'label', 'label-file', 'expose', 'cidfile']) {
      if (args.options[flag] !== undefined) throw bad('BAD_FLAG', `--${flag} needs an image: it cannot be used with --rootfs`);
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
    // --add-host and --dns* reach the built-in sandbox's generated /etc files.
    const extra = parseContainerRunOptions(args);
    const hooks: RunHooks = {
      ...(extra.dns === undefined ? {} : { resolvConf: (host: string) => applyDnsConfig(host, extra.dns) }),
      ...(extra.extraHosts === undefined || extra.extraHosts.length === 0 ? {} : { hosts: (text: string) => appendExtraHosts(text, extra.extraHosts ?? []) }),
    };
    if (runtime !== undefined) {
      if (Object.keys(hooks).length > 0) throw notSupportedYet('--add-host and --dns* with --runtime');
      const result = await runWithOciRuntime(runtime, spec, stdio, ctx.signal, { stateDir, ownerPid: process.pid, rootless });
      if (result.reason !== undefined) ctx.stderr.write(`tsbuild: ${result.reason}\n`);
      return result.exitCode;
    }
    const sandbox = new Sandbox({
      launcherPath: launcherPathFor(ctx),
      stateDir,
      host: { uid, gid, user: userInfo().username },
      ownerPid: process.pid,
      onWarning: warn,
    });
    const result = await sandbox.run(spec, stdio, ctx.signal, hooks);
    if (result.reason !== undefined) ctx.stderr.write(`tsbuild: ${result.reason}\n`);
    return result.exitCode;
  },
};
