/**
 * Encodes a RunSpec into the launcher's input format (pure): a sequence of NUL-terminated
 * tokens, each record a tag followed by a fixed number of fields (launcher/launcher.c parses it).
 */
import { isAbsolute, join, relative } from 'node:path';
import { TsbuildError } from '../core/index.js';
import type { NamespaceType, OverlayRoot, RunSpec } from './spec.js';
import { ALL_CAPABILITIES, checkDevice, OVERLAY_OPTION_ALLOW_LIST } from './spec.js';

/** clone(2) flag of each namespace type. */
export const CLONE_FLAGS: Readonly<Record<NamespaceType, number>> = {
  mount: 0x00020000,
  uts: 0x04000000,
  ipc: 0x08000000,
  user: 0x10000000,
  pid: 0x20000000,
  network: 0x40000000,
  cgroup: 0x02000000,
};

/** Linux rlimit numbers (x86_64 and arm64 share them). */
export const RLIMIT_NUMBERS: Readonly<Record<string, number>> = {
  RLIMIT_CPU: 0, RLIMIT_FSIZE: 1, RLIMIT_DATA: 2, RLIMIT_STACK: 3, RLIMIT_CORE: 4, RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6, RLIMIT_NOFILE: 7, RLIMIT_MEMLOCK: 8, RLIMIT_AS: 9, RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11, RLIMIT_MSGQUEUE: 12, RLIMIT_NICE: 13, RLIMIT_RTPRIO: 14, RLIMIT_RTTIME: 15,
};

/** Where the launcher mounts the root and which extra facts it needs besides the spec. */
export interface LauncherTarget {
  /** Directory that becomes `/` (the rootfs dir itself, or an empty dir for an overlay). */
  readonly rootfs: string;
  /** Overlay lowerdirs to put above the spec's (the init layer), top-most first. */
  readonly extraLowerdirs?: readonly string[];
  /** Extra mounts appended after the spec's (the init files). */
  readonly extraMounts?: RunSpec['mounts'];
  /** A directory the launcher mounts a private tmpfs on (in the sandbox's mount namespace) and writes {@link files} to. */
  readonly filesDir?: string;
  /** Files (plain names, text) written to {@link filesDir} before any mount; the extra mounts may bind them. */
  readonly files?: readonly { readonly name: string; readonly content: string }[];
  /**
   * With a terminal: the caller holds our terminal in raw mode and restores it once it has written
   * all the output it forwards, so the launcher leaves the mode as it set it at the end (a restore
   * there would turn on output processing while forwarded output is still on its way: "\r\r\n").
   */
  readonly callerRestoresTerminal?: boolean;
  /** Files the sandbox's process writes "0" into first, to join its cgroup itself (Cgroup.selfJoinFiles: v1 `tasks`). At most 8. */
  readonly joinCgroups?: readonly string[];
}

/** SANDBOX_BAD_SPEC: a spec the launcher would refuse (run and join mode). */
export function badSpec(message: string): TsbuildError {
  return new TsbuildError('SANDBOX_BAD_SPEC', message, { exitCode: 125 });
}

/** The launcher's limit on `cgroup` records (launcher.c MAX_CGROUPS). */
const MAX_JOIN_CGROUPS = 8;

/** The `cgroup` records of a spec (files the process writes "0" into to join its cgroup itself), checked against the launcher's limit. */
export function joinCgroupFiles(files: readonly string[] | undefined): readonly string[] {
  if ((files ?? []).length > MAX_JOIN_CGROUPS) throw badSpec(`at most ${MAX_JOIN_CGROUPS} cgroup files to join`);
  return files ?? [];
}

/** Capability names -> the 64-bit mask the launcher keeps; throws SANDBOX_BAD_CAPABILITY. */
export function capabilityMask(caps: readonly string[]): bigint {
  let mask = 0n;
  for (const c of caps) {
    const bit = ALL_CAPABILITIES.indexOf(c);
    if (bit < 0) throw new TsbuildError('SANDBOX_BAD_CAPABILITY', `unknown capability "${c}"`, { exitCode: 125 });
    mask |= 1n << BigInt(bit);
  }
  return mask;
}

/** The clone(2) flags for the spec's namespaces. */
export function cloneFlags(spec: RunSpec): number {
  let flags = 0;
  for (const ns of spec.linux.namespaces) flags |= CLONE_FLAGS[ns.type];
  return flags >>> 0;
}

/** mount(2) copies at most one page of option data (4 KiB pages: 4095 bytes and the NUL). */
export const OVERLAY_DATA_LIMIT = 4095;

