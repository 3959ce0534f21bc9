/**
 * The container options of `docker run` that shape its environment besides the process: extra
 * /etc/hosts entries (`--add-host`), the resolver (`--dns*`), rlimits (`--ulimit`), supplementary
 * groups (`--group-add`), the /dev/shm size (`--shm-size`), `--security-opt` and `--privileged`. Pure data and
 * pure functions: the CLI parses the flags, create.ts records them, runner.ts applies them.
 */
import { isIP } from 'node:net';
import { TsbuildError } from '../core/index.js';
import { parseGroup, type Rlimit } from '../sandbox/index.js';

/** `--dns`, `--dns-search`, `--dns-option`: each list given replaces the base resolv.conf's lines of its kind. */
export interface DnsConfig {
  readonly servers?: readonly string[];
  readonly search?: readonly string[];
  readonly options?: readonly string[];
}

/** One `--ulimit NAME=SOFT[:HARD]` (docker's HostConfig.Ulimits entry). */
export interface Ulimit {
  readonly name: string;
  readonly soft: number;
  readonly hard: number;
}

/** The rlimit names `--ulimit` takes (docker's go-units list), lower case without RLIMIT_. */
export const ULIMIT_NAMES: readonly string[] = [
  'as', 'core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack',
];

function bad(flag: string, value: string, why: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', `invalid argument "${value}" for "${flag}" flag: ${why}`, { exitCode: 125 });
}

/** Parses `--ulimit NAME=SOFT[:HARD]` (HARD defaults to SOFT, as docker). Throws CLI_BAD_VALUE; -1/unlimited is CLI_NOT_SUPPORTED. */
export function parseUlimit(text: string): Ulimit {
  const eq = text.indexOf('=');
  if (eq <= 0) throw bad('--ulimit', text, 'expected NAME=SOFT[:HARD]');
  const name = text.slice(0, eq).trim().toLowerCase();
  if (!ULIMIT_NAMES.includes(name)) throw bad('--ulimit', text, `invalid ulimit type: ${name} (one of ${ULIMIT_NAMES.join(', ')})`);
  const parts = text.slice(eq + 1).split(':');
  if (parts.length > 2) throw bad('--ulimit', text, 'too many limit value arguments, expected SOFT[:HARD]');
  const values = parts.map((p) => {
    const v = p.trim();
    if (v === '-1' || v.toLowerCase() === 'unlimited') {
      throw new TsbuildError('CLI_NOT_SUPPORTED', `--ulimit ${name} unlimited (${text}) is not supported yet`, { hint: 'give a number', exitCode: 125 });
    }
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw bad('--ulimit', text, `invalid limit value "${p}": expected a non-negative integer`);
    return Number(v);
  });
  const soft = values[0] as number;
  const hard = values[1] ?? soft;
  if (soft > hard) throw bad('--ulimit', text, `ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`);
  return { name, soft, hard };
}

/** The rlimits of `--ulimit` values (later ones of the same name win). */
export function ulimitsToRlimits(ulimits: readonly Ulimit[]): Rlimit[] {
  const byType = new Map<string, Rlimit>();
  for (const u of ulimits) byType.set(`RLIMIT_${u.name.toUpperCase()}`, { type: `RLIMIT_${u.name.toUpperCase()}`, soft: u.soft, hard: u.hard });
  return [...byType.values()];
}

/** Parses `--add-host NAME:IP` (or NAME=IP) into `NAME:IP`. Throws CLI_BAD_VALUE; `host-gateway` is CLI_NOT_SUPPORTED. */
export function parseAddHost(text: string): string {
  // IPv6 addresses hold colons: the name ends at the first ':' or '='.
  const i = text.search(/[:=]/);
  if (i <= 0) throw bad('--add-host', text, 'expected NAME:IP');
  const name = text.slice(0, i).trim();
  let ip = text.slice(i + 1).trim();
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  if (ip === 'host-gateway') throw new TsbuildError('CLI_NOT_SUPPORTED', `--add-host ${name}:host-gateway is not supported yet`, { hint: 'give the host\'s IP address', exitCode: 125 });
  if (!/^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?$/.test(name)) throw bad('--add-host', text, `invalid host name "${name}"`);
  if (isIP(ip) === 0) throw bad('--add-host', text, `invalid IP address in add-host: "${ip}"`);
  return `${name}:${ip}`;
}

