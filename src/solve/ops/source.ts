import { formatReference, isTsbuildError, MediaType, parseReference, TsbuildError, type Digest, type EventSink, type Platform } from '../../core/index.js';
import { formatPlatform, parseImageConfig, parseImageDocument, platformMatches, selectPlatform } from '../../image/index.js';
import type { HttpRegistryClient } from '../../registry/index.js';
import { resolveImage, type ResolvedImage, type Store } from '../../store/index.js';
import type { FsState, LayerRef, ResolvedBase } from '../types.js';

/** How base images missing from the store are pulled (the CLI owns and closes the client). */
export interface BasePuller {
  /** The registry client, or a function opening it on first use (a build whose bases are all in the store never loads the registry code). */
  readonly client: HttpRegistryClient | (() => Promise<HttpRegistryClient>);
  /** `--pull`: pull every base image named by a tag even when the store has it. */
  readonly always: boolean;
  /** Parallel blob downloads (default 4). */
  readonly concurrency?: number;
  /** Progress: `info` lines and `transfer` events of the pull. */
  readonly events?: EventSink;
  readonly signal?: AbortSignal;
}

/**
 * Resolves a base image named by a Dockerfile (`FROM busybox`, `COPY --from=alpine:3`), selecting
 * `platform` from an index. An image missing from the store (or any image named by a tag, with
 * `puller.always`) is pulled from its registry first; without a puller a missing image fails with
 * STORE_IMAGE_NOT_FOUND naming `tsbuild pull`. A tag whose local image is for another platform is
 * pulled again for `platform` (the tag then names that platform's image, as `docker pull
 * --platform` does); when that is not possible it fails with IMAGE_PLATFORM_MISMATCH. Throws REG_*
 * for pull failures, IMAGE_* for bad documents.
 */
export async function resolveBaseImage(store: Store, ref: string, platform: Platform, puller?: BasePuller): Promise<ResolvedBase> {
  const found = await findOrPull(store, ref, platform, puller, false);
  const base = await readBase(store, ref, found.image, platform);
  if (platformMatches(base.config, platform)) return base;
  const have = formatPlatform({ os: base.config.os, architecture: base.config.architecture, ...(base.config.variant === undefined ? {} : { variant: base.config.variant }) });
  const mismatch = (cause?: unknown): TsbuildError => new TsbuildError('IMAGE_PLATFORM_MISMATCH', `base image ${ref} is for ${have}, the build needs ${formatPlatform(platform)}`, {
    hint: `pull that platform first: tsbuild pull --platform ${formatPlatform(platform)} ${ref}`,
    ...(cause === undefined ? {} : { cause }),
  });
  const parsed = parseReference(ref);
  if (parsed.tag === undefined) throw mismatch();
  // The other platform of a pulled multi-platform image may be in the store already (a cross or
  // multi-platform build): it is used without the registry, and the tag stays as the user left it.
  const { findPulledPlatform } = await import('../../registry/index.js');
  const pulledOther = found.pulled ? undefined : await findPulledPlatform(store, formatReference(parsed), platform);
  if (pulledOther !== undefined) {
    const local = await readBase(store, ref, { ...found.image, descriptor: pulledOther }, platform);
    if (platformMatches(local.config, platform)) return local;
  }
  if (puller === undefined || found.pulled) throw mismatch();
  let again: Found;
  try {
    again = await findOrPull(store, ref, platform, puller, true);
  } catch (err) {
    throw isTsbuildError(err) && err.code.startsWith('REG_') ? mismatch(err) : err;
  }
  const other = await readBase(store, ref, again.image, platform);
  if (!platformMatches(other.config, platform)) throw mismatch();
  return other;
}

