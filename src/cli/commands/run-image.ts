import { notSupportedYet, TsbuildError } from '../../core/index.js';
import {
  launcherSlirp, slirpArgs, slirpArgv0, type ContainerNetwork, type SlirpLookup, type SlirpProcess,
  bindingsOfContainer, checkPortsAvailable, createContainer, findSlirp4netns, parseContainerNetwork, resolveContainerNetwork, createLogWriter, endAttachedRun, NO_RESTART, parseDuration, parsePublishSpec, parseRestartPolicy, startMonitor, markOpenStdin, runContainer, runWithHealthcheck, runWithRestartPolicy, removeContainer, startAttachServer, FOREGROUND_ATTACH_DELAY_MS,
  type AttachServer, type ContainerRecord, type HealthFlags, type PortBinding,
} from '../../runner/index.js';
import { limitsToResources, type ResourcesSpec, type Sandbox, type SandboxPrestart, type SandboxStdio } from '../../sandbox/index.js';
import type { ParsedArgs } from '../args.js';
import { optBool, optList, optString } from '../args.js';
import type { CommandContext } from '../command.js';
import { containerSandbox, launcherPathFor, monitorCommandFor, openContainerDeps, type ContainerDeps } from '../container-deps.js';
import { resolveStoreRoot } from '../store-root.js';
import { markOneTimeWork } from '../one-time-work.js';
import { terminalFdOf, withRawTerminal } from '../terminal.js';
import { existsSync } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseEnvironment, parseLimitFlags, parseStorageFlags } from './run.js';
import { parsePullPolicy, pullForRun } from './run-pull.js';
import { checkCidFile, parseContainerRunOptions, parseExposeFlag, parseLabels } from './run-flags.js';

/** Parses `--stop-timeout` (whole seconds, -1 = wait forever). */
function parseStopTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^-?\d+$/.test(text) || Number(text) < -1) {
    throw new TsbuildError('CLI_BAD_VALUE', `invalid --stop-timeout "${text}": expected whole seconds`, { exitCode: 125 });
  }
  return Number(text);
}

/** Reads `--health-cmd/-interval/-timeout/-retries/-start-period/-start-interval` and `--no-healthcheck`. */
function parseHealthFlags(args: ParsedArgs): HealthFlags {
  const d = (n: string): number | undefined => {
    const v = optString(args, n);
    return v === undefined ? undefined : parseDuration(v, `--${n}`);
  };
  const cmd = optString(args, 'health-cmd');
  const retriesText = optString(args, 'health-retries');
  if (retriesText !== undefined && !/^\d+$/.test(retriesText)) throw new TsbuildError('CLI_BAD_VALUE', `invalid --health-retries "${retriesText}": a whole number`, { exitCode: 125 });
  const disabled = optBool(args, 'no-healthcheck');
  if (disabled && cmd !== undefined) throw new TsbuildError('CLI_CONFLICT', '--no-healthcheck conflicts with --health-* options', { exitCode: 125 });
  const f = { intervalMs: d('health-interval'), timeoutMs: d('health-timeout'), startPeriodMs: d('health-start-period'), startIntervalMs: d('health-start-interval') };
  return {
    ...(cmd === undefined ? {} : { cmd }),
    ...Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined && v > 0)),
    ...(retriesText === undefined || Number(retriesText) === 0 ? {} : { retries: Number(retriesText) }),
    disabled,
  };
}

