/**
 * Container network modes and outbound networking through slirp4netns, as podman does it:
 * `private` (a new network namespace with only `lo`), `slirp4netns[:OPTIONS]` (the same namespace
 * plus a `tap0` that slirp4netns, a user-mode TCP/IP stack on the host side, connects to the host's
 * network: 10.0.2.100/24, gateway 10.0.2.2, DNS forwarder 10.0.2.3), `none` and `host`. The
 * container's owner starts slirp4netns once the namespaces exist and before the command runs, and
 * stops it with the container; its exit fd makes it end with the owner even after a SIGKILL.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { TsbuildError } from '../core/index.js';
import { spawnChild, type SpawnedChild } from '../sys/index.js';
import type { NetworkMode, RunHooks } from '../sandbox/index.js';

/** How a container is networked (`--network`). */
export type ContainerNetworkMode = 'private' | 'slirp4netns' | 'none' | 'host';

/** The options of `--network slirp4netns:KEY=VALUE,...` (podman's names in comments). */
export interface SlirpOptions {
  /** `allow_host_loopback`: 10.0.2.2 reaches the host's 127.0.0.1 (default false). */
  readonly allowHostLoopback?: boolean;
  /** `mtu` (default 65520, as podman). */
  readonly mtu?: number;
  /** `cidr` of the container's network (default 10.0.2.0/24). */
  readonly cidr?: string;
  /** `enable_ipv6` (experimental in slirp4netns). */
  readonly enableIpv6?: boolean;
  /** `outbound_addr` / `outbound_addr6`: the host address outbound connections bind to. */
  readonly outboundAddr?: string;
  readonly outboundAddr6?: string;
}

/** A parsed `--network` value. */
export interface ContainerNetwork {
  readonly mode: ContainerNetworkMode;
  /** Only with mode `slirp4netns`. */
  readonly slirp?: SlirpOptions;
}

/** Where slirp4netns is, or why it cannot be used by this user. */
export type SlirpLookup = { readonly path: string } | { readonly path?: undefined; readonly why: string };

/** podman's default MTU for slirp4netns. */
export const SLIRP_DEFAULT_MTU = 65520;
const DEFAULT_CIDR = '10.0.2.0/24';
const MODES = 'private (the default), slirp4netns[:OPTIONS], none or host';

function badValue(message: string, hint?: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', message, { exitCode: 125, ...(hint === undefined ? {} : { hint }) });
}

function parseBool(key: string, value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw badValue(`invalid --network slirp4netns option ${key}=${value}: expected true or false`);
}

/** The network address of an IPv4 CIDR as four octets and its prefix length; undefined when malformed. */
function parseCidr(text: string): { octets: number[]; prefix: number } | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(text);
  if (m === null) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255) || prefix < 1 || prefix > 25) return undefined;
  const addr = octets.reduce((a, o) => a * 256 + o, 0);
  const net = addr - (addr % 2 ** (32 - prefix));
  return { octets: [24, 16, 8, 0].map((s) => Math.floor(net / 2 ** s) % 256), prefix };
}

/** The address `offset` after the network address of `cidr` (2: the host, 3: DNS, 100: the container). */
export function slirpAddress(cidr: string | undefined, offset: number): string {
  const c = parseCidr(cidr ?? DEFAULT_CIDR) ?? { octets: [10, 0, 2, 0], prefix: 24 };
  const o = [...c.octets];
  o[3] = (o[3] ?? 0) + offset;
  return o.join('.');
}

