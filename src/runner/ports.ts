import { isIP } from 'node:net';
import { TsbuildError } from '../core/index.js';

/** The transport of a published port (`sctp` is rejected: not supported yet). */
export type PortProtocol = 'tcp' | 'udp';

/** One `-p` binding as requested: a container port published on a host address and port. */
export interface PortBinding {
  readonly containerPort: number;
  readonly protocol: PortProtocol;
  /** The host address as given; '' means every IPv4 address (0.0.0.0), as docker's default. */
  readonly hostIp: string;
  /** The host port; 0 means any free port (`-p 80`, `-P`). */
  readonly hostPort: number;
  /** With `-p 8000-8010:80`: the last host port to try after hostPort (inclusive). */
  readonly hostPortEnd?: number;
}

/** A binding as it is live: the address and port the owner actually listens on. */
export interface ActivePort {
  readonly containerPort: number;
  readonly protocol: PortProtocol;
  readonly hostIp: string;
  readonly hostPort: number;
}

function badSpec(spec: string, why: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', `invalid port spec "${spec}": ${why}`, {
    hint: 'expected -p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], e.g. -p 8080:80, -p 127.0.0.1:8080:80/tcp, -p 8000-8001:80-81',
    exitCode: 125,
  });
}

/** Parses `N` or `N-M` (1..65535, or 0..65535 with `allowZero`) into [first, last]. */
function parseRange(text: string, spec: string, what: string, allowZero: boolean): [number, number] {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (m === null) throw badSpec(spec, `${what} "${text}" is not a port number or range`);
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  const min = allowZero ? 0 : 1;
  if (first < min || first > 65535 || last < min || last > 65535) throw badSpec(spec, `${what} "${text}" is out of range (1-65535)`);
  if (last < first) throw badSpec(spec, `${what} range "${text}" ends before it starts`);
  return [first, last];
}

/** Splits `[IP:][HOST:]CTR` honouring `[v6]` brackets; returns [ip, host, ctr]. */
function splitSpec(body: string, spec: string): [string, string, string] {
  let ip = '';
  let rest = body;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close === -1 || rest[close + 1] !== ':') throw badSpec(spec, 'an IPv6 address in brackets must be followed by ":"');
    ip = rest.slice(1, close);
    rest = rest.slice(close + 2);
    const parts = rest.split(':');
    if (parts.length !== 2) throw badSpec(spec, 'expected [IP]:HOSTPORT:CONTAINERPORT');
    return [ip, parts[0] as string, parts[1] as string];
  }
  const parts = rest.split(':');
  if (parts.length === 1) return ['', '', parts[0] as string];
  if (parts.length === 2) return ['', parts[0] as string, parts[1] as string];
  if (parts.length === 3) return [parts[0] as string, parts[1] as string, parts[2] as string];
  throw badSpec(spec, 'too many ":" (put an IPv6 address in brackets: [::1]:8080:80)');
}

/**
 * Parses one `-p` value as docker does: `CTR`, `HOST:CTR`, `IP:HOST:CTR`, `IP::CTR`, with `/tcp`
 * or `/udp` and ranges (`8000-8001:80-81` maps one to one; `8000-8010:80` takes the first free
 * host port of the range; `80-81` publishes both on free ports). Throws CLI_BAD_VALUE quoting the
 * spec; CLI_NOT_SUPPORTED for sctp.
 */
export function parsePublishSpec(spec: string): PortBinding[] {
  const slash = spec.lastIndexOf('/');
  const body = slash === -1 ? spec : spec.slice(0, slash);
  const proto = slash === -1 ? 'tcp' : spec.slice(slash + 1).toLowerCase();
  if (proto === 'sctp') throw new TsbuildError('CLI_NOT_SUPPORTED', `publishing sctp ports ("${spec}") is not supported yet`, { exitCode: 125 });
  if (proto !== 'tcp' && proto !== 'udp') throw badSpec(spec, `unknown protocol "${proto}" (tcp or udp)`);
  const [ip, host, ctr] = splitSpec(body, spec);
  if (ip !== '' && isIP(ip) === 0) throw badSpec(spec, `"${ip}" is not an IP address`);
  if (ctr === '') throw badSpec(spec, 'no container port');
  const [c1, c2] = parseRange(ctr, spec, 'container port', false);
  const protocol: PortProtocol = proto;
  if (host === '') {
    const out: PortBinding[] = [];
    for (let p = c1; p <= c2; p++) out.push({ containerPort: p, protocol, hostIp: ip, hostPort: 0 });
    return out;
  }
  const [h1, h2] = parseRange(host, spec, 'host port', true);
  if (c1 === c2) {
    return [{ containerPort: c1, protocol, hostIp: ip, hostPort: h1, ...(h2 === h1 ? {} : { hostPortEnd: h2 }) }];
  }
  if (h2 - h1 !== c2 - c1) throw badSpec(spec, `the host range ${host} and the container range ${ctr} differ in length`);
  if (h1 === 0) throw badSpec(spec, 'a host range cannot start at 0');
  const out: PortBinding[] = [];
  for (let i = 0; i <= c2 - c1; i++) out.push({ containerPort: c1 + i, protocol, hostIp: ip, hostPort: h1 + i });
  return out;
}

/** The docker key of a container port: `80/tcp`. */
export function portKey(port: number, protocol: PortProtocol): string {
  return `${port}/${protocol}`;
}