/** The init binary of `--init` (build/tsbuild-init beside the launcher; $TSBUILD_INIT overrides). Throws RUN_NO_INIT when it is missing. */
function initPathFor(ctx: CommandContext): string {
  const path = ctx.env.TSBUILD_INIT ?? join(dirname(launcherPathFor(ctx)), 'tsbuild-init');
  if (!existsSync(path)) throw new TsbuildError('RUN_NO_INIT', `the init binary ${path} is missing`, { hint: 'build it with "npm run build" (scripts/build-native.mjs)', exitCode: 125 });
  return path;
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
  // The default private network gets slirp4netns when it can be used, else one warning: no outbound network.
  const { network, warning } = resolveContainerNetwork(parseContainerNetwork(optString(args, 'network')), deps.slirp4netns ?? findSlirp4netns(ctx.env.PATH));
  if (warning !== undefined) ctx.stderr.write(`WARNING: ${warning}\n`);
  let ports: PortBinding[] = optList(args, 'publish').flatMap((spec) => parsePublishSpec(spec));
  let publishAll = optBool(args, 'publish-all');
  if (network.mode === 'host' && (ports.length > 0 || publishAll)) {
    ctx.stderr.write('WARNING: Published ports are discarded when using host network mode\n');
    ports = [];
    publishAll = false;
  }
  // A host port in use fails here, before anything is created (the owner binds again at start).
  await checkPortsAvailable(ports);
  const storage = parseStorageFlags(args, ctx.cwd);
  const restartText = optString(args, 'restart');
  const restartPolicy = restartText === undefined ? undefined : parseRestartPolicy(restartText);
  if (restartPolicy !== undefined && restartPolicy.Name !== 'no' && optBool(args, 'rm')) {
    throw new TsbuildError('CLI_CONFLICT', 'conflicting options: cannot specify both --restart and --rm', { exitCode: 125 });
  }
  const env = parseEnvironment(args, ctx);
  const labels = parseLabels(args, ctx.cwd);
  const expose = optList(args, 'expose').flatMap(parseExposeFlag);
  const runOptions = parseContainerRunOptions(args);
  const cidFile = checkCidFile(args, ctx.cwd);
  // The image is pulled last, once every flag is known to be valid (docker's default is "missing"; tsbuild's stays "never" unless asked).
  await pullForRun(deps.store, image, parsePullPolicy(optString(args, 'pull'), 'never'), args, ctx);
  const record = await createContainer(deps, {
    image,
    ...(name === undefined ? {} : { name }),
    process: {
      command,
      env,
      ...(entrypoint === undefined ? {} : { entrypoint }),
      ...(user === undefined ? {} : { user }),
      ...(workdir === undefined ? {} : { workdir }),
      ...(stopSignal === undefined ? {} : { stopSignal }),
    },
    ...(hostname === undefined ? {} : { hostname }),
    network,
    ports,
    publishAll,
    capAdd: optList(args, 'cap-add'),
    capDrop: optList(args, 'cap-drop'),
    mounts: storage.mounts,
    volumes: storage.volumes,
    ...(restartPolicy === undefined ? {} : { restartPolicy }),
    health: parseHealthFlags(args),
    ...(optBool(args, 'init') ? { initPath: initPathFor(ctx) } : {}),
    ...(resources === undefined ? {} : { resources }),
    readonlyRootfs: optBool(args, 'read-only'),
    autoRemove: optBool(args, 'rm'),
    ...(optBool(args, 'tty') ? { tty: true } : {}),
    ...(stopTimeout === undefined ? {} : { stopTimeout }),
    labels,
    expose,
    runOptions,
  }, ctx.signal);
  if (cidFile !== undefined) await writeCidFile(cidFile, deps, record);
  return record;
}

/** Writes `--cidfile` (exclusively: a file made since the check fails); on failure the container goes. Throws CLI_CIDFILE_EXISTS, CLI_CIDFILE. */
async function writeCidFile(path: string, deps: ContainerDeps, record: ContainerRecord): Promise<void> {
  try {
    await writeFile(path, record.id, { flag: 'wx' });
  } catch (err) {
    await removeContainer(deps, record, { volumes: true }).catch(() => undefined);
    const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
    throw new TsbuildError(exists ? 'CLI_CIDFILE_EXISTS' : 'CLI_CIDFILE', exists ? `container ID file found, make sure the other container isn't running or delete ${path}` : `cannot write the container ID file ${path}: ${(err as Error).message}`, { cause: err, exitCode: 125 });
  }
}

/**
 * `tsbuild run IMAGE [COMMAND...]`: creates a container (the image's snapshots as lowers, a fresh
 * writable layer), then either starts its monitor and prints the ID (`-d`), or runs it attached:
 * output goes to the terminal and to the container log, the exit code is the container's. With
 * `-t` the process runs on a pty of the container (`-it`: our terminal in raw mode, restored after).
 */
export async function runImage(args: ParsedArgs, ctx: CommandContext): Promise<number> {
  const detach = optBool(args, 'detach');
  const tty = optBool(args, 'tty');
  const interactive = optBool(args, 'interactive');
  if (tty && interactive && !detach && terminalFdOf(ctx.stdin) === undefined) {
    throw new TsbuildError('CLI_NOT_A_TTY', 'the input device is not a TTY', { hint: 'drop -t to pipe input into the container, as with docker', exitCode: 1 });
  }
  // A foreground run without a terminal or input starts its sandbox first (launcher, cgroup, and the
  // network namespace with slirp4netns: see Sandbox.prestart), while the store is opened and the
  // container created; the first run takes it, else it is disposed of.
  const sandbox = containerSandbox(ctx);
  const slirp4netns = findSlirp4netns(ctx.env.PATH);
  const ahead = detach || tty || interactive ? undefined : await startAhead(args, ctx, sandbox, slirp4netns);
  try {
    // Unpacking the image's layers is one-time work: this start then writes no code cache (cli/code-cache.ts).
    const deps = await openContainerDeps(ctx, { sandbox, slirp4netns, onUnpack: markOneTimeWork });
    return await createAndRun(args, ctx, deps, ahead);
  } finally {
    await ahead?.prestart.dispose();
    await (await ahead?.slirp.catch(() => undefined))?.stop();
  }
}

