/**
 * RunSpec: what a sandboxed process gets, shaped like the OCI runtime spec `config.json`
 * (https://github.com/opencontainers/runtime-spec/blob/main/config.md), plus Docker's defaults.
 * Pure data and pure functions: no I/O. The built-in launcher and external OCI runtimes
 * (`--runtime=runc`) consume the same RunSpec, so each is an oracle for the other.
 */
import { TsbuildError } from '../core/index.js';
import { ociSeccomp } from './seccomp-profile.js';

/** A POSIX rlimit as in OCI `process.rlimits[]` (type like `RLIMIT_NOFILE`). */
export interface Rlimit {
  readonly type: string;
  readonly soft: number;
  readonly hard: number;
}

/** The user a process runs as (numeric, already resolved against the container's /etc files). */
export interface ProcessUser {
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids?: readonly number[];
}

/** OCI `process`: what to exec and with which credentials and limits. */
export interface ProcessSpec {
  /** argv; `args[0]` is looked up in the container's PATH when it has no slash. */
  readonly args: readonly string[];
  /** `KEY=VALUE` strings, as in OCI. */
  readonly env: readonly string[];
  /** Absolute working directory inside the container. */
  readonly cwd: string;
  readonly user: ProcessUser;
  readonly terminal?: boolean;
  /** Capability names (`CAP_CHOWN` ...): the bounding set; also effective/permitted for uid 0. */
  readonly capabilities: readonly string[];
  /** Keep only those of `capabilities` the launcher itself holds (privileged: "all" on a host whose root lacks some). */
  readonly capabilitiesHeld?: boolean;
  readonly rlimits: readonly Rlimit[];
  readonly noNewPrivileges: boolean;
}

/** An overlay root: mounted inside the sandbox's own mount namespace. */
export interface OverlayRoot {
  /** Lower layers, top-most first (as in the overlay `lowerdir=` option); relative ones need `baseDir`. */
  readonly lowerdirs: readonly string[];
  /** Absolute, or relative to `baseDir`. */
  readonly upperdir: string;
  /** Absolute, or relative to `baseDir`. */
  readonly workdir: string;
  /**
   * Absolute directory the overlay is mounted from (the launcher chdirs there for the mount), so
   * that relative paths like the snapshotter's `l/<short>` links keep a long chain within mount(2)'s
   * one page of option data.
   */
  readonly baseDir?: string;
  /** Extra overlay mount options, only from {@link OVERLAY_OPTION_ALLOW_LIST} (e.g. the snapshotter's probed set). */
  readonly options?: readonly string[];
}

/** The overlay mount options an {@link OverlayRoot} may carry (exact strings). */
export const OVERLAY_OPTION_ALLOW_LIST: readonly string[] = [
  'redirect_dir=off', 'redirect_dir=nofollow', 'metacopy=off', 'index=off', 'nfs_export=off',
  'userxattr', 'xino=off', 'xino=auto', 'volatile',
];

/** OCI `root`, extended with an overlay description (exactly one of `path` and `overlay`). */
export type RootSpec =
  | { readonly path: string; readonly overlay?: undefined; readonly readonly?: boolean }
  | { readonly path?: undefined; readonly overlay: OverlayRoot; readonly readonly?: boolean };

/** OCI `mounts[]` entry (type `bind`, `tmpfs`, `proc`, `devpts`, `mqueue`, `sysfs`...). */
export interface MountSpec {
  readonly destination: string;
  readonly type: string;
  readonly source: string;
  readonly options: readonly string[];
}

/** OCI namespace types. */
export type NamespaceType = 'pid' | 'network' | 'ipc' | 'uts' | 'mount' | 'user' | 'cgroup';

/** OCI `linux.namespaces[]` entry (only new namespaces; joining by `path` is not used). */
export interface NamespaceSpec {
  readonly type: NamespaceType;
}

/** OCI `linux.uidMappings[]`/`gidMappings[]` entry. */
export interface IdMapping {
  readonly containerID: number;
  readonly hostID: number;
  readonly size: number;
}

/** OCI `linux.resources` (the subset tsbuild applies), with OCI field names. */
export interface ResourcesSpec {
  readonly memory?: {
    readonly limit?: number;
    readonly reservation?: number;
    /** memory+swap, as in OCI (-1 = unlimited swap). */
    readonly swap?: number;
    readonly disableOOMKiller?: boolean;
  };
  readonly cpu?: {
    readonly shares?: number;
    readonly quota?: number;
    readonly period?: number;
    /** cpuset, e.g. `0-1`. */
    readonly cpus?: string;
  };
  readonly pids?: { readonly limit: number };
}

