import { TsbuildError } from '../../core/index.js';
import { ANONYMOUS_LABEL, VolumeStore, volumeUsers, type VolumeInfo } from '../../runner/index.js';
import type { ParsedArgs } from '../args.js';
import { optBool, optList, optString } from '../args.js';
import type { Command, CommandContext } from '../command.js';
import { openContainerDeps, type ContainerDeps } from '../container-deps.js';
import { formatTable, requireArgs } from './image-info.js';
import { join } from 'node:path';

const USAGE = 'volume create [--label K=V] [NAME] | volume ls [-q] [--format json] [--filter dangling=true|name=N|label=K[=V]] | volume inspect NAME... | volume rm [-f] NAME... | volume prune [-f] [-a]';

function badValue(message: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', message, { exitCode: 125 });
}

/** Parses `--label K=V` values (a bare `K` is an empty label). */
function parseLabels(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    const k = eq === -1 ? v : v.slice(0, eq);
    if (k === '') throw badValue(`invalid label "${v}": expected KEY[=VALUE]`);
    out[k] = eq === -1 ? '' : v.slice(eq + 1);
  }
  return out;
}

/** Docker's `volume ls --filter`: dangling=true|false, name=SUBSTRING, label=KEY[=VALUE], driver=local. */
function volumeFilter(filters: readonly string[], users: Map<string, string[]>): (v: VolumeInfo) => boolean {
  const tests = filters.map((f): ((v: VolumeInfo) => boolean) => {
    const eq = f.indexOf('=');
    const key = eq === -1 ? f : f.slice(0, eq);
    const value = eq === -1 ? '' : f.slice(eq + 1);
    if (key === 'dangling') {
      if (!['true', 'false', '1', '0'].includes(value)) throw badValue(`invalid filter 'dangling=${value}'`);
      const want = value === 'true' || value === '1';
      return (v) => !users.has(v.Name) === want;
    }
    if (key === 'name') return (v) => v.Name.includes(value);
    if (key === 'driver') return () => value === 'local';
    if (key === 'label') {
      const le = value.indexOf('=');
      return le === -1 ? (v) => value in v.Labels : (v) => v.Labels[value.slice(0, le)] === value.slice(le + 1);
    }
    throw badValue(`invalid filter '${key}'`);
  });
  return (v) => tests.every((t) => t(v));
}

async function openVolumes(ctx: CommandContext): Promise<{ deps: ContainerDeps; volumes: VolumeStore; users: () => Promise<Map<string, string[]>> }> {
  const deps = await openContainerDeps(ctx);
  const volumes = new VolumeStore(join(deps.store.paths.root, 'volumes'));
  return { deps, volumes, users: async () => volumeUsers((await deps.containers.list()).map((e) => e.config)) };
}

/** Removes volume `name` unless a container uses it. Throws RUN_VOLUME_IN_USE, RUN_NO_SUCH_VOLUME. */
async function removeVolume(volumes: VolumeStore, users: Map<string, string[]>, name: string, force: boolean): Promise<boolean> {
  const v = await volumes.inspect(name);
  if (v === undefined) {
    if (force) return false;
    throw new TsbuildError('RUN_NO_SUCH_VOLUME', `no such volume: ${name}`, { exitCode: 1 });
  }
  const by = users.get(v.Name);
  if (by !== undefined) throw new TsbuildError('RUN_VOLUME_IN_USE', `remove ${name}: volume is in use - [${by.join(', ')}]`, { exitCode: 1 });
  await volumes.remove(v.Name);
  return true;
}

