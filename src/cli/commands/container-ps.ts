import { TsbuildError } from '../../core/index.js';
import {
  formatPortsColumn, isContainerPaused, isContainerRunning, readActivePorts, readHealth, shortContainerId,
  type ContainerEntry, type ContainerStore, type HealthState,
} from '../../runner/index.js';
import { resolveImage } from '../../store/index.js';
import { optBool, optList, optString } from '../args.js';
import type { Command } from '../command.js';
import { openContainerList, type ContainerListDeps } from '../container-list.js';
import { alignTabs, executeGoTemplate, parseGoTemplate } from '../go-template.js';
import { formatTable, imageId, timeAgo } from './image-info.js';

/** Docker's STATUS column: `Up 5 seconds`, `Up 1 minute (healthy)`, `Exited (0) 3 minutes ago`, `Created`. */
export function statusText(e: ContainerEntry, now: number, health?: HealthState): string {
  const s = e.state;
  if (isContainerRunning(s)) {
    const h = health === undefined ? '' : health.Status === 'starting' ? ' (health: starting)' : ` (${health.Status})`;
    return `Up ${timeAgo(s.startedAt, now).replace(/ ago$/, '')}${isContainerPaused(e) ? ' (Paused)' : h}`;
  }
  if (s.status === 'exited') return `Exited (${s.exitCode}) ${timeAgo(s.finishedAt, now)}`;
  if (s.status === 'restarting') return `Restarting (${s.exitCode}) ${timeAgo(s.finishedAt, now)}`;
  if (s.status === 'created') return 'Created';
  return s.status[0]?.toUpperCase() + s.status.slice(1);
}

/** The health of a running container with a healthcheck, else undefined. */
async function healthOf(containers: ContainerStore, e: ContainerEntry): Promise<HealthState | undefined> {
  return e.config.healthcheck !== undefined && isContainerRunning(e.state) ? readHealth(containers, e.config.id) : undefined;
}

/** Docker's COMMAND column: the quoted command line, cut to 20 characters with `…` unless `noTrunc`. */
export function commandText(args: readonly string[], noTrunc: boolean): string {
  const text = args.join(' ');
  return `"${noTrunc || text.length <= 20 ? text : `${text.slice(0, 19)}…`}"`;
}

/** Docker's PORTS column of a container: its live bindings and unpublished exposed ports while it runs, else ''. */
export async function portsText(containers: ContainerStore, e: ContainerEntry): Promise<string> {
  if (!isContainerRunning(e.state)) return '';
  return formatPortsColumn(await readActivePorts(containers, e.config.id), e.config.exposedPorts ?? []);
}

/** Docker's State of a container: created, running, paused, restarting, exited, ... */
function stateOf(e: ContainerEntry): string {
  return isContainerRunning(e.state) ? (isContainerPaused(e) ? 'paused' : 'running') : e.state.status;
}

/** One `ps` row with docker's `--format` field names (`.ID`, `.Image`, `.Status`, ...). */
export interface PsRow {
  readonly Command: string; readonly CreatedAt: string; readonly ID: string; readonly Image: string; readonly Labels: string;
  readonly LocalVolumes: string; readonly Mounts: string; readonly Names: string; readonly Networks: string; readonly Ports: string;
  readonly RunningFor: string; readonly Size: string; readonly State: string; readonly Status: string;
}

/** The column titles of docker's ps table, by field. */
const PS_HEADERS: PsRow = {
  Command: 'COMMAND', CreatedAt: 'CREATED AT', ID: 'CONTAINER ID', Image: 'IMAGE', Labels: 'LABELS', LocalVolumes: 'LOCAL VOLUMES', Mounts: 'MOUNTS',
  Names: 'NAMES', Networks: 'NETWORKS', Ports: 'PORTS', RunningFor: 'CREATED', Size: 'SIZE', State: 'STATE', Status: 'STATUS',
};

async function psRow(containers: ContainerStore, e: ContainerEntry, now: number, noTrunc: boolean, health: HealthState | undefined): Promise<PsRow> {
  return {
    Command: commandText(e.config.args, noTrunc),
    CreatedAt: e.config.created,
    ID: noTrunc ? e.config.id : shortContainerId(e.config.id),
    Image: e.config.image,
    Labels: Object.entries(e.config.labels).map(([k, v]) => `${k}=${v}`).join(','),
    LocalVolumes: String((e.config.volumes ?? []).length),
    Mounts: (e.config.volumes ?? []).map((v) => (v.anonymous ? v.name.slice(0, 15) + '…' : v.name)).join(','),
    Names: e.config.name,
    Networks: e.config.network,
    Ports: await portsText(containers, e),
    RunningFor: timeAgo(e.config.created, now),
    Size: 'N/A',
    State: stateOf(e),
    Status: statusText(e, now, health),
  };
}