/** The image as the store holds it: manifest (from an index, `platform`'s) and config. */
async function readBase(store: Store, ref: string, found: ResolvedImage, platform: Platform): Promise<ResolvedBase> {
  let descriptor = found.descriptor;
  let doc = parseImageDocument((await store.blobs.readJson(descriptor.digest)).value, descriptor.mediaType, `manifest of ${ref}`);
  if (doc.kind === 'index') {
    descriptor = selectPlatform(doc.index, platform);
    doc = parseImageDocument((await store.blobs.readJson(descriptor.digest)).value, descriptor.mediaType, `manifest of ${ref}`);
    if (doc.kind !== 'manifest') throw new TsbuildError('IMAGE_BAD_MANIFEST', `the index of ${ref} points at another index`);
  }
  const manifest = doc.manifest;
  const config = parseImageConfig((await store.blobs.readJson(manifest.config.digest)).value, `config of ${ref}`);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new TsbuildError('IMAGE_BAD_CONFIG', `${ref}: the config lists ${config.rootfs.diff_ids.length} diffIDs for ${manifest.layers.length} layers`);
  }
  return { ref, manifestDigest: descriptor.digest as Digest, manifest, config };
}

interface Found {
  readonly image: ResolvedImage;
  /** True when this call pulled it. */
  readonly pulled: boolean;
}

/** The image in the store, pulled first when missing (or always, with `puller.always` or `force`, when named by a tag). */
async function findOrPull(store: Store, ref: string, platform: Platform, puller: BasePuller | undefined, force: boolean): Promise<Found> {
  const parsed = parseReference(ref);
  if (puller === undefined || !(puller.always || force) || parsed.tag === undefined) {
    try {
      return { image: await resolveImage(store, ref), pulled: false };
    } catch (err) {
      if (!isTsbuildError(err, 'STORE_IMAGE_NOT_FOUND')) throw err;
      if (puller === undefined) {
        throw new TsbuildError('STORE_IMAGE_NOT_FOUND', `base image "${ref}" is not in the local store`, { hint: `run "tsbuild pull ${ref}" first`, cause: err });
      }
    }
  }
  const events = puller.events ?? (() => undefined);
  const name = formatReference(parsed);
  events({ type: 'info', message: `pulling ${name} (${formatPlatform(platform)})` });
  let r;
  try {
    const [{ pullImage }, client] = await Promise.all([import('../../registry/index.js'), typeof puller.client === 'function' ? puller.client() : puller.client]);
    r = await pullImage(client, store, parsed, {
      platform,
      concurrency: puller.concurrency ?? 4,
      onEvent: throttledTransfers(events),
      ...(puller.signal === undefined ? {} : { signal: puller.signal }),
    });
  } catch (err) {
    // Same code and hint, with the base image named (the registry's message alone may not say it).
    if (!isTsbuildError(err)) throw err;
    throw new TsbuildError(err.code, `pulling base image ${name}: ${err.message}`, { cause: err, exitCode: err.exitCode, ...(err.hint === undefined ? {} : { hint: err.hint }) });
  }
  events({ type: 'info', message: `pulled ${name}: digest ${r.repoDigest} (${r.downloaded} blobs downloaded, ${r.present} present)` });
  return { image: await resolveImage(store, r.name), pulled: true };
}

/** Forwards events, but byte progress of a transfer only every tenth of its size (and its end). */
function throttledTransfers(events: EventSink): EventSink {
  const last = new Map<string, number>();
  return (e) => {
    if (e.type === 'transfer' && e.total !== undefined && e.current < e.total) {
      const before = last.get(e.id) ?? 0;
      if (e.current - before < e.total / 10) return;
      last.set(e.id, e.current);
    }
    events(e);
  };
}

/** The file system state of a base image: its layers with their diffIDs. */
export function baseImageState(base: ResolvedBase): FsState {
  const layers: LayerRef[] = base.manifest.layers.map((d, i) => ({
    diffId: base.config.rootfs.diff_ids[i] as Digest,
    digest: d.digest,
    size: d.size,
    mediaType: d.mediaType,
  }));
  return { layers };
}

/** The empty state of `FROM scratch`. */
export const SCRATCH_STATE: FsState = { layers: [] };

/** The media type of the uncompressed layers a build writes. */
export const BUILD_LAYER_MEDIA_TYPE = MediaType.ociLayer;
