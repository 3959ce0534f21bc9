import { TsbuildError } from '../../core/index.js';
import { formatHostAddress, portKey, type ActivePort } from '../../runner/index.js';
import type { Command } from '../command.js';
import { openContainerDeps } from '../container-deps.js';
import { activePortsOf } from './container-inspect.js';
import { requireArgs } from './image-info.js';

/** Parses the PORT argument of `port`: `80`, `80/tcp`, `53/udp`. Throws CLI_BAD_VALUE. */
function parsePortArg(text: string): string {
  const m = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(text);
  if (m === null || Number(m[1]) < 1 || Number(m[1]) > 65535) {
    throw new TsbuildError('CLI_BAD_VALUE', `invalid port "${text}": expected PORT[/PROTO], e.g. 80 or 53/udp`, { exitCode: 125 });
  }
  return `${Number(m[1])}/${(m[2] ?? 'tcp').toLowerCase()}`;
}

/** Sorts live bindings as docker lists them: by container port, then protocol, then host address and port. */
function sortActive(ports: readonly ActivePort[]): ActivePort[] {
  return [...ports].sort((a, b) => a.containerPort - b.containerPort || a.protocol.localeCompare(b.protocol) || a.hostIp.localeCompare(b.hostIp) || a.hostPort - b.hostPort);
}

/** `tsbuild port CONTAINER [PORT[/PROTO]]`: the live port bindings of a running container, as docker prints them. */
export const portCommand: Command = {
  name: 'port',
  summary: 'List port mappings or a specific mapping for the container',
  usage: 'port CONTAINER [PRIVATE_PORT[/PROTO]]',
  options: [],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'port', 'at least 1 argument: CONTAINER');
    const [name, port, ...extra] = args.positionals as [string, string | undefined, ...string[]];
    if (extra.length > 0) throw new TsbuildError('CLI_BAD_ARGUMENT', '"tsbuild port" takes at most 2 arguments: CONTAINER [PRIVATE_PORT[/PROTO]]', { exitCode: 125 });
    const key = port === undefined ? undefined : parsePortArg(port);
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.resolve(name);
    const active = sortActive(await activePortsOf(deps, entry));
    if (key === undefined) {
      for (const p of active) ctx.stdout.write(`${portKey(p.containerPort, p.protocol)} -> ${formatHostAddress(p.hostIp, p.hostPort)}\n`);
      return 0;
    }
    const matching = active.filter((p) => portKey(p.containerPort, p.protocol) === key);
    if (matching.length === 0) throw new TsbuildError('RUN_NO_PUBLIC_PORT', `no public port '${key}' published for ${name}`, { exitCode: 1 });
    for (const p of matching) ctx.stdout.write(`${formatHostAddress(p.hostIp, p.hostPort)}\n`);
    return 0;
  },
};
