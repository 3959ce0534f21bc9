import {
  isDigest, TsbuildError, type ContainerConfig, type Digest, type HistoryEntry, type ImageConfig, type Platform,
} from '../core/index.js';

/** A config for an image without layers for `platform` (what `FROM scratch` starts from). */
export function createEmptyConfig(platform: Platform, created?: string): ImageConfig {
  return {
    ...(created === undefined ? {} : { created }),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}

/** Returns `config` with one more layer (its diffID) and a history entry for it. */
export function addLayer(config: ImageConfig, diffId: Digest, history: Omit<HistoryEntry, 'empty_layer'> = {}): ImageConfig {
  return {
    ...config,
    rootfs: { type: 'layers', diff_ids: [...config.rootfs.diff_ids, diffId] },
    history: [...(config.history ?? []), history],
  };
}

/** Returns `config` with a history entry that adds no layer (ENV, CMD...). */
export function addEmptyHistory(config: ImageConfig, history: Omit<HistoryEntry, 'empty_layer'>): ImageConfig {
  return { ...config, history: [...(config.history ?? []), { ...history, empty_layer: true }] };
}

/** Returns `config` with its container config replaced by `edit(old)`. */
export function editContainerConfig(config: ImageConfig, edit: (c: ContainerConfig) => ContainerConfig): ImageConfig {
  return { ...config, config: edit(config.config ?? {}) };
}

/** The platform an image config is for. */
export function platformOfConfig(config: ImageConfig): Platform {
  return { os: config.os, architecture: config.architecture, ...(config.variant === undefined ? {} : { variant: config.variant }) };
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/**
 * Parses an image config document (OCI or Docker `container.image.v1`). Checks the fields tsbuild
 * relies on (architecture, os, rootfs.diff_ids) and keeps the rest as is. Throws `IMAGE_BAD_CONFIG`.
 */
export function parseImageConfig(doc: unknown, what = 'image config'): ImageConfig {
  const c = doc as Partial<ImageConfig> | null;
  const bad = (why: string): TsbuildError => new TsbuildError('IMAGE_BAD_CONFIG', `${what}: ${why}`);
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw bad('not a JSON object');
  if (typeof c.architecture !== 'string' || typeof c.os !== 'string') throw bad('architecture and os must be strings');
  const rootfs = c.rootfs as { type?: unknown; diff_ids?: unknown } | undefined;
  if (rootfs === undefined || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids) || !rootfs.diff_ids.every(isDigest)) {
    throw bad('rootfs must be {"type":"layers","diff_ids":[sha256 digests]}');
  }
  if (c.history !== undefined && !Array.isArray(c.history)) throw bad('history must be a list');
  const cc = c.config as Record<string, unknown> | undefined | null;
  if (cc !== undefined && cc !== null) {
    for (const k of ['Env', 'Entrypoint', 'Cmd'] as const) {
      if (cc[k] !== undefined && cc[k] !== null && !isStringArray(cc[k])) throw bad(`config.${k} must be a list of strings`);
    }
  }
  return c as ImageConfig;
}