async function runVolume(sub: string, rest: readonly string[], args: ParsedArgs, ctx: CommandContext): Promise<number> {
  const { volumes, users } = await openVolumes(ctx);
  switch (sub) {
    case 'create': {
      if (rest.length > 1) throw badValue('"tsbuild volume create" takes at most 1 argument: NAME');
      const driver = optString(args, 'driver') ?? 'local';
      if (driver !== 'local') throw badValue(`volume driver "${driver}" is not supported: only "local"`);
      const v = await volumes.create(rest[0], parseLabels(optList(args, 'label')));
      ctx.stdout.write(`${v.Name}\n`);
      return 0;
    }
    case 'ls':
    case 'list': {
      const u = await users();
      const list = (await volumes.list()).filter(volumeFilter(optList(args, 'filter'), u));
      const format = optString(args, 'format') ?? 'table';
      if (optBool(args, 'quiet')) {
        for (const v of list) ctx.stdout.write(`${v.Name}\n`);
      } else if (format === 'json') {
        for (const v of list) {
          ctx.stdout.write(`${JSON.stringify({ Availability: 'N/A', Driver: v.Driver, Group: 'N/A', Labels: Object.entries(v.Labels).map(([k, x]) => `${k}=${x}`).join(','), Links: 'N/A', Mountpoint: v.Mountpoint, Name: v.Name, Scope: v.Scope, Size: 'N/A', Status: 'N/A' })}\n`);
        }
      } else if (format === 'table') {
        ctx.stdout.write(`${formatTable([['DRIVER', 'VOLUME NAME'], ...list.map((v) => [v.Driver, v.Name])])}\n`);
      } else {
        throw badValue(`--format takes table or json, not "${format}"`);
      }
      return 0;
    }
    case 'inspect': {
      requireArgs(rest, 1, 'volume inspect', 'at least 1 argument: VOLUME');
      const out: VolumeInfo[] = [];
      let code = 0;
      for (const n of rest) {
        const v = await volumes.inspect(n);
        if (v === undefined) {
          ctx.stderr.write(`Error: no such volume: ${n}\n`);
          code = 1;
        } else {
          out.push(v);
        }
      }
      ctx.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
      return code;
    }
    case 'rm':
    case 'remove': {
      requireArgs(rest, 1, 'volume rm', 'at least 1 argument: VOLUME');
      const u = await users();
      let code = 0;
      for (const n of rest) {
        try {
          if (await removeVolume(volumes, u, n, optBool(args, 'force'))) ctx.stdout.write(`${n}\n`);
        } catch (err) {
          if (!(err instanceof TsbuildError)) throw err;
          ctx.stderr.write(`Error response from daemon: ${err.message}\n`);
          code = 1;
        }
      }
      return code;
    }
    case 'prune': {
      // As docker since 23.0: unused anonymous volumes; with --all every unused volume.
      const u = await users();
      const all = optBool(args, 'all');
      ctx.stdout.write('Deleted Volumes:\n');
      for (const v of await volumes.list()) {
        if (u.has(v.Name) || (!all && !(ANONYMOUS_LABEL in v.Labels))) continue;
        await volumes.remove(v.Name);
        ctx.stdout.write(`${v.Name}\n`);
      }
      ctx.stdout.write('\nTotal reclaimed space: N/A\n');
      return 0;
    }
    default:
      throw new TsbuildError('CLI_UNKNOWN_COMMAND', `"tsbuild volume ${sub}" is not a volume command`, { hint: `usage: tsbuild ${USAGE}`, exitCode: 125 });
  }
}

/** `tsbuild volume create|ls|inspect|rm|prune` (docker's `local` volumes under `<store>/volumes`). */
export const volumeCommand: Command = {
  name: 'volume',
  summary: 'Manage volumes (create, ls, inspect, rm, prune)',
  usage: USAGE,
  options: [
    { name: 'label', type: 'list', value: 'KEY=VALUE', help: 'create: set metadata on the volume' },
    { name: 'driver', short: 'd', type: 'string', value: 'local', help: 'create: volume driver (only local)' },
    { name: 'opt', short: 'o', type: 'list', value: 'K=V', help: 'create: driver options', notSupported: 'the local driver takes no options in tsbuild' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'ls: only display volume names' },
    { name: 'format', type: 'string', value: 'table|json', help: 'ls: output format' },
    { name: 'filter', type: 'list', value: 'FILTER', help: 'ls: dangling=true|false, name=N, label=K[=V], driver=local' },
    { name: 'force', short: 'f', type: 'bool', help: 'rm: no error for a missing volume; prune: do not prompt' },
    { name: 'all', short: 'a', type: 'bool', help: 'prune: all unused volumes, not only anonymous ones' },
  ],
  stopAtPositional: false,
  async run(args, ctx) {
    const [sub, ...rest] = args.positionals;
    if (sub === undefined) throw new TsbuildError('CLI_MISSING_ARGUMENT', '"tsbuild volume" requires a subcommand', { hint: `usage: tsbuild ${USAGE}`, exitCode: 125 });
    return runVolume(sub, rest, args, ctx);
  },
};
