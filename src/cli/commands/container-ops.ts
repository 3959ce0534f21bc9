import { setTimeout as sleep } from 'node:timers/promises';
import { TsbuildError, notSupportedYet } from '../../core/index.js';
import {
  cpuPercent, isContainerRunning, listContainerProcesses, pauseContainer, sampleContainerStats, shortContainerId, startMonitor,
  stopContainer, unpauseContainer, type ContainerEntry, type ContainerStatsSample,
} from '../../runner/index.js';
import { optBool, optString } from '../args.js';
import type { Command } from '../command.js';
import { monitorCommandFor, openContainerDeps, type ContainerDeps } from '../container-deps.js';
import { alignTabs, executeGoTemplate, parseGoTemplate } from '../go-template.js';
import { forEachContainer } from './containers.js';
import { formatTable, requireArgs } from './image-info.js';

/** `tsbuild pause CONTAINER...`: freezes every process (cgroup freezer). */
export const pauseCommand: Command = {
  name: 'pause',
  summary: 'Pause all processes within one or more containers',
  usage: 'pause CONTAINER [CONTAINER...]',
  options: [],
  async run(args, ctx) {
    return forEachContainer(args, ctx, 'pause', (deps, e) => pauseContainer(deps, e));
  },
};

/** `tsbuild unpause CONTAINER...`. */
export const unpauseCommand: Command = {
  name: 'unpause',
  summary: 'Unpause all processes within one or more containers',
  usage: 'unpause CONTAINER [CONTAINER...]',
  options: [],
  async run(args, ctx) {
    return forEachContainer(args, ctx, 'unpause', (deps, e) => unpauseContainer(deps, e));
  },
};

/** `tsbuild restart [-t N] CONTAINER...`: stop (stop signal, SIGKILL after the timeout), then start under a new monitor. */
export const restartCommand: Command = {
  name: 'restart',
  summary: 'Restart one or more containers',
  usage: 'restart [OPTIONS] CONTAINER [CONTAINER...]',
  options: [{ name: 'time', short: 't', type: 'string', value: 'SECONDS', help: 'Seconds to wait before killing the container (default: its --stop-timeout, 10)' }],
  async run(args, ctx) {
    const t = optString(args, 'time');
    if (t !== undefined && !/^-?\d+$/.test(t)) throw new TsbuildError('CLI_BAD_VALUE', `invalid --time "${t}": whole seconds`, { exitCode: 125 });
    return forEachContainer(args, ctx, 'restart', async (deps, e) => {
      await stopContainer(deps.containers, e, t === undefined ? e.config.stopTimeout : Number(t), ctx.signal);
      await startMonitor(deps.containers, e.config.id, monitorCommandFor(ctx, deps.storeRoot, e.config.id), ctx.signal);
    });
  },
};

/** `tsbuild top CONTAINER`: the container's processes with `ps -ef` columns (host pids, as docker). */
export const topCommand: Command = {
  name: 'top',
  summary: 'Display the running processes of a container',
  usage: 'top CONTAINER',
  options: [],
  stopAtPositional: true,
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'top', 'at least 1 argument: CONTAINER');
    if (args.positionals.length > 1) throw notSupportedYet('ps options for "tsbuild top"', 'the columns are those of "ps -ef"');
    const deps = await openContainerDeps(ctx);
    const e = await deps.containers.resolve(args.positionals[0] as string);
    const table = await listContainerProcesses(deps, e);
    ctx.stdout.write(`${formatTable([table.titles, ...table.processes])}\n`);
    return 0;
  },
};

/** `1.516MiB` (binary, 4 significant digits) or `1.05kB` (decimal, 3), as docker's go-units. */
export function formatSize(bytes: number, binary: boolean): string {
  const base = binary ? 1024 : 1000;
  const units = binary ? ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] : ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  return `${Number(v.toPrecision(binary ? 4 : 3))}${units[i] as string}`;
}

/** One row of docker stats, as its `--format json` keys. */
interface StatsRow {
  BlockIO: string; CPUPerc: string; Container: string; ID: string; MemPerc: string; MemUsage: string; Name: string; NetIO: string; PIDs: string;
}

/** The column titles of docker's stats table, by field. */
const STATS_HEADERS: StatsRow = {
  BlockIO: 'BLOCK I/O', CPUPerc: 'CPU %', Container: 'CONTAINER', ID: 'CONTAINER ID', MemPerc: 'MEM %', MemUsage: 'MEM USAGE / LIMIT', Name: 'NAME', NetIO: 'NET I/O', PIDs: 'PIDS',
};