function parseSlirpOptions(text: string): SlirpOptions {
  const o: { -readonly [K in keyof SlirpOptions]: SlirpOptions[K] } = {};
  for (const item of text.split(',')) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    const value = eq < 0 ? '' : item.slice(eq + 1);
    if (eq < 0 || value === '') throw badValue(`invalid --network slirp4netns option "${item}": expected KEY=VALUE`);
    switch (key) {
      case 'allow_host_loopback': o.allowHostLoopback = parseBool(key, value); break;
      case 'enable_ipv6': o.enableIpv6 = parseBool(key, value); break;
      case 'mtu':
        if (!/^\d+$/.test(value) || Number(value) < 68 || Number(value) > 65521) throw badValue(`invalid --network slirp4netns option mtu=${value}: expected 68 to 65521`);
        o.mtu = Number(value);
        break;
      case 'cidr':
        if (parseCidr(value) === undefined) throw badValue(`invalid --network slirp4netns option cidr=${value}: expected an IPv4 network such as 10.0.2.0/24 (prefix at most /25)`);
        o.cidr = value;
        break;
      case 'outbound_addr': o.outboundAddr = value; break;
      case 'outbound_addr6': o.outboundAddr6 = value; break;
      default:
        throw badValue(`unknown --network slirp4netns option "${key}"`, 'supported: allow_host_loopback, mtu, cidr, enable_ipv6, outbound_addr, outbound_addr6 (published ports use tsbuild\'s own forwarder, not port_handler)');
    }
  }
  return o;
}

/** Parses `--network` of `run` (podman's syntax; absent: `private`). Throws CLI_BAD_VALUE. */
export function parseContainerNetwork(text: string | undefined): ContainerNetwork {
  if (text === undefined || text === 'private') return { mode: 'private' };
  if (text === 'none' || text === 'host') return { mode: text };
  if (text === 'slirp4netns') return { mode: 'slirp4netns', slirp: {} };
  if (text.startsWith('slirp4netns:')) return { mode: 'slirp4netns', slirp: parseSlirpOptions(text.slice('slirp4netns:'.length)) };
  throw badValue(`--network takes ${MODES}, not "${text}"`, 'the default private network reaches the outside through slirp4netns when it is installed');
}

/** Formats a network back to podman's `--network` syntax (e.g. `slirp4netns:allow_host_loopback=true`). */
export function formatContainerNetwork(n: ContainerNetwork): string {
  const s = n.slirp ?? {};
  const opts = [
    s.allowHostLoopback === undefined ? '' : `allow_host_loopback=${String(s.allowHostLoopback)}`,
    s.mtu === undefined ? '' : `mtu=${s.mtu}`,
    s.cidr === undefined ? '' : `cidr=${s.cidr}`,
    s.enableIpv6 === undefined ? '' : `enable_ipv6=${String(s.enableIpv6)}`,
    s.outboundAddr === undefined ? '' : `outbound_addr=${s.outboundAddr}`,
    s.outboundAddr6 === undefined ? '' : `outbound_addr6=${s.outboundAddr6}`,
  ].filter((x) => x !== '');
  return n.mode === 'slirp4netns' && opts.length > 0 ? `slirp4netns:${opts.join(',')}` : n.mode;
}

/** The search path when PATH is unset (execvp's default). */
const DEFAULT_SEARCH_PATH = '/usr/bin:/bin';

/**
 * Finds an executable `slirp4netns` on `pathEnv` (a PATH value; unset: execvp's /usr/bin:/bin) and
 * checks that /dev/net/tun can be opened for reading and writing (rootless slirp4netns opens it in
 * the container's user namespace, where only the file mode counts; udev's default is 0666).
 */
export function findSlirp4netns(pathEnv: string | undefined): SlirpLookup {
  let path: string | undefined;
  for (const dir of (pathEnv ?? DEFAULT_SEARCH_PATH).split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, 'slirp4netns'), constants.X_OK);
      path = join(dir, 'slirp4netns');
      break;
    } catch {
      // not in this directory
    }
  }
  if (path === undefined) return { why: 'slirp4netns is not installed (apt-get install slirp4netns)' };
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    return { why: '/dev/net/tun is not readable and writable by this user (udev makes it mode 0666; chmod 0666 /dev/net/tun)' };
  }
  return { path };
}

/**
 * Decides the network a new container gets: `private` becomes `slirp4netns` when slirp4netns can
 * be used (else it stays `private`, with a `warning` for the user); `slirp4netns` without it
 * throws RUN_NO_SLIRP; `none` and `host` are kept.
 */