/** OCI `linux.devices[]` entry: a device node made in the container's /dev (a host device for `--privileged`). */
export interface DeviceSpec {
  /** Absolute path below /dev. */
  readonly path: string;
  /** `c` (character) or `b` (block). */
  readonly type: 'c' | 'b';
  readonly major: number;
  readonly minor: number;
  /** Permission bits of the node. */
  readonly fileMode: number;
  readonly uid: number;
  readonly gid: number;
}

/** OCI `linux`. */
export interface LinuxSpec {
  readonly namespaces: readonly NamespaceSpec[];
  readonly uidMappings?: readonly IdMapping[];
  readonly gidMappings?: readonly IdMapping[];
  readonly maskedPaths: readonly string[];
  readonly readonlyPaths: readonly string[];
  readonly resources?: ResourcesSpec;
  /** Extra device nodes (as root: made with mknod; in a user namespace: bind mounts of the same host path, skipped where that fails, as podman). */
  readonly devices?: readonly DeviceSpec[];
  /** The device cgroup allows every device (OCI `resources.devices: [{allow: true, access: rwm}]`); absent: docker's default rules for an OCI runtime. */
  readonly allowAllDevices?: boolean;
  /**
   * The seccomp filter: `default` (also when absent) refuses what docker's default profile
   * refuses (src/sandbox/launcher/seccomp-deny.h, seccomp-profile.ts); `unconfined`: none.
   */
  readonly seccomp?: SeccompMode;
}

/** `default`: docker's default seccomp policy; `unconfined`: no filter (`--security-opt seccomp=unconfined`, privileged). */
export type SeccompMode = 'default' | 'unconfined';

/** Everything needed to run one sandboxed process. Immutable plain data, JSON-serialisable. */
export interface RunSpec {
  readonly process: ProcessSpec;
  readonly root: RootSpec;
  readonly hostname?: string;
  readonly mounts: readonly MountSpec[];
  readonly linux: LinuxSpec;
}

/** Docker's default capability set (moby `oci/caps/defaults.go`). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Every capability name the kernel knows, in bit order (index = capability number). */
export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER',
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** Docker's default masked paths (bind of /dev/null on files, read-only tmpfs on dirs). */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
  '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** Docker's default read-only paths. */
export const DEFAULT_READONLY_PATHS: readonly string[] = [
  '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger',
];

/** Docker's default rlimits: nofile 1048576 soft and hard. */
export const DEFAULT_RLIMITS: readonly Rlimit[] = [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }];

/** `own` over {@link DEFAULT_RLIMITS}: the defaults of the types `own` does not set, then `own`. */
export function withDefaultRlimits(own: readonly Rlimit[] | undefined): readonly Rlimit[] {
  if (own === undefined) return DEFAULT_RLIMITS;
  return [...DEFAULT_RLIMITS.filter((d) => !own.some((r) => r.type === d.type)), ...own];
}

/** The PATH Docker sets when the image has none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's default mounts: /proc, /dev (+pts, shm, mqueue) and a read-only /sys. */
export const DEFAULT_MOUNTS: readonly MountSpec[] = [
  { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=67108864'] },
];

/** Network modes: `none` = a new namespace with only `lo` up; `host` = the host's. */
export type NetworkMode = 'none' | 'host';

/** Inputs of {@link createRunSpec}; everything but `args` and `root` has a Docker default. */
export interface RunSpecOptions {
  readonly args: readonly string[];
  readonly root: RootSpec;
  readonly env?: readonly string[];
  readonly cwd?: string;
  readonly user?: ProcessUser;
  readonly hostname?: string;
  readonly network?: NetworkMode;
  /** Use a user namespace (always when rootless). */
  readonly userNamespace?: boolean;
  readonly capAdd?: readonly string[];
  readonly capDrop?: readonly string[];
  readonly mounts?: readonly MountSpec[];
  readonly resources?: ResourcesSpec;
  readonly terminal?: boolean;
  /** Rlimits over Docker's defaults (same type: replaced). */
  readonly rlimits?: readonly Rlimit[];
  /** no_new_privs (default true). */
  readonly noNewPrivileges?: boolean;
  /** Size in bytes of the /dev/shm tmpfs (default 64 MiB, as Docker). */
  readonly shmSize?: number;
  /**
   * Docker's `--privileged`: every capability (`capAdd`/`capDrop` ignored, as docker), no masked or
   * read-only paths, /sys read-write, `devices` in /dev, every device allowed, and no_new_privs off
   * unless `noNewPrivileges` says otherwise.
   */
  readonly privileged?: boolean;
  /** Device nodes to add (with `privileged`: the host's, from `listHostDevices`). */
  readonly devices?: readonly DeviceSpec[];
  /** The seccomp filter (default `default`; privileged sandboxes are always `unconfined`, as docker). */
  readonly seccomp?: SeccompMode;
}

/** Normalises `chown`, `CAP_CHOWN` or `ALL` to `CAP_CHOWN`/`ALL`; throws SANDBOX_BAD_CAPABILITY. */
export function normalizeCapability(name: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === 'ALL') return 'ALL';
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!ALL_CAPABILITIES.includes(full)) {
    throw new TsbuildError('SANDBOX_BAD_CAPABILITY', `unknown capability "${name}"`, { hint: 'e.g. NET_ADMIN or CAP_SYS_PTRACE', exitCode: 125 });
  }
  return full;
}