/** /etc/hosts with the `--add-host` entries (`NAME:IP`) appended, as docker writes them. */
export function appendExtraHosts(hostsText: string, extraHosts: readonly string[]): string {
  if (extraHosts.length === 0) return hostsText;
  const lines = extraHosts.map((h) => {
    const i = h.indexOf(':');
    return `${h.slice(i + 1)}\t${h.slice(0, i)}`;
  });
  return `${hostsText.replace(/\n?$/, '\n')}${lines.join('\n')}\n`;
}

/** Checks a `--dns` value (an IP address). Throws CLI_BAD_VALUE. */
export function parseDnsServer(text: string): string {
  if (isIP(text.trim()) === 0) throw bad('--dns', text, `${text} is not an ip address`);
  return text.trim();
}

/** Checks a `--dns-search` value (a domain, or `.` for none). Throws CLI_BAD_VALUE. */
export function parseDnsSearch(text: string): string {
  const d = text.trim();
  if (d !== '.' && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,253})$/.test(d.replace(/\.$/, ''))) throw bad('--dns-search', text, `${text} is not a valid domain`);
  return d;
}

/** Checks a `--dns-option` value (one resolv.conf option such as `ndots:2`). Throws CLI_BAD_VALUE. */
export function parseDnsOption(text: string): string {
  const o = text.trim();
  if (o === '' || /\s/.test(o)) throw bad('--dns-option', text, 'expected one resolver option such as ndots:2');
  return o;
}

/**
 * The container's resolv.conf: the base text (the host's, or slirp4netns's) with its nameserver,
 * search/domain and options lines replaced by those `dns` gives (search `.` = no search domains).
 */
export function applyDnsConfig(base: string, dns: DnsConfig | undefined): string {
  if (dns === undefined || (dns.servers === undefined && dns.search === undefined && dns.options === undefined)) return base;
  const kept: string[] = [];
  for (const raw of base.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (dns.servers !== undefined && /^nameserver\s/.test(line)) continue;
    if (dns.search !== undefined && /^(search|domain)\s/.test(line)) continue;
    if (dns.options !== undefined && /^options\s/.test(line)) continue;
    kept.push(line);
  }
  const search = (dns.search ?? []).filter((d) => d !== '.');
  const out = [
    ...(dns.search === undefined ? [] : search.length === 0 ? [] : [`search ${search.join(' ')}`]),
    ...(dns.servers ?? []).map((s) => `nameserver ${s}`),
    ...kept,
    ...(dns.options === undefined || dns.options.length === 0 ? [] : [`options ${dns.options.join(' ')}`]),
  ];
  return `${out.join('\n')}\n`;
}

/** Checks a `--group-add` value (a group name or a gid). Throws CLI_BAD_VALUE. */
export function parseGroupAdd(text: string): string {
  const g = text.trim();
  if (g === '' || /[\s:]/.test(g)) throw bad('--group-add', text, 'expected a group name or id');
  if (/^\d+$/.test(g) && Number(g) > 2 ** 31 - 1) throw bad('--group-add', text, 'group id out of range');
  return g;
}

/** The gids of `--group-add` values against the container's /etc/group text (undefined: none). Throws RUN_UNKNOWN_GROUP. */
export function resolveGroupAdd(groups: readonly string[], groupText: string | undefined): number[] {
  const table = groupText === undefined ? [] : parseGroup(groupText);
  return groups.map((g) => {
    if (/^\d+$/.test(g)) return Number(g);
    const entry = table.find((e) => e.name === g);
    if (entry === undefined) throw new TsbuildError('RUN_UNKNOWN_GROUP', `unable to find group ${g}: no matching entries in group file`, { exitCode: 125 });
    return entry.gid;
  });
}