export function resolveContainerNetwork(requested: ContainerNetwork, slirp: SlirpLookup): { network: ContainerNetwork; warning?: string } {
  if (requested.mode === 'private') {
    if (slirp.path !== undefined) return { network: { mode: 'slirp4netns', slirp: {} } };
    return { network: requested, warning: `the container has no outbound network: ${slirp.why}; install it, or use --network host` };
  }
  if (requested.mode === 'slirp4netns' && slirp.path === undefined) throw noSlirp(slirp.why);
  return { network: requested };
}

function noSlirp(why: string): TsbuildError {
  return new TsbuildError('RUN_NO_SLIRP', `--network slirp4netns cannot be used: ${why}`, { exitCode: 125, hint: 'install slirp4netns, or use --network host (or none)' });
}

/** The sandbox's view of a container network: `host` shares the host's, every other mode is a new namespace. */
export function sandboxNetworkOf(mode: ContainerNetworkMode): NetworkMode {
  return mode === 'host' ? 'host' : 'none';
}

/**
 * The container's /etc/resolv.conf with slirp4netns: its DNS forwarder (10.0.2.3) first, then the
 * host's other nameservers that are reachable from the container (not loopback ones), search and
 * options lines kept, as podman writes it.
 */
export function slirpResolvConf(hostText: string, options: SlirpOptions = {}): string {
  const lines = [`nameserver ${slirpAddress(options.cidr, 3)}`];
  if (options.enableIpv6 === true) lines.push('nameserver fd00::3');
  for (const raw of hostText.split('\n')) {
    const line = raw.trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (m !== null) {
      const ns = m[1] ?? '';
      if (!/^127\./.test(ns) && ns !== '::1' && !lines.includes(`nameserver ${ns}`) && (options.enableIpv6 === true || !ns.includes(':'))) lines.push(`nameserver ${ns}`);
    } else if (/^(search|domain|options)\s/.test(line)) {
      lines.push(line);
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The slirp4netns command line for the container process `pid`, or for the network namespace open on
 * slirp4netns's fd 5 (`{ fd: 5 }`: `--netns-type=path`), ready on fd 3, exit on fd 4.
 */
export function slirpArgs(pid: number | { readonly fd: number }, options: SlirpOptions, rootless: boolean): string[] {
  return [
    '--configure',
    `--mtu=${options.mtu ?? SLIRP_DEFAULT_MTU}`,
    // SECURITY: by default the container cannot reach services that listen only on the host's loopback.
    ...(options.allowHostLoopback === true ? [] : ['--disable-host-loopback']),
    // SECURITY: slirp4netns in its own mount namespace with a syscall filter (as podman when supported).
    '--enable-sandbox',
    '--enable-seccomp',
    ...(options.cidr === undefined ? [] : [`--cidr=${options.cidr}`]),
    ...(options.enableIpv6 === true ? ['--enable-ipv6'] : []),
    ...(options.outboundAddr === undefined ? [] : [`--outbound-addr=${options.outboundAddr}`]),
    ...(options.outboundAddr6 === undefined ? [] : [`--outbound-addr6=${options.outboundAddr6}`]),
    '--ready-fd=3',
    '--exit-fd=4',
    ...(typeof pid === 'number' ? (rootless ? [`--userns-path=/proc/${pid}/ns/user`] : []) : ['--netns-type=path']),
    typeof pid === 'number' ? String(pid) : `/proc/self/fd/${pid.fd}`,
    'tap0',
  ];
}

/** A running slirp4netns. */
export interface SlirpProcess {
  readonly pid: number;
  /**
   * Ends it (closes its exit fd; SIGKILL if it lingers) and resolves once it has ended: it exited, or
   * it is in the kernel's exit path (it runs no more code of its own; the kernel is still releasing
   * its tap device, see {@link hasEnded}). Idempotent.
   */
  stop(): Promise<void>;
}

/** How {@link startSlirp} runs slirp4netns. */
export interface SlirpStartOptions {
  readonly options: SlirpOptions;
  /** True when the container has its own user namespace: slirp4netns joins it. */
  readonly rootless: boolean;
  /** A text put in slirp4netns's argv[0] so it can be found (the container directory). */
  readonly tag: string;
  /** How long to wait for its ready signal (default 10 s). */
  readonly timeoutMs?: number;
  /** The spawn addon (build/tsbuild-spawn.node) to start it without forking this process; node:child_process without. */
  readonly spawnAddon?: string;
}

/** PF_EXITING of a task's flags (/proc/PID/stat field 9): set when it enters do_exit, which never returns. */
const PF_EXITING = 0x4;

/**
 * True when the process `pid` has exited or is exiting: in the kernel's exit path (PF_EXITING) with
 * its memory released (an empty /proc/PID/cmdline, so leak checks by command line no longer see it)
 * it never runs its own code again (slirp4netns is single-threaded: its main thread exiting is the
 * process exiting). Closing its tap device after that waits for RCU grace periods (rcu_barrier in
 * netdev_run_todo, measured 15-25 ms), which the kernel finishes by itself: waiting for the exit
 * status instead would put that wait at the end of every run.
 */
export function hasEnded(pid: number): boolean {
  // Only "no such process" means gone: /proc hidden or unreadable (hidepid, EACCES) decides nothing (the exit event or the timeout does).
  const gone = (err: unknown): boolean => ['ENOENT', 'ESRCH'].includes((err as NodeJS.ErrnoException).code ?? '');
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (err) {
    return gone(err);
  }
  // Fields restart after the command name's last ')': state is field 3, flags field 9.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (rest[0] === 'Z' || rest[0] === 'X') return true;
  const flags = Number(rest[6]);
  if (!Number.isInteger(flags) || (flags & PF_EXITING) === 0) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`).length === 0;
  } catch (err) {
    return gone(err);
  }
}

function waitForExit(child: SpawnedChild, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Resolves true once process `pid` exited or is in the kernel's exit path ({@link hasEnded}, polled every
 * millisecond, ~20 us each: slirp4netns gets there 1-2 ms after its exit fd closes), or once `child` (our child
 * of that pid, when it is one) reports its exit; false after `ms`.
 */
function waitForEnd(pid: number | undefined, ms: number, child?: SpawnedChild): Promise<boolean> {
  if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) return Promise.resolve(true);
  if (pid === undefined || hasEnded(pid)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ended: boolean): void => {
      clearTimeout(timer);
      clearInterval(poll);
      child?.removeListener('exit', onExit);
      resolve(ended);
    };
    const onExit = (): void => done(true);
    const timer = setTimeout(() => done(false), ms);
    const poll = setInterval(() => {
      if (hasEnded(pid)) done(true);
    }, 1);
    child?.once('exit', onExit);
  });
}

/**
 * Starts slirp4netns (`binary`) for the network namespace of the container process `pid` and
 * resolves once `tap0` is configured (its ready fd). It ends when {@link SlirpProcess.stop} closes
 * its exit fd, or when this process dies (the kernel closes it). Throws RUN_NETWORK with
 * slirp4netns's message when it fails or is not ready in time (nothing is left running).
 */
export async function startSlirp(binary: string, pid: number, o: SlirpStartOptions): Promise<SlirpProcess> {
  const args = slirpArgs(pid, o.options, o.rootless);
  const argv0 = slirpArgv0(o.tag);
  // fd 3: ready (slirp4netns writes "1"); fd 4: exit (it ends when our end closes). Our ends are
  // close-on-exec, so no other child inherits them.
  // Through the spawn addon (no fork of this process) when there is one, else node:child_process.
  const child = spawnChild(o.spawnAddon, binary, args, ['ignore', 'ignore', 'pipe-out', 'pipe-out', 'pipe-in'], { argv0, env: {} });
  const stdio = child.stdio as unknown as (Readable | Writable | null)[];
  const ready = stdio[3] as Readable;
  const exitFd = stdio[4] as Writable;
  exitFd.on('error', () => undefined);
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => { stderr = (stderr + s).slice(-4000); });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      exitFd.destroy();
      ready.destroy();
      if (!(await waitForEnd(child.pid, 2000, child))) {
        child.kill('SIGKILL');
        await waitForExit(child, 2000);
      }
      // Ended but maybe not yet reaped: its handle and stderr pipe no longer hold this process's
      // event loop open (a `run --rm` exits while the kernel releases the tap device).
      child.unref();
      (child.stderr as { unref?: () => void } | null)?.unref?.();
    })();
    return stopping;
  };
  const failure = (what: string): TsbuildError => {
    const text = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('WARNING: Support for seccomp')).slice(-3).join('; ');
    return new TsbuildError('RUN_NETWORK', `cannot start slirp4netns for the container's network: ${what}${text === '' ? '' : `: ${text}`}`, {
      exitCode: 125, hint: 'use --network host, or --network none for no network',
    });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(failure(`not ready after ${o.timeoutMs ?? 10_000} ms`)), o.timeoutMs ?? 10_000);
      const done = (err?: Error): void => {
        clearTimeout(timer);
        ready.removeAllListeners('data');
        child.removeListener('exit', onExit);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onExit = (code: number | null, sig: NodeJS.Signals | null): void => {
        // Let the last stderr lines arrive before reporting them.
        setImmediate(() => done(failure(`it exited (${code === null ? String(sig) : `code ${code}`})`)));
      };
      child.once('error', (err) => done(failure(err.message)));
      child.once('exit', onExit);
      ready.on('data', (b: Buffer) => { if (b.includes('1')) done(); });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: child.pid ?? 0, stop };
}

