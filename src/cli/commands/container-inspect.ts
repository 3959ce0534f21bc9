import { isContainerRunning, type ContainerEntry } from '../../runner/index.js';
import type { CommandContext } from '../command.js';
import { openContainerDeps, type ContainerDeps } from '../container-deps.js';

/** Docker's `container inspect` document of one container (the fields tsbuild knows). */
export function containerInspectJson(e: ContainerEntry, deps: Pick<ContainerDeps, 'containers' | 'snapshotter'>): Record<string, unknown> {
  const c = e.config;
  const s = e.state;
  const running = isContainerRunning(s);
  const r = c.resources;
  return {
    Id: c.id,
    Created: c.created,
    Path: c.args[0] ?? '',
    Args: c.args.slice(1),
    State: {
      Status: running ? 'running' : s.status === 'running' ? 'exited' : s.status,
      Running: running,
      Paused: false,
      Restarting: false,
      OOMKilled: s.oomKilled,
      Dead: s.status === 'dead',
      Pid: running ? s.pid : 0,
      ExitCode: s.exitCode,
      Error: s.error,
      StartedAt: s.startedAt,
      FinishedAt: s.finishedAt,
    },
    Image: c.imageId,
    LogPath: deps.containers.logPathOf(c.id),
    Name: `/${c.name}`,
    RestartCount: 0,
    Driver: deps.snapshotter.kind,
    Platform: 'linux',
    HostConfig: {
      AutoRemove: c.autoRemove,
      NetworkMode: c.network,
      ReadonlyRootfs: c.readonlyRootfs,
      CapAdd: c.capAdd,
      CapDrop: c.capDrop,
      Binds: c.mounts.filter((m) => m.type === 'bind').map((m) => `${m.source}:${m.destination}${m.options.includes('ro') ? ':ro' : ''}`),
      Tmpfs: Object.fromEntries(c.mounts.filter((m) => m.type === 'tmpfs').map((m) => [m.destination, ''])),
      Memory: r?.memory?.limit ?? 0,
      MemorySwap: r?.memory?.swap ?? 0,
      NanoCpus: r?.cpu?.quota !== undefined && r.cpu.quota > 0 ? Math.round((r.cpu.quota / (r.cpu.period ?? 100_000)) * 1e9) : 0,
      CpuShares: r?.cpu?.shares ?? 0,
      CpusetCpus: r?.cpu?.cpus ?? '',
      PidsLimit: r?.pids?.limit ?? null,
      RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
      PortBindings: {},
    },
    GraphDriver: { Name: deps.snapshotter.kind, Data: { SnapshotKey: c.snapshotKey, ImageChainId: c.imageChain ?? '' } },
    Mounts: c.mounts.map((m) => ({ Type: m.type, Source: m.source, Destination: m.destination, RW: !m.options.includes('ro') })),
    Config: {
      Hostname: c.hostname,
      User: c.userText === 'root' ? '' : c.userText,
      Env: c.env,
      Cmd: c.cmd,
      Image: c.image,
      WorkingDir: c.cwd,
      Entrypoint: c.entrypoint.length === 0 ? null : c.entrypoint,
      Labels: c.labels,
      StopSignal: c.stopSignal,
      StopTimeout: c.stopTimeout,
    },
    NetworkSettings: { Ports: {}, IPAddress: '' },
  };
}

/** The inspect document of the container `name` (name, ID or prefix), or undefined when there is none (for `tsbuild inspect`'s fallback). */
export async function findContainerJson(ctx: CommandContext, name: string): Promise<Record<string, unknown> | undefined> {
  const deps = await openContainerDeps(ctx);
  const entry = await deps.containers.resolve(name).catch(() => undefined);
  return entry === undefined ? undefined : containerInspectJson(entry, deps);
}