/** The `--security-opt` values that ask for what every tsbuild container already is: no AppArmor profile, no SELinux label. */
const ALREADY_UNCONFINED = /^(apparmor[=:]unconfined|label[=:]disable)$/;

/**
 * Parses `--security-opt` values: `no-new-privileges[=|:true|false]`, `seccomp=unconfined` (no
 * seccomp filter), and `apparmor=unconfined`, `label=disable` (accepted as they are: tsbuild
 * installs neither). Throws CLI_BAD_VALUE / CLI_NOT_SUPPORTED (profiles, other options).
 */
export function parseSecurityOpts(values: readonly string[]): { noNewPrivileges?: boolean; seccompUnconfined?: true } {
  let nnp: boolean | undefined;
  let unconfined = false;
  for (const v of values) {
    if (/^seccomp[=:]unconfined$/.test(v.trim())) {
      unconfined = true;
      continue;
    }
    const m = /^no-new-privileges(?:[=:](.*))?$/.exec(v.trim());
    if (m !== null) {
      const val = m[1];
      if (val === undefined || val === '' || val === 'true') nnp = true;
      else if (val === 'false') nnp = false;
      else throw bad('--security-opt', v, `invalid no-new-privileges value "${val}": true or false`);
      continue;
    }
    if (ALREADY_UNCONFINED.test(v.trim())) continue;
    const key = /^([a-z-]+)[=:]/.exec(v.trim())?.[1];
    if (key !== undefined && ['seccomp', 'apparmor', 'label', 'systempaths', 'mask', 'unmask', 'writable-cgroups', 'proc-opts'].includes(key)) {
      throw new TsbuildError('CLI_NOT_SUPPORTED', `--security-opt ${key} is not supported yet`, { hint: 'tsbuild knows --security-opt no-new-privileges[=true|false], seccomp=unconfined, apparmor=unconfined and label=disable (tsbuild containers get docker\'s default seccomp policy, no AppArmor profile, no SELinux label)', exitCode: 125 });
    }
    throw bad('--security-opt', v, 'unknown option (tsbuild knows no-new-privileges[=true|false])');
  }
  return { ...(nnp === undefined ? {} : { noNewPrivileges: nnp }), ...(unconfined ? { seccompUnconfined: true as const } : {}) };
}

/** The options of this module as a container records them (absent/empty: the defaults); part of ContainerRecord. */
export interface ContainerRunOptions {
  /** `--add-host` entries `NAME:IP`, appended to the container's /etc/hosts (absent: none). */
  readonly extraHosts?: readonly string[];
  /** `--dns`, `--dns-search`, `--dns-option` over the base resolv.conf (absent: none given). */
  readonly dns?: DnsConfig;
  /** `--ulimit` values over the default rlimits (absent: none). */
  readonly ulimits?: readonly Ulimit[];
  /** `--group-add` as given (their gids are in `user.additionalGids`). */
  readonly groupAdd?: readonly string[];
  /** `--shm-size` in bytes (absent: 64 MiB). */
  readonly shmSize?: number;
  /** `--security-opt` as given, and the no_new_privs it sets (absent: on, tsbuild's default). */
  readonly securityOpt?: readonly string[];
  readonly noNewPrivileges?: boolean;
  /** `--security-opt seccomp=unconfined`: no seccomp filter (absent: docker's default policy). */
  readonly seccompUnconfined?: boolean;
  /** `--privileged`: every capability, no masked paths, /sys read-write, the host's devices (absent: false). */
  readonly privileged?: boolean;
}

/** The record fields of `o`, without empty lists and unset values (older records stay as they were). */
export function runOptionFields(o: ContainerRunOptions): ContainerRunOptions {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || (Array.isArray(v) && v.length === 0)) continue;
    if (k === 'dns' && Object.keys(v as object).length === 0) continue;
    out[k] = v;
  }
  return out as ContainerRunOptions;
}