/** The network of one container run: the sandbox's mode, the hooks that start slirp4netns, and its stop. */
export interface ContainerNetworkRun {
  readonly sandboxMode: NetworkMode;
  readonly hooks: RunHooks;
  /** Stops slirp4netns if it was started. Never throws. */
  stop(): Promise<void>;
}

/**
 * Prepares the network of a container run: with mode `slirp4netns` the returned hooks give the
 * container slirp's resolv.conf and start slirp4netns (`lookup`) for its namespaces before its
 * command runs. Throws RUN_NO_SLIRP when the mode needs slirp4netns and `lookup` has none.
 */
export function prepareContainerNetwork(network: ContainerNetwork, lookup: SlirpLookup | undefined, o: { readonly rootless: boolean; readonly tag: string; readonly ahead?: Promise<SlirpProcess | undefined>; readonly spawnAddon?: string }): ContainerNetworkRun {
  const sandboxMode = sandboxNetworkOf(network.mode);
  if (network.mode !== 'slirp4netns') return { sandboxMode, hooks: {}, stop: () => Promise.resolve() };
  const binary = lookup?.path;
  if (binary === undefined) throw noSlirp(lookup?.why ?? 'slirp4netns is not installed');
  const options = network.slirp ?? {};
  let slirp: SlirpProcess | undefined;
  return {
    sandboxMode,
    hooks: {
      resolvConf: (host) => slirpResolvConf(host, options),
      // Started ahead by the launcher for the namespace the container's process was born in (launcherSlirp), else now for its own.
      onCreated: async (pid) => { slirp = (await o.ahead) ?? await startSlirp(binary, pid, { options, rootless: o.rootless, tag: o.tag, ...(o.spawnAddon === undefined ? {} : { spawnAddon: o.spawnAddon }) }); },
    },
    stop: async () => {
      await slirp?.stop().catch(() => undefined);
      await (await o.ahead?.catch(() => undefined))?.stop().catch(() => undefined);
    },
  };
}

/** slirp4netns's argv[0]: its name and the container directory (`tag`), so leak checks find it as they find monitors. */
export function slirpArgv0(tag: string): string {
  return `slirp4netns[${tag}]`;
}

/**
 * The slirp4netns `pid` that a prestarted sandbox's launcher started for the container's network namespace
 * (SandboxPrestart.slirpPid): the launcher closes its exit fd once the container's process has ended, and its
 * end kills it. stop() resolves once it has ended ({@link hasEnded}, polled every millisecond), or after 2 s.
 */
export function launcherSlirp(pid: number): SlirpProcess {
  let stopping: Promise<void> | undefined;
  return { pid, stop: () => stopping ??= waitForEnd(pid, 2000).then(() => undefined) };
}