/** Where extra lowerdirs go around an {@link OverlayRoot}'s own, and whether the mount is in a user namespace. */
export interface OverlayDataOptions {
  /** Absolute lowerdirs above the root's (the launcher's init layer), top-most first. */
  readonly above?: readonly string[];
  /** Absolute lowerdirs below the root's, top-most first. */
  readonly below?: readonly string[];
  /** The mount happens in a user namespace: `userxattr` is added unless already given. */
  readonly userns: boolean;
}

/** The overlay mount data of a root and the directory to mount it from (absent: absolute paths only). */
export interface OverlayMountData {
  readonly data: string;
  readonly baseDir?: string;
}

/** SECURITY: a path inside the option string must not carry a separator that would start another option or lower. */
function checkOverlayPath(p: string, baseDir: string | undefined): string {
  if (p === '' || /[,:\\\n\0]/.test(p)) throw badSpec(`overlay path "${p}" must be free of ",", ":", "\\" and newlines`);
  if (!isAbsolute(p)) {
    if (baseDir === undefined) throw badSpec(`overlay path "${p}" must be absolute (or relative with a baseDir)`);
    return p;
  }
  if (baseDir === undefined) return p;
  // Below baseDir: the (shorter) relative form resolves to the same directory once the launcher is in baseDir.
  const rel = relative(baseDir, p);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) && rel.length < p.length ? rel : p;
}

/** The absolute directories an overlay root names (relative ones joined to its baseDir). */
export function overlayRootDirs(o: OverlayRoot): string[] {
  const abs = (p: string): string => (isAbsolute(p) || o.baseDir === undefined ? p : join(o.baseDir, p));
  return [...(o.baseDir === undefined ? [] : [o.baseDir]), ...o.lowerdirs.map(abs), abs(o.upperdir), abs(o.workdir)];
}

/**
 * The overlay mount data for `root` (pure). Throws SANDBOX_BAD_SPEC for paths the option syntax
 * cannot carry, relative paths without baseDir and options outside {@link OVERLAY_OPTION_ALLOW_LIST};
 * SANDBOX_OVERLAY_TOO_LONG when the data exceeds one page.
 */
export function overlayMountData(root: OverlayRoot, options: OverlayDataOptions): OverlayMountData {
  const base = root.baseDir;
  if (base !== undefined && (!isAbsolute(base) || /[\n\0]/.test(base))) throw badSpec(`overlay baseDir "${base}" must be an absolute path without newlines`);
  const lowers = [...(options.above ?? []).map((p) => checkOverlayPath(p, undefined)), ...root.lowerdirs.map((p) => checkOverlayPath(p, base)), ...(options.below ?? []).map((p) => checkOverlayPath(p, undefined))];
  if (root.lowerdirs.length === 0) throw badSpec('an overlay root needs at least one lowerdir');
  const extra: string[] = [];
  for (const o of root.options ?? []) {
    // SECURITY: exact allow-list matches only, so no option can add or override a path (lowerdir=, upperdir=...).
    if (!OVERLAY_OPTION_ALLOW_LIST.includes(o)) throw badSpec(`overlay option "${o}" is not allowed (allowed: ${OVERLAY_OPTION_ALLOW_LIST.join(', ')})`);
    if (!extra.includes(o)) extra.push(o);
  }
  if (options.userns && !extra.includes('userxattr')) extra.push('userxattr');
  const data = [`lowerdir=${lowers.join(':')}`, `upperdir=${checkOverlayPath(root.upperdir, base)}`, `workdir=${checkOverlayPath(root.workdir, base)}`, ...extra].join(',');
  if (Buffer.byteLength(data) > OVERLAY_DATA_LIMIT) {
    throw new TsbuildError('SANDBOX_OVERLAY_TOO_LONG', `the overlay mount options of ${lowers.length} lowerdirs take ${Buffer.byteLength(data)} bytes, more than mount(2)'s one page (${OVERLAY_DATA_LIMIT})`, {
      hint: base === undefined ? 'give the overlay root a baseDir and lowerdirs relative to it (the snapshotter\'s relativeLowerdirs)' : 'the image has too many layers for one overlay mount; squash some',
      exitCode: 125,
    });
  }
  return base === undefined ? { data } : { data, baseDir: base };
}

/** The overlay mount data for absolute paths (throws SANDBOX_BAD_SPEC for paths the option syntax cannot carry). */
export function overlayOptions(lowerdirs: readonly string[], upperdir: string, workdir: string, userxattr: boolean): string {
  return overlayMountData({ lowerdirs, upperdir, workdir }, { userns: userxattr }).data;
}

