import type { MountSpec } from '../../sandbox/index.js';
import { healthConfigOf, INIT_PATH, isContainerPaused, type AttachedVolume, readHealth, type HealthState, isContainerRunning, portKey, readActivePorts, type ActivePort, type ContainerEntry, type PortBinding } from '../../runner/index.js';
import type { CommandContext } from '../command.js';
import { openContainerDeps, type ContainerDeps } from '../container-deps.js';

/** Docker's HostConfig.PortBindings: `{"80/tcp": [{"HostIp": "", "HostPort": "8081"}]}` ('' = any port). */
function portBindingsJson(bindings: readonly PortBinding[]): Record<string, { HostIp: string; HostPort: string }[]> {
  const out: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const b of bindings) {
    const host = b.hostPort === 0 ? '' : b.hostPortEnd === undefined ? String(b.hostPort) : `${b.hostPort}-${b.hostPortEnd}`;
    (out[portKey(b.containerPort, b.protocol)] ??= []).push({ HostIp: b.hostIp, HostPort: host });
  }
  return out;
}

/** Docker's NetworkSettings.Ports of a running container: every exposed port, with its live bindings or null. */
function networkPortsJson(exposed: readonly string[], active: readonly ActivePort[]): Record<string, { HostIp: string; HostPort: string }[] | null> {
  const out: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  for (const k of exposed) out[k] = null;
  for (const p of active) (out[portKey(p.containerPort, p.protocol)] ??= []).push({ HostIp: p.hostIp, HostPort: String(p.hostPort) });
  return out;
}

/** The volume a mount of the container is, if any. */
function volumeOf(c: ContainerEntry['config'], m: MountSpec): AttachedVolume | undefined {
  return m.type === 'bind' ? (c.volumes ?? []).find((x) => x.destination === m.destination && m.source.endsWith(`/${x.name}/_data`)) : undefined;
}

/**
 * Docker's `container inspect` document of one container (the fields tsbuild knows); `active`
 * are its live port bindings (read with readActivePorts while it runs).
 */