const FILTER_KEYS = ['id', 'name', 'label', 'status', 'exited', 'ancestor', 'before', 'since', 'publish', 'expose', 'health', 'network', 'volume'] as const;
const STATUSES = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead'];
const HEALTHS = ['starting', 'healthy', 'unhealthy', 'none'];

/** `--filter KEY=VALUE` values grouped by key (the same key ORs, different keys AND). */
export type PsFilters = ReadonlyMap<string, readonly string[]>;

function badFilter(message: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', message, { hint: `filters: ${FILTER_KEYS.join(', ')} (KEY=VALUE)`, exitCode: 125 });
}

/** Parses and checks `--filter` values as docker. Throws CLI_BAD_VALUE for an unknown key or a bad value. */
export function parsePsFilters(values: readonly string[]): PsFilters {
  const out = new Map<string, string[]>();
  for (const f of values) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw badFilter(`bad format of filter "${f}" (expected name=value)`);
    const key = f.slice(0, eq).trim().toLowerCase();
    const value = f.slice(eq + 1);
    if (!(FILTER_KEYS as readonly string[]).includes(key)) throw badFilter(`invalid filter '${key}'`);
    if (key === 'status' && !STATUSES.includes(value)) throw badFilter(`invalid filter 'status=${value}': the status is one of ${STATUSES.join(', ')}`);
    if (key === 'health' && !HEALTHS.includes(value)) throw badFilter(`invalid filter 'health=${value}': the health is one of ${HEALTHS.join(', ')}`);
    if (key === 'exited' && !/^-?\d+$/.test(value)) throw badFilter(`invalid filter 'exited=${value}': the exit code is an integer`);
    if ((key === 'publish' || key === 'expose') && !/^\d+(-\d+)?(\/(tcp|udp|sctp))?$/.test(value)) throw badFilter(`invalid filter '${key}=${value}': expected PORT[/PROTO] or START-END[/PROTO]`);
    out.set(key, [...(out.get(key) ?? []), value]);
  }
  return out;
}

/** Docker's filter match: the exact value, or the value as an unanchored regular expression. */
function matchText(pattern: string, text: string): boolean {
  if (pattern === text) return true;
  try {
    return new RegExp(pattern).test(text);
  } catch {
    return false;
  }
}

/** True when the port keys (`80/tcp`) hold one in `spec` (`80`, `80/udp`, `8000-8080/tcp`; tcp by default). */
function matchPorts(spec: string, keys: readonly string[]): boolean {
  const m = /^(\d+)(?:-(\d+))?(?:\/(\w+))?$/.exec(spec);
  if (m === null) return false;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  const proto = m[3] ?? 'tcp';
  return keys.some((k) => {
    const [port, p] = k.split('/');
    return p === proto && Number(port) >= lo && Number(port) <= hi;
  });
}

/** A prepared matcher of `ps --filter`: resolves the containers of before/since and the images of ancestor once. */
async function prepareMatcher(filters: PsFilters, deps: ContainerListDeps): Promise<(e: ContainerEntry, health: HealthState | undefined) => boolean> {
  const createdOf = async (key: 'before' | 'since'): Promise<string[]> => Promise.all((filters.get(key) ?? []).map(async (v) => (await deps.containers.resolve(v)).config.created));
  const before = await createdOf('before');
  const since = await createdOf('since');
  const ancestorIds = new Set<string>();
  for (const a of filters.get('ancestor') ?? []) {
    const image = await resolveImage(deps.store, a).catch(() => undefined);
    if (image !== undefined) ancestorIds.add(imageId(image));
  }
  const any = (key: string, test: (v: string) => boolean): boolean => {
    const values = filters.get(key);
    return values === undefined || values.some(test);
  };
  return (e, health) => {
    const c = e.config;
    const published = c.publishAllPorts === true ? (c.exposedPorts ?? []) : (c.portBindings ?? []).map((b) => `${b.containerPort}/${b.protocol}`);
    const healthText = c.healthcheck === undefined ? 'none' : (health?.Status ?? 'starting');
    return any('id', (v) => matchText(v, c.id))
      && any('name', (v) => matchText(v, `/${c.name}`) || matchText(v, c.name))
      && any('status', (v) => v === stateOf(e))
      && any('exited', (v) => e.state.status === 'exited' && e.state.exitCode === Number(v))
      && any('label', (v) => {
        const ne = v.indexOf('!=');
        if (ne > 0) return c.labels[v.slice(0, ne)] !== v.slice(ne + 2);
        const eq = v.indexOf('=');
        return eq < 0 ? Object.hasOwn(c.labels, v) : c.labels[v.slice(0, eq)] === v.slice(eq + 1);
      })
      && any('ancestor', (v) => v === c.image || ancestorIds.has(c.imageId) || (/^(sha256:)?[0-9a-f]{4,64}$/.test(v) && c.imageId.replace(/^sha256:/, '').startsWith(v.replace(/^sha256:/, ''))))
      && before.every((t) => c.created < t)
      && since.every((t) => c.created > t)
      && any('publish', (v) => matchPorts(v, published))
      && any('expose', (v) => matchPorts(v, c.exposedPorts ?? []))
      && any('health', (v) => v === healthText)
      && any('network', (v) => v === c.network)
      && any('volume', (v) => (c.volumes ?? []).some((vol) => vol.name === v || vol.destination === v) || c.mounts.some((m) => m.destination === v || m.source === v));
  };
}