/** Encodes the spec for the launcher (pure). Throws SANDBOX_BAD_SPEC on unrepresentable input. */
export function encodeLauncherSpec(spec: RunSpec, target: LauncherTarget): Buffer {
  const tokens: string[] = [];
  const add = (...t: (string | number | bigint)[]): void => {
    for (const v of t) {
      const s = String(v);
      if (s.includes('\0')) throw badSpec(`spec value contains a NUL byte: ${JSON.stringify(s.slice(0, 60))}`);
      tokens.push(s);
    }
  };
  const userns = spec.linux.namespaces.some((n) => n.type === 'user');
  add('flags', cloneFlags(spec));
  add('rootfs', target.rootfs);
  if (spec.root.overlay !== undefined) {
    const m = overlayMountData(spec.root.overlay, { above: target.extraLowerdirs ?? [], userns });
    add('overlay', m.data);
    if (m.baseDir !== undefined) add('overlaydir', m.baseDir);
  }
  if (target.filesDir !== undefined) {
    if (!spec.linux.namespaces.some((n) => n.type === 'mount')) throw badSpec('generated files need a mount namespace');
    if ((target.files ?? []).length > 16) throw badSpec('at most 16 generated files');
    add('filesdir', target.filesDir);
    for (const f of target.files ?? []) {
      if (!/^[A-Za-z0-9._-]+$/.test(f.name) || f.name === '.' || f.name === '..') throw badSpec(`invalid generated file name "${f.name}"`);
      add('file', f.name, f.content);
    }
  }
  for (const f of joinCgroupFiles(target.joinCgroups)) add('cgroup', f);
  add('rootro', spec.root.readonly === true ? 1 : 0);
  add('userns', userns ? 1 : 0);
  add('lo', spec.linux.namespaces.some((n) => n.type === 'network') ? 1 : 0);
  add('nnp', spec.process.noNewPrivileges ? 1 : 0);
  add('terminal', spec.process.terminal === true ? 1 : 0);
  if (spec.process.terminal === true && target.callerRestoresTerminal === true) add('keepraw', 1);
  if (spec.hostname !== undefined) add('hostname', spec.hostname);
  add('cwd', spec.process.cwd);
  for (const m of [...spec.mounts, ...(target.extraMounts ?? [])]) {
    if (!m.destination.startsWith('/')) throw badSpec(`mount destination "${m.destination}" must be absolute`);
    if (m.options.some((o) => o.includes(','))) throw badSpec(`mount option of ${m.destination} contains ","`);
    add('mount', m.destination, m.type, m.source, m.options.join(','));
  }
  for (const d of spec.linux.devices ?? []) {
    checkDevice(d);
    add('device', d.path, d.type, d.major, d.minor, d.fileMode, d.uid, d.gid);
  }
  for (const p of spec.linux.maskedPaths) add('mask', p);
  for (const p of spec.linux.readonlyPaths) add('ropath', p);
  for (const r of spec.process.rlimits) {
    const n = RLIMIT_NUMBERS[r.type];
    if (n === undefined) throw badSpec(`unknown rlimit "${r.type}"`);
    if (!Number.isSafeInteger(r.soft) || !Number.isSafeInteger(r.hard) || r.soft < 0 || r.soft > r.hard) {
      throw badSpec(`invalid ${r.type} soft ${r.soft} hard ${r.hard}`);
    }
    add('rlimit', n, r.soft, r.hard);
  }
  add('caps', capabilityMask(spec.process.capabilities));
  if (spec.process.capabilitiesHeld === true) add('capsheld', 1);
  // Without it the launcher mounts everything but devpts nodev (tsbuild sets up no device cgroup).
  if (spec.linux.allowAllDevices === true) add('alldev', 1);
  if (spec.linux.seccomp !== 'unconfined') add('seccomp', 'default');
  const u = spec.process.user;
  for (const id of [u.uid, u.gid, ...(u.additionalGids ?? [])]) {
    if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) throw badSpec(`invalid user or group id ${id}`);
  }
  add('user', u.uid, u.gid, (u.additionalGids ?? []).join(','));
  for (const e of spec.process.env) add('env', e);
  if (spec.process.args.length === 0) throw badSpec('no command to run');
  for (const a of spec.process.args) add('arg', a);
  return Buffer.from(tokens.map((t) => `${t}\0`).join(''), 'utf8');
}
