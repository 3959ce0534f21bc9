import type { ContainerConfig, HealthConfig, HistoryEntry, ImageConfig, Platform } from '../core/index.js';
import type { ConfigEdit } from './graph.js';

/** Default shell of shell-form RUN/CMD/ENTRYPOINT when no SHELL is set. */
export const DEFAULT_SHELL: readonly string[] = ['/bin/sh', '-c'];

/** Mutable image config of one stage while it is planned (local to one planBuild call). */
export interface ConfigState {
  platform: Platform;
  author: string | undefined;
  /** Insertion-ordered; re-setting a key keeps its position (as Docker). */
  env: Map<string, string>;
  /** Cached `KEY=VALUE` list of `env` (cleared on change). */
  envList: readonly string[] | undefined;
  cmd: readonly string[] | null | undefined;
  /** True once CMD was set in this stage (ENTRYPOINT then keeps it). */
  cmdSet: boolean;
  entrypoint: readonly string[] | null | undefined;
  workdir: string;
  user: string;
  labels: Map<string, string>;
  exposed: Set<string>;
  volumes: Set<string>;
  stopSignal: string | undefined;
  healthcheck: HealthConfig | undefined;
  shell: readonly string[] | undefined;
  onBuild: string[];
  argsEscaped: boolean | undefined;
  diffIds: ImageConfig['rootfs']['diff_ids'];
  history: HistoryEntry[];
}

function splitEnv(entry: string): [string, string] {
  const i = entry.indexOf('=');
  return i < 0 ? [entry, ''] : [entry.slice(0, i), entry.slice(i + 1)];
}

/** Starts a stage from a base image config (or an empty one for scratch/unresolved bases). */
export function configFromImage(base: ImageConfig | undefined, platform: Platform): ConfigState {
  const c: ContainerConfig = base?.config ?? {};
  return {
    platform,
    author: base?.author,
    env: new Map((c.Env ?? []).map(splitEnv)),
    envList: undefined,
    cmd: c.Cmd,
    cmdSet: false,
    entrypoint: c.Entrypoint,
    workdir: c.WorkingDir ?? '',
    user: c.User ?? '',
    labels: new Map(Object.entries(c.Labels ?? {})),
    exposed: new Set(Object.keys(c.ExposedPorts ?? {})),
    volumes: new Set(Object.keys(c.Volumes ?? {})),
    stopSignal: c.StopSignal,
    healthcheck: c.Healthcheck,
    shell: c.Shell,
    onBuild: [...(c.OnBuild ?? [])],
    argsEscaped: c.ArgsEscaped,
    diffIds: base?.rootfs.diff_ids ?? [],
    history: [...(base?.history ?? [])],
  };
}

/** Copies a state (FROM <stage> continues from a copy of that stage's final config). */
export function cloneConfig(s: ConfigState): ConfigState {
  return {
    ...s,
    env: new Map(s.env),
    labels: new Map(s.labels),
    exposed: new Set(s.exposed),
    volumes: new Set(s.volumes),
    onBuild: [...s.onBuild],
    history: [...s.history],
    cmdSet: false,
  };
}

/** Sets an environment variable in place (Docker keeps the original position). */
export function setEnv(s: ConfigState, key: string, value: string): void {
  s.env.set(key, value);
  s.envList = undefined;
}

/** Looks up a variable of the image environment. */
export function getEnv(s: ConfigState, key: string): string | undefined {
  return s.env.get(key);
}

/** The environment as `KEY=VALUE` strings (cached until the next change). */
export function envStrings(s: ConfigState): readonly string[] {
  if (s.envList === undefined) s.envList = [...s.env].map(([k, v]) => `${k}=${v}`);
  return s.envList;
}

/** Applies one metadata edit. */
export function applyEdit(s: ConfigState, edit: ConfigEdit): void {
  switch (edit.kind) {
    case 'env':
      for (const [k, v] of edit.pairs) setEnv(s, k, v);
      return;
    case 'label':
      for (const [k, v] of edit.pairs) s.labels.set(k, v);
      return;
    case 'cmd':
      s.cmd = edit.cmd;
      s.cmdSet = true;
      return;
    case 'entrypoint':
      s.entrypoint = edit.entrypoint;
      if (!s.cmdSet) s.cmd = null;
      return;
    case 'expose':
      for (const p of edit.ports) s.exposed.add(p);
      return;
    case 'volume':
      for (const p of edit.paths) s.volumes.add(p);
      return;
    case 'user':
      s.user = edit.user;
      return;
    case 'workdir':
      s.workdir = edit.path;
      return;
    case 'stopsignal':
      s.stopSignal = edit.signal;
      return;
    case 'healthcheck': {
      const { kind: _k, test, ...rest } = edit;
      const hc: HealthConfig = {
        Test: test,
        ...(rest.interval === undefined ? {} : { Interval: rest.interval }),
        ...(rest.timeout === undefined ? {} : { Timeout: rest.timeout }),
        ...(rest.startPeriod === undefined ? {} : { StartPeriod: rest.startPeriod }),
        ...(rest.startInterval === undefined ? {} : { StartInterval: rest.startInterval }),
        ...(rest.retries === undefined ? {} : { Retries: rest.retries }),
      };
      s.healthcheck = hc;
      return;
    }
    case 'shell':
      s.shell = edit.shell;
      return;
    case 'onbuild':
      s.onBuild.push(edit.trigger);
      return;
    case 'maintainer':
      s.author = edit.author;
      return;
  }
}

function sortedObject<T>(keys: Iterable<string>, value: (k: string) => T): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k of [...keys].sort()) out[k] = value(k);
  return out;
}

/** The OCI image config of a state (map-like fields sorted by key, as Go's encoder does). */
export function toImageConfig(s: ConfigState): ImageConfig {
  const config: ContainerConfig = {
    ...(s.user === '' ? {} : { User: s.user }),
    ...(s.exposed.size === 0 ? {} : { ExposedPorts: sortedObject(s.exposed, () => ({})) }),
    ...(s.env.size === 0 ? {} : { Env: envStrings(s) }),
    ...(s.entrypoint === undefined ? {} : { Entrypoint: s.entrypoint }),
    ...(s.cmd === undefined ? {} : { Cmd: s.cmd }),
    ...(s.volumes.size === 0 ? {} : { Volumes: sortedObject(s.volumes, () => ({})) }),
    ...(s.workdir === '' ? {} : { WorkingDir: s.workdir }),
    ...(s.labels.size === 0 ? {} : { Labels: sortedObject(s.labels.keys(), (k) => s.labels.get(k) as string) }),
    ...(s.stopSignal === undefined ? {} : { StopSignal: s.stopSignal }),
    ...(s.argsEscaped === undefined ? {} : { ArgsEscaped: s.argsEscaped }),
    ...(s.healthcheck === undefined ? {} : { Healthcheck: s.healthcheck }),
    ...(s.onBuild.length === 0 ? {} : { OnBuild: s.onBuild }),
    ...(s.shell === undefined ? {} : { Shell: s.shell }),
  };
  return {
    ...(s.author === undefined ? {} : { author: s.author }),
    architecture: s.platform.architecture,
    os: s.platform.os,
    ...(s.platform.variant === undefined ? {} : { variant: s.platform.variant }),
    config,
    rootfs: { type: 'layers', diff_ids: s.diffIds },
    history: s.history,
  };
}