/** What {@link startAhead} started. */
interface Ahead {
  readonly prestart: SandboxPrestart;
  /** slirp4netns for the prestart's network namespace (undefined: none was made, the run starts its own). */
  readonly slirp: Promise<SlirpProcess | undefined>;
}

/** The sandbox start of a container from the flags' resources and network (undefined when the flags are invalid: creating the container reports that). */
async function startAhead(args: ParsedArgs, ctx: CommandContext, sandbox: Sandbox, slirp4netns: SlirpLookup): Promise<Ahead | undefined> {
  let resources: ResourcesSpec | undefined;
  let network: ContainerNetwork;
  try {
    resources = limitsToResources(parseLimitFlags(args));
    network = resolveContainerNetwork(parseContainerNetwork(optString(args, 'network')), slirp4netns).network;
  } catch {
    return undefined;
  }
  // runContainer's spec has the container's resources or none ({}): always a cgroup. With slirp4netns the launcher
  // makes the network namespace at once and starts slirp4netns for it (root only: rootless, the sandbox ignores it
  // and the run starts slirp as before). A cgroup that cannot be made: the run reports it.
  const slirpPath = network.mode === 'slirp4netns' ? slirp4netns.path : undefined;
  const withSlirp = slirpPath === undefined ? {} : {
    slirp4netns: { file: slirpPath, argv0: slirpArgv0(join(resolveStoreRoot(ctx), 'containers')), args: slirpArgs({ fd: 5 }, network.slirp ?? {}, false) },
  };
  const prestart = await sandbox.prestart(resources ?? {}, { stdin: 'ignore', stdout: new PassThrough(), stderr: new PassThrough() }, withSlirp).catch(() => undefined);
  if (prestart === undefined) return undefined;
  const slirp = prestart.slirpPid.then((pid) => (pid === undefined ? undefined : launcherSlirp(pid)));
  return { prestart, slirp };
}