export function containerInspectJson(e: ContainerEntry, deps: Pick<ContainerDeps, 'containers' | 'snapshotter'>, active: readonly ActivePort[] = [], health?: HealthState): Record<string, unknown> {
  const c = e.config;
  const s = e.state;
  const running = isContainerRunning(s);
  const paused = running && isContainerPaused(e);
  const r = c.resources;
  return {
    Id: c.id,
    Created: c.created,
    Path: c.args[0] ?? '',
    Args: c.args.slice(1),
    State: {
      Status: running ? (paused ? 'paused' : 'running') : s.status === 'running' ? 'exited' : s.status,
      Running: running,
      Paused: paused,
      Restarting: s.status === 'restarting',
      OOMKilled: s.oomKilled,
      Dead: s.status === 'dead',
      Pid: running ? s.pid : 0,
      ExitCode: s.exitCode,
      Error: s.error,
      StartedAt: s.startedAt,
      FinishedAt: s.finishedAt,
      ...(c.healthcheck === undefined || health === undefined ? {} : { Health: health }),
    },
    Image: c.imageId,
    LogPath: deps.containers.logPathOf(c.id),
    Name: `/${c.name}`,
    RestartCount: s.restartCount ?? 0,
    Driver: deps.snapshotter.kind,
    Platform: 'linux',
    HostConfig: {
      AutoRemove: c.autoRemove,
      NetworkMode: c.network,
      ReadonlyRootfs: c.readonlyRootfs,
      Privileged: c.privileged === true,
      CapAdd: c.capAdd,
      CapDrop: c.capDrop,
      Binds: c.mounts.filter((m) => m.type === 'bind' && !(c.init === true && m.destination === INIT_PATH)).map((m) => {
        const v = volumeOf(c, m);
        return `${v === undefined || v.anonymous ? m.source : v.name}:${m.destination}${m.options.includes('ro') ? ':ro' : ''}`;
      }),
      Init: c.init === true ? true : null,
      Tmpfs: Object.fromEntries(c.mounts.filter((m) => m.type === 'tmpfs').map((m) => [m.destination, ''])),
      Memory: r?.memory?.limit ?? 0,
      MemorySwap: r?.memory?.swap ?? 0,
      NanoCpus: r?.cpu?.quota !== undefined && r.cpu.quota > 0 ? Math.round((r.cpu.quota / (r.cpu.period ?? 100_000)) * 1e9) : 0,
      CpuShares: r?.cpu?.shares ?? 0,
      CpusetCpus: r?.cpu?.cpus ?? '',
      PidsLimit: r?.pids?.limit ?? null,
      RestartPolicy: c.restartPolicy ?? { Name: 'no', MaximumRetryCount: 0 },
      PortBindings: portBindingsJson(c.portBindings ?? []),
      PublishAllPorts: c.publishAllPorts ?? false,
      OomKillDisable: r?.memory?.disableOOMKiller ?? false,
      ShmSize: c.shmSize ?? 67108864,
      Ulimits: c.ulimits === undefined ? null : c.ulimits.map((u) => ({ Name: u.name, Hard: u.hard, Soft: u.soft })),
      GroupAdd: c.groupAdd ?? null,
      SecurityOpt: c.securityOpt ?? null,
      ExtraHosts: c.extraHosts ?? null,
      Dns: c.dns?.servers ?? [],
      DnsSearch: c.dns?.search ?? [],
      DnsOptions: c.dns?.options ?? [],
    },
    GraphDriver: { Name: deps.snapshotter.kind, Data: { SnapshotKey: c.snapshotKey, ImageChainId: c.imageChain ?? '' } },
    Mounts: c.mounts.filter((m) => !(c.init === true && m.destination === INIT_PATH)).map((m) => {
      const v = volumeOf(c, m);
      return v === undefined
        ? { Type: m.type, Source: m.source, Destination: m.destination, RW: !m.options.includes('ro') }
        : { Type: 'volume', Name: v.name, Source: m.source, Destination: m.destination, Driver: 'local', RW: !v.readonly };
    }),
    Config: {
      Hostname: c.hostname,
      Tty: c.tty === true,
      User: c.userText === 'root' ? '' : c.userText,
      Env: c.env,
      Cmd: c.cmd,
      Image: c.image,
      WorkingDir: c.cwd,
      Entrypoint: c.entrypoint.length === 0 ? null : c.entrypoint,
      Labels: c.labels,
      StopSignal: c.stopSignal,
      StopTimeout: c.stopTimeout,
      ...(c.healthcheck === undefined ? {} : { Healthcheck: healthConfigOf(c.healthcheck) }),
      ...((c.exposedPorts ?? []).length === 0 ? {} : { ExposedPorts: Object.fromEntries((c.exposedPorts ?? []).map((k) => [k, {}])) }),
    },
    NetworkSettings: { Ports: running ? networkPortsJson(c.exposedPorts ?? [], active) : {}, IPAddress: '' },
  };
}

/** The inspect document of the container `name` (name, ID or prefix), or undefined when there is none (for `tsbuild inspect`'s fallback). */
export async function findContainerJson(ctx: CommandContext, name: string): Promise<Record<string, unknown> | undefined> {
  const deps = await openContainerDeps(ctx);
  const entry = await deps.containers.resolve(name).catch(() => undefined);
  return entry === undefined ? undefined : containerInspectJson(entry, deps, await activePortsOf(deps, entry), await readHealth(deps.containers, entry.config.id));
}

/** The live port bindings of a container while it runs, else []. */
export async function activePortsOf(deps: Pick<ContainerDeps, 'containers'>, e: ContainerEntry): Promise<ActivePort[]> {
  return isContainerRunning(e.state) ? readActivePorts(deps.containers, e.config.id) : [];
}