function statsRow(e: ContainerEntry, text: string, prev: ContainerStatsSample | undefined, cur: ContainerStatsSample | undefined, noTrunc: boolean): StatsRow {
  const id = noTrunc ? e.config.id : shortContainerId(e.config.id);
  if (cur === undefined) {
    return { BlockIO: '0B / 0B', CPUPerc: '0.00%', Container: text, ID: id, MemPerc: '0.00%', MemUsage: '0B / 0B', Name: e.config.name, NetIO: '0B / 0B', PIDs: '0' };
  }
  const mem = cur.memoryLimitBytes > 0 ? (cur.memoryUsageBytes / cur.memoryLimitBytes) * 100 : 0;
  return {
    BlockIO: `${formatSize(cur.blockReadBytes, false)} / ${formatSize(cur.blockWriteBytes, false)}`,
    CPUPerc: `${(prev === undefined ? 0 : cpuPercent(prev, cur)).toFixed(2)}%`,
    Container: text,
    ID: id,
    MemPerc: `${mem.toFixed(2)}%`,
    MemUsage: `${formatSize(cur.memoryUsageBytes, true)} / ${formatSize(cur.memoryLimitBytes, true)}`,
    Name: e.config.name,
    NetIO: `${formatSize(cur.netRxBytes, false)} / ${formatSize(cur.netTxBytes, false)}`,
    PIDs: String(cur.pids),
  };
}

async function sampleOrUndefined(deps: ContainerDeps, e: ContainerEntry): Promise<ContainerStatsSample | undefined> {
  if (!isContainerRunning(e.state)) return undefined;
  try {
    return await sampleContainerStats(deps, e);
  } catch (err) {
    if (err instanceof TsbuildError && err.code === 'RUN_NOT_RUNNING') return undefined;
    throw err;
  }
}

/** `tsbuild stats [-a] [--no-stream] [--no-trunc] [--format json] [CONTAINER...]`: live resource use from cgroup accounting. */
export const statsCommand: Command = {
  name: 'stats',
  summary: 'Display a live stream of container(s) resource usage statistics',
  usage: 'stats [OPTIONS] [CONTAINER...]',
  options: [
    { name: 'all', short: 'a', type: 'bool', help: 'Show all containers (default shows just running)' },
    { name: 'no-stream', type: 'bool', help: 'Disable streaming stats and only pull the first result' },
    { name: 'no-trunc', type: 'bool', help: 'Do not truncate output' },
    { name: 'format', type: 'string', value: 'FORMAT', help: 'Format output: table (default), json (one object per line), "table TEMPLATE" or a Go template ({{.Name}}\\t{{.CPUPerc}})' },
  ],
  async run(args, ctx) {
    const format = optString(args, 'format') ?? 'table';
    const template = format === 'table' || format === 'json' ? undefined : parseGoTemplate(format.replace(/^table /, ''));
    const noTrunc = optBool(args, 'no-trunc');
    const deps = await openContainerDeps(ctx);
    const named = args.positionals.length > 0;
    const pick = async (): Promise<{ e: ContainerEntry; text: string }[]> => named
      ? Promise.all(args.positionals.map(async (n) => ({ e: await deps.containers.resolve(n), text: n })))
      : (await deps.containers.list()).filter((e) => optBool(args, 'all') || isContainerRunning(e.state)).map((e) => ({ e, text: shortContainerId(e.config.id) }));
    const previous = new Map<string, ContainerStatsSample>();
    const interval = 1000;
    for (let round = 0; ; round++) {
      const list = await pick();
      const rows: StatsRow[] = [];
      for (const { e, text } of list) {
        const cur = await sampleOrUndefined(deps, e);
        rows.push(statsRow(e, text, previous.get(e.config.id), cur, noTrunc));
        if (cur !== undefined) previous.set(e.config.id, cur);
      }
      // The first round only primes the CPU counters: CPU % needs two readings (docker's precpu).
      const stream = !optBool(args, 'no-stream');
      if (round > 0 || list.length === 0) {
        if (format === 'json') {
          for (const r of rows) ctx.stdout.write(`${JSON.stringify(r)}\n`);
        } else if (template !== undefined && !format.startsWith('table ')) {
          for (const r of rows) ctx.stdout.write(`${executeGoTemplate(template, r)}\n`);
        } else if (template !== undefined) {
          const lines = [STATS_HEADERS, ...rows].flatMap((r) => executeGoTemplate(template, r).replace(/\n$/, '').split('\n'));
          ctx.stdout.write(`${stream ? '\x1b[2J\x1b[H' : ''}${alignTabs(lines)}\n`);
        } else {
          const table = [['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'NET I/O', 'BLOCK I/O', 'PIDS'],
            ...rows.map((r) => [r.ID, r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDs])];
          ctx.stdout.write(`${stream ? '\x1b[2J\x1b[H' : ''}${formatTable(table)}\n`);
        }
        if (!stream) return 0;
      }
      try {
        await sleep(round === 0 ? interval / 2 : interval, undefined, { signal: ctx.signal });
      } catch {
        return 0; // Ctrl-C ends the stream
      }
    }
  },
};