/**
 * Parses an image's ExposedPorts keys (`80/tcp`, `53/udp`, `8000-8001`, no protocol = tcp) into
 * sorted unique `PORT/PROTO` keys; keys it cannot read (sctp, garbage) are skipped.
 */
export function parseExposedPorts(keys: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const k of keys) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp))?$/i.exec(k.trim());
    if (m === null) continue;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (first < 1 || last > 65535 || last < first || last - first > 65535) continue;
    const proto = (m[3]?.toLowerCase() ?? 'tcp') as PortProtocol;
    for (let p = first; p <= last; p++) out.add(portKey(p, proto));
  }
  return sortPortKeys(out);
}

/** Sorts `PORT/PROTO` keys by port, then protocol. */
export function sortPortKeys(keys: Iterable<string>): string[] {
  return [...keys].sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10) || a.localeCompare(b));
}

/** Splits a `PORT/PROTO` key. */
export function parsePortKey(key: string): { port: number; protocol: PortProtocol } {
  const [p, proto] = key.split('/');
  return { port: Number(p), protocol: proto === 'udp' ? 'udp' : 'tcp' };
}

/**
 * The bindings a container publishes when it starts: its `-p` bindings, plus with `-P` every
 * exposed port not bound by `-p` on a free host port of every IPv4 address.
 */
export function bindingsToPublish(explicit: readonly PortBinding[], publishAll: boolean, exposed: readonly string[]): PortBinding[] {
  const out = [...explicit];
  if (!publishAll) return out;
  const bound = new Set(explicit.map((b) => portKey(b.containerPort, b.protocol)));
  for (const key of exposed) {
    if (bound.has(key)) continue;
    const { port, protocol } = parsePortKey(key);
    out.push({ containerPort: port, protocol, hostIp: '', hostPort: 0 });
  }
  return out;
}

/** The host address a binding listens on: its IP, or 0.0.0.0. */
export function hostAddressOf(b: Pick<PortBinding, 'hostIp'>): string {
  return b.hostIp === '' ? '0.0.0.0' : b.hostIp;
}

/** `0.0.0.0:8081`, `[::1]:8081`. */
export function formatHostAddress(ip: string, port: number | string): string {
  return `${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
}

/** How a binding reads in messages: `0.0.0.0:8081->80/tcp` (`:0` for any port, `8000-8010` for a range). */
export function describeBinding(b: PortBinding): string {
  const host = b.hostPortEnd === undefined ? String(b.hostPort) : `${b.hostPort}-${b.hostPortEnd}`;
  return `${formatHostAddress(hostAddressOf(b), host)}->${portKey(b.containerPort, b.protocol)}`;
}

/**
 * Docker's PORTS column: live bindings as `0.0.0.0:8081->80/tcp`, consecutive ports of the same
 * address and protocol collapsed (`0.0.0.0:8000-8001->80-81/tcp`), then exposed ports that are
 * not published as `80/tcp`; joined with ", ".
 */
export function formatPortsColumn(active: readonly ActivePort[], exposed: readonly string[]): string {
  const sorted = [...active].sort((a, b) => a.protocol.localeCompare(b.protocol) || a.hostIp.localeCompare(b.hostIp) || a.containerPort - b.containerPort || a.hostPort - b.hostPort);
  const groups: { ip: string; proto: PortProtocol; h1: number; h2: number; c1: number; c2: number }[] = [];
  for (const p of sorted) {
    const g = groups.at(-1);
    if (g !== undefined && g.ip === p.hostIp && g.proto === p.protocol && p.containerPort === g.c2 + 1 && p.hostPort === g.h2 + 1) {
      g.c2 = p.containerPort;
      g.h2 = p.hostPort;
    } else {
      groups.push({ ip: p.hostIp, proto: p.protocol, h1: p.hostPort, h2: p.hostPort, c1: p.containerPort, c2: p.containerPort });
    }
  }
  const range = (a: number, b: number): string => (a === b ? String(a) : `${a}-${b}`);
  const published = groups
    .sort((a, b) => a.c1 - b.c1 || a.proto.localeCompare(b.proto))
    .map((g) => `${formatHostAddress(g.ip, range(g.h1, g.h2))}->${range(g.c1, g.c2)}/${g.proto}`);
  const live = new Set(active.map((p) => portKey(p.containerPort, p.protocol)));
  const unpublished = sortPortKeys(exposed.filter((k) => !live.has(k)));
  return [...published, ...unpublished].join(', ');
}

/** The port fields of a new container record from the image's ExposedPorts, `-p` and `-P`. */
export function containerPortFields(imageExposed: Readonly<Record<string, unknown>> | undefined, ports: readonly PortBinding[], publishAll: boolean): {
  portBindings: readonly PortBinding[]; publishAllPorts: boolean; exposedPorts: readonly string[];
} {
  const exposed = new Set(parseExposedPorts(Object.keys(imageExposed ?? {})));
  for (const b of ports) exposed.add(portKey(b.containerPort, b.protocol));
  return { portBindings: ports, publishAllPorts: publishAll, exposedPorts: sortPortKeys(exposed) };
}

/** The bindings container `config` publishes when it starts (none with the host network). */
export function bindingsOfContainer(config: { readonly network: string; readonly portBindings?: readonly PortBinding[]; readonly publishAllPorts?: boolean; readonly exposedPorts?: readonly string[] }): PortBinding[] {
  if (config.network === 'host') return [];
  return bindingsToPublish(config.portBindings ?? [], config.publishAllPorts ?? false, config.exposedPorts ?? []);
}