async function createAndRun(args: ParsedArgs, ctx: CommandContext, deps: ContainerDeps, ahead: Ahead | undefined): Promise<number> {
  const detach = optBool(args, 'detach');
  const tty = optBool(args, 'tty');
  const interactive = optBool(args, 'interactive');
  const record = await createFromFlags(args, ctx, deps);
  if (detach) {
    try {
      // -d -i: the monitor holds the container's stdin open (a pipe, or the pty with -t) for `attach`.
      if (interactive) await markOpenStdin(deps.containers, record.id);
      await startMonitor(deps.containers, record.id, monitorCommandFor(ctx, deps.storeRoot, record.id), ctx.signal);
    } catch (err) {
      // A container whose monitor never started is not left half-created with --rm, nor when
      // its published ports could not be bound (taken since the check).
      if (record.autoRemove || bindingsOfContainer(record).length > 0) await removeContainer(deps, record, { volumes: true }).catch(() => undefined);
      throw err;
    }
    ctx.stdout.write(`${record.id}\n`);
    return 0;
  }
  // `tsbuild attach` from elsewhere gets the output and the exit code, as with a detached container.
  // With -i (no -t) clients' input joins ours in the container's stdin, which ends when ours does
  // (docker's StdinOnce); with -t our terminal is the launcher's, so clients' input and sizes are ignored.
  const mergeInput = interactive && !tty;
  // With input to merge the attach server must be there first. Else it starts once the container has run for
  // FOREGROUND_ATTACH_DELAY_MS: its listen costs ~2 ms of CPU (node:net loads the cluster module), which a short
  // command never needs; clients retry meanwhile (attach-client.ts). Output before it cannot have had a client.
  const attachOptions = { openStdin: mergeInput, tty: false, ownerPid: deps.ownerPid };
  let attach: AttachServer | undefined = mergeInput ? await startAttachServer(deps.containers, record.id, attachOptions) : undefined;
  let attachStarted: Promise<void> | undefined;
  let attachTimer: NodeJS.Timeout | undefined;
  const startAttach = (): Promise<void> => attachStarted ??= attach !== undefined ? Promise.resolve() : startAttachServer(deps.containers, record.id, attachOptions).then((a) => {
    attach = a;
  }, (err: unknown) => {
    ctx.stderr.write(`WARNING: "tsbuild attach" cannot reach this container: ${(err as Error).message}\n`);
  });
  const input = mergeInput ? new PassThrough() : undefined;
  if (input !== undefined) ctx.stdin.pipe(input);
  // Our stdout and stderr are made on the first output (process.stdout/stderr cost 1.5-4 ms each to create, a pipe's more).
  const log = createLogWriter(deps.containers.logPathOf(record.id), { stdout: teeTo(() => ctx.stdout, () => attach?.stdout), stderr: teeTo(() => ctx.stderr, () => attach?.stderr) });
  // With -t the pty's output (the container's stdout and stderr) is the log's stdout, as docker's;
  // -it hands our terminal to the launcher (raw mode, window size, SIGWINCH), and with -t alone
  // the launcher's otherwise unused stderr is our terminal, only for the window size.
  const stdio: SandboxStdio = tty
    ? {
      stdin: interactive ? terminalFdOf(ctx.stdin) ?? 'ignore' : 'ignore', stdout: log.stdout, stderr: terminalFdOf(ctx.stderr) ?? terminalFdOf(ctx.stdout) ?? log.stderr,
      // -it: we hold the raw mode (withRawTerminal) and restore it only after the last forwarded output.
      ...(interactive ? { callerRestoresTerminal: true } : {}),
    }
    : { stdin: input ?? 'ignore', stdout: log.stdout, stderr: log.stderr };
  try {
    const runOnce = async (restartCount: number): ReturnType<typeof runContainer> => {
      let code: number | undefined;
      // This run's clients' input (a new stream per run) goes into the container's stdin too, never
      // ending it; after ours ended (the container's stdin is closed) it is dropped.
      attach?.stdinForRun()?.on('data', (chunk: Buffer) => {
        if (input !== undefined && !input.writableEnded) input.write(chunk);
      });
      try {
        const r = await runWithHealthcheck(deps, record, record.healthcheck, (onStarted, onEnded) => runContainer(deps, record, stdio, ctx.signal, {
          onWarning: (m) => ctx.stderr.write(`WARNING: ${m}\n`), restartCount, onStarted,
          onCreated: () => { attachTimer ??= setTimeout(() => void startAttach(), FOREGROUND_ATTACH_DELAY_MS); },
          // Once the process has ended no attach server starts (with --rm the container's directory goes next);
          // one being started is listening before that.
          onEnded: async () => {
            clearTimeout(attachTimer);
            attachTimer = undefined;
            await attachStarted;
            await onEnded();
          },
          ...(ahead !== undefined && restartCount === 0 ? { prestart: ahead.prestart, slirpAhead: ahead.slirp } : {}),
        }));
        code = r.exitCode;
        return r;
      } finally {
        // A run that failed before its process ended (onEnded) leaves its timer here.
        clearTimeout(attachTimer);
        attachTimer = undefined;
        await attachStarted;
        if (attach !== undefined) await endAttachedRun(attach, log, deps.containers, record.id, code);
      }
    };
    const result = await withRawTerminal(tty && interactive ? ctx.stdin : undefined, async () => {
      const r = await runWithRestartPolicy(deps.containers, record.id, record.restartPolicy ?? NO_RESTART, runOnce, ctx.signal);
      // Everything forwarded reaches the terminal before its mode is restored.
      await new Promise<void>((resolve) => log.stdout.write(Buffer.alloc(0), () => resolve()));
      return r;
    }).catch(async (err: unknown) => {
      // Published ports taken since the check: the container never ran, nothing is left.
      if (err instanceof TsbuildError && err.code.startsWith('RUN_PORT_')) await removeContainer(deps, record, { volumes: true }).catch(() => undefined);
      throw err;
    });
    if (result.reason !== undefined && result.oomKilled) ctx.stderr.write(`tsbuild: ${result.reason}\n`);
    return result.exitCode;
  } finally {
    if (input !== undefined) {
      ctx.stdin.unpipe(input);
      ctx.stdin.pause();
    }
    await attachStarted;
    await attach?.close();
    await log.close();
  }
}

/** A stream writing to `main` (with its backpressure; made on the first write) and to `copyOf()` (the attach clients once there, which never hold it up). */
function teeTo(mainOf: () => Writable, copyOf: () => Writable | undefined): Writable {
  let main: Writable | undefined;
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      // An empty write is the end's flush barrier: before any output there is nothing to flush, and no
      // process.stdout is made for it (~0.3 ms; a terminal's loads node:tty).
      if (chunk.length === 0 && main === undefined) {
        cb();
        return;
      }
      copyOf()?.write(chunk);
      main ??= mainOf();
      if (main.write(chunk)) cb();
      else main.once('drain', () => cb());
    },
  });
}