/** Docker's default set with `capAdd`/`capDrop` applied (`ALL` allowed in either). */
export function computeCapabilities(capAdd: readonly string[] = [], capDrop: readonly string[] = []): string[] {
  const add = capAdd.map(normalizeCapability);
  const drop = capDrop.map(normalizeCapability);
  let caps = new Set(DEFAULT_CAPABILITIES);
  if (add.includes('ALL')) caps = new Set(ALL_CAPABILITIES);
  for (const c of add) if (c !== 'ALL') caps.add(c);
  if (drop.includes('ALL')) caps = new Set(add.filter((c) => c !== 'ALL'));
  for (const c of drop) if (c !== 'ALL') caps.delete(c);
  return ALL_CAPABILITIES.filter((c) => caps.has(c));
}

/** One of {@link DEFAULT_MOUNTS} with the `--shm-size` and, when privileged, /sys read-write (as docker). */
function defaultMount(m: MountSpec, shmSize: number | undefined, privileged: boolean): MountSpec {
  if (m.destination === '/dev/shm' && shmSize !== undefined) return { ...m, options: [...m.options.filter((o) => !o.startsWith('size=')), `size=${shmSize}`] };
  if (m.destination === '/sys' && privileged) return { ...m, options: m.options.filter((o) => o !== 'ro') };
  return m;
}

/** SECURITY: a device node goes below /dev only (no `..`), with a type and numbers the kernel takes. Throws SANDBOX_BAD_SPEC. */
export function checkDevice(d: DeviceSpec): void {
  const ok = /^\/dev\/[^\0]+$/.test(d.path) && !d.path.split('/').some((p) => p === '..' || p === '.') && !d.path.endsWith('/')
    && (d.type === 'c' || d.type === 'b')
    && [d.major, d.minor, d.fileMode, d.uid, d.gid].every((n) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff) && d.fileMode <= 0o7777;
  if (!ok) throw new TsbuildError('SANDBOX_BAD_SPEC', `invalid device ${JSON.stringify(d)}: a c or b node below /dev`, { exitCode: 125 });
}

/** Builds a RunSpec with Docker's defaults; validates paths (SANDBOX_BAD_SPEC). */
export function createRunSpec(options: RunSpecOptions): RunSpec {
  if (options.args.length === 0) throw new TsbuildError('SANDBOX_BAD_SPEC', 'no command to run', { exitCode: 125 });
  const cwd = options.cwd ?? '/';
  if (!cwd.startsWith('/')) throw new TsbuildError('SANDBOX_BAD_SPEC', `working directory "${cwd}" must be absolute`, { exitCode: 125 });
  const env = [...(options.env ?? [])];
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift(`PATH=${DEFAULT_PATH}`);
  if (options.hostname !== undefined && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(options.hostname)) {
    throw new TsbuildError('SANDBOX_BAD_SPEC', `invalid hostname "${options.hostname}"`, { exitCode: 125 });
  }
  for (const m of options.mounts ?? []) {
    if (!m.destination.startsWith('/')) throw new TsbuildError('SANDBOX_BAD_SPEC', `mount destination "${m.destination}" must be absolute`, { exitCode: 125 });
  }
  for (const d of options.devices ?? []) checkDevice(d);
  const privileged = options.privileged === true;
  const namespaces: NamespaceSpec[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }];
  if ((options.network ?? 'none') === 'none') namespaces.splice(1, 0, { type: 'network' });
  if (options.userNamespace === true) namespaces.push({ type: 'user' });
  const spec: RunSpec = {
    process: {
      args: [...options.args],
      env,
      cwd,
      user: options.user ?? { uid: 0, gid: 0, additionalGids: [] },
      terminal: options.terminal ?? false,
      capabilities: privileged ? [...ALL_CAPABILITIES] : computeCapabilities(options.capAdd, options.capDrop),
      ...(privileged ? { capabilitiesHeld: true } : {}),
      rlimits: withDefaultRlimits(options.rlimits),
      noNewPrivileges: options.noNewPrivileges ?? !privileged,
    },
    root: options.root,
    mounts: [...DEFAULT_MOUNTS.map((m) => defaultMount(m, options.shmSize, privileged)), ...(options.mounts ?? [])],
    linux: {
      namespaces,
      maskedPaths: privileged ? [] : DEFAULT_MASKED_PATHS,
      readonlyPaths: privileged ? [] : DEFAULT_READONLY_PATHS,
      ...(options.resources === undefined ? {} : { resources: options.resources }),
      ...(options.devices === undefined || options.devices.length === 0 ? {} : { devices: options.devices }),
      ...(privileged ? { allowAllDevices: true } : {}),
      seccomp: privileged ? 'unconfined' : options.seccomp ?? 'default',
    },
  };
  return options.hostname === undefined ? spec : { ...spec, hostname: options.hostname };
}