/** Renders ps rows with `--format`: json, table, `table TEMPLATE` (with a header row, aligned) or a template. */
export function formatPsRows(format: string, rows: readonly PsRow[]): string {
  if (format === 'json') return rows.map((r) => `${JSON.stringify(r)}\n`).join('');
  if (format === 'table' || format === '') {
    const table = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'], ...rows.map((r) => [r.ID, r.Image, r.Command, r.RunningFor, r.Status, r.Ports, r.Names])];
    return `${formatTable(table)}\n`;
  }
  if (format.startsWith('table ')) {
    const template = parseGoTemplate(format.slice('table '.length));
    const lines = [PS_HEADERS, ...rows].map((r) => executeGoTemplate(template, r));
    return `${alignTabs(lines.flatMap((l) => l.replace(/\n$/, '').split('\n')))}\n`;
  }
  const template = parseGoTemplate(format);
  return rows.map((r) => `${executeGoTemplate(template, r)}\n`).join('');
}

/** `tsbuild ps [-a] [-q] [--no-trunc] [-f FILTER]... [--format json|table|TEMPLATE]`. */
export const psCommand: Command = {
  name: 'ps',
  summary: 'List containers',
  usage: 'ps [OPTIONS]',
  options: [
    { name: 'all', short: 'a', type: 'bool', help: 'Show all containers (default shows just running)' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only display container IDs' },
    { name: 'no-trunc', type: 'bool', help: 'Don\'t truncate output' },
    { name: 'format', type: 'string', value: 'FORMAT', help: 'Format output: table (default), json (one object per line), "table TEMPLATE" or a Go template ({{.ID}}\\t{{.Names}})' },
    { name: 'filter', short: 'f', type: 'list', value: 'FILTER', help: `Filter output based on conditions provided (KEY=VALUE; keys: ${FILTER_KEYS.join(', ')})` },
  ],
  async run(args, ctx) {
    const filters = parsePsFilters(optList(args, 'filter'));
    const format = optString(args, 'format') ?? 'table';
    // Checked before anything is listed, so that a bad template fails even with no container.
    if (format !== 'json' && format !== 'table' && format !== '') parseGoTemplate(format.replace(/^table /, ''));
    const deps = await openContainerList(ctx);
    // As docker: a status filter lists stopped containers without -a.
    const all = optBool(args, 'all') || filters.has('status');
    const noTrunc = optBool(args, 'no-trunc');
    const now = Date.now();
    const matches = await prepareMatcher(filters, deps);
    const list: { e: ContainerEntry; health: HealthState | undefined }[] = [];
    for (const e of await deps.containers.list()) {
      if (!all && !isContainerRunning(e.state)) continue;
      const health = await healthOf(deps.containers, e);
      if (matches(e, health)) list.push({ e, health });
    }
    if (optBool(args, 'quiet')) {
      for (const { e } of list) ctx.stdout.write(`${noTrunc ? e.config.id : shortContainerId(e.config.id)}\n`);
      return 0;
    }
    const rows: PsRow[] = [];
    for (const { e, health } of list) rows.push(await psRow(deps.containers, e, now, noTrunc, health));
    ctx.stdout.write(formatPsRows(format, rows));
    return 0;
  },
};