/** True when the spec asks for a new namespace of `type`. */
export function hasNamespace(spec: RunSpec, type: NamespaceType): boolean {
  return spec.linux.namespaces.some((n) => n.type === type);
}

/** Options of {@link toOciConfig}. */
export interface OciConfigOptions {
  /** The root path to write (required for an overlay root, which the caller mounts first). */
  readonly rootPath?: string;
  /** `linux.cgroupsPath` for the runtime. */
  readonly cgroupsPath?: string;
}

/**
 * Converts a RunSpec to an OCI runtime-spec `config.json` object (pure). Capabilities: the
 * set is the bounding set; effective/permitted too for uid 0, empty otherwise (as Docker).
 * Throws SANDBOX_BAD_SPEC for an overlay root without `rootPath`.
 */
export function toOciConfig(spec: RunSpec, options: OciConfigOptions = {}): Record<string, unknown> {
  const rootPath = options.rootPath ?? spec.root.path;
  if (rootPath === undefined) {
    throw new TsbuildError('SANDBOX_BAD_SPEC', 'an overlay root needs a mounted rootPath for an OCI runtime', { exitCode: 125 });
  }
  const p = spec.process;
  const caps = [...p.capabilities];
  const eff = p.user.uid === 0 ? caps : [];
  const linux: Record<string, unknown> = {
    namespaces: spec.linux.namespaces.map((n) => ({ type: n.type })),
    maskedPaths: [...spec.linux.maskedPaths],
    readonlyPaths: [...spec.linux.readonlyPaths],
    resources: { devices: [{ allow: spec.linux.allowAllDevices === true, access: 'rwm' }], ...(spec.linux.resources ?? {}) },
  };
  if (spec.linux.devices !== undefined) linux.devices = spec.linux.devices.map((d) => ({ ...d }));
  if (spec.linux.seccomp !== 'unconfined') linux.seccomp = ociSeccomp(caps);
  if (spec.linux.uidMappings !== undefined) linux.uidMappings = spec.linux.uidMappings.map((m) => ({ ...m }));
  if (spec.linux.gidMappings !== undefined) linux.gidMappings = spec.linux.gidMappings.map((m) => ({ ...m }));
  if (options.cgroupsPath !== undefined) linux.cgroupsPath = options.cgroupsPath;
  const config: Record<string, unknown> = {
    ociVersion: '1.0.2',
    process: {
      terminal: p.terminal ?? false,
      user: { uid: p.user.uid, gid: p.user.gid, additionalGids: [...(p.user.additionalGids ?? [])] },
      args: [...p.args],
      env: [...p.env],
      cwd: p.cwd,
      capabilities: { bounding: caps, effective: eff, permitted: eff },
      rlimits: p.rlimits.map((r) => ({ ...r })),
      noNewPrivileges: p.noNewPrivileges,
    },
    root: { path: rootPath, readonly: spec.root.readonly ?? false },
    mounts: spec.mounts.map((m) => ({ destination: m.destination, type: m.type, source: m.source, options: [...m.options] })),
    linux,
  };
  if (spec.hostname !== undefined) config.hostname = spec.hostname;
  return config;
}
