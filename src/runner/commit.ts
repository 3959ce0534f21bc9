import { MediaType, TsbuildError, formatReference, parseReference, type ContainerConfig, type Descriptor, type Digest, type ImageConfig, type ImageManifest } from '../core/index.js';
import { addLayer, applyChanges, createManifest, parseImageConfig, parseImageDocument, platformFromNode, selectPlatform, serializeDocument } from '../image/index.js';
import { packLayer } from '../layer/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import { acquireLease, resolveImage, type Store } from '../store/index.js';
import type { ContainerEntry, ContainerRecord, ContainerStore } from './container-store.js';
import { isContainerPaused, openContainerCgroup } from './pause.js';
import { isContainerRunning } from './runner.js';

/** What `commit` touches. */
export interface CommitDeps {
  readonly store: Store;
  readonly containers: ContainerStore;
  readonly snapshotter: Snapshotter;
  readonly rootless: boolean;
}

/** The flags of `docker commit`. */
export interface CommitOptions {
  /** `REPOSITORY[:TAG]`; undefined: an untagged image. */
  readonly reference?: string;
  /** `-c` Dockerfile instructions applied to the config (CMD, ENV, LABEL, ...). */
  readonly changes: readonly string[];
  readonly message?: string;
  readonly author?: string;
  /** Freeze a running container while its writable layer is packed (default true, as docker). */
  readonly pause: boolean;
  /** ISO 8601 creation time. */
  readonly created: string;
}

/** What committing produced. */
export interface CommitResult {
  /** The new image's ID (config digest). */
  readonly id: Digest;
  readonly manifest: Descriptor;
}

/** The manifest and config of the image a container was created from (by name, else by its image ID). */
async function loadContainerImage(store: Store, record: ContainerRecord): Promise<{ manifest: ImageManifest; config: ImageConfig }> {
  for (const text of [record.image, record.imageId]) {
    let resolved;
    try {
      resolved = await resolveImage(store, text);
    } catch (err) {
      if (err instanceof TsbuildError && (err.code === 'STORE_IMAGE_NOT_FOUND' || err.code === 'STORE_AMBIGUOUS_ID')) continue;
      throw err;
    }
    let doc = parseImageDocument((await store.blobs.readJson(resolved.descriptor.digest)).value, resolved.descriptor.mediaType, `manifest ${resolved.descriptor.digest}`);
    if (doc.kind === 'index') {
      const d = selectPlatform(doc.index, platformFromNode(process.platform, process.arch));
      doc = parseImageDocument((await store.blobs.readJson(d.digest)).value, d.mediaType, `manifest ${d.digest}`);
    }
    if (doc.kind !== 'manifest' || doc.manifest.config.digest !== record.imageId) continue;
    const config = parseImageConfig((await store.blobs.readJson(doc.manifest.config.digest)).value, `config ${doc.manifest.config.digest}`);
    return { manifest: doc.manifest, config };
  }
  throw new TsbuildError('RUN_IMAGE_GONE', `the image ${record.imageId} of container ${record.id.slice(0, 12)} is no longer in the store`, { exitCode: 1 });
}

/** A layer descriptor with its Docker media type mapped to OCI's (the committed manifest is OCI). */
function asOciLayer(d: Descriptor): Descriptor {
  if (d.mediaType === MediaType.dockerLayerGzip) return { ...d, mediaType: MediaType.ociLayerGzip };
  if (d.mediaType === 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip') return { ...d, mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip' };
  return d;
}

/** The container's process settings as the new image's config (docker commits the run's env, command, user and workdir). */
function containerConfigOf(record: ContainerRecord, base: ContainerConfig): ContainerConfig {
  const baseEnv = base.Env ?? [];
  // HOME is derived from the user at create time: committed only when the image set it.
  const env = record.env.filter((e) => !e.startsWith('HOME=') || baseEnv.some((b) => b.startsWith('HOME=')));
  const out: ContainerConfig = { ...base, Env: env, Cmd: [...record.cmd] };
  const withEntrypoint: ContainerConfig = record.entrypoint.length > 0 ? { ...out, Entrypoint: [...record.entrypoint] } : { ...out, Entrypoint: undefined };
  const user = record.userText === 'root' && (base.User === undefined || base.User === '') ? base.User : record.userText;
  const workdir = record.cwd === '/' && (base.WorkingDir === undefined || base.WorkingDir === '') ? base.WorkingDir : record.cwd;
  const result: Record<string, unknown> = { ...withEntrypoint, User: user, WorkingDir: workdir };
  for (const k of Object.keys(result)) if (result[k] === undefined) delete result[k];
  return result as ContainerConfig;
}

/**
 * Makes an image of a container, as `docker commit`: its writable layer (the overlay upperdir, a
 * change set with whiteouts) becomes one more layer on its image, the config takes the container's
 * env, command, user and workdir, then the `-c` changes, and a history entry records it. A running
 * container is frozen while its layer is packed (when it has a cgroup). Throws RUN_IMAGE_GONE,
 * IMAGE_BAD_CHANGE, REF_* for a bad reference.
 */
export async function commitContainer(deps: CommitDeps, entry: ContainerEntry, options: CommitOptions, signal?: AbortSignal): Promise<CommitResult> {
  const record = entry.config;
  const target = options.reference === undefined ? undefined : parseReference(options.reference);
  if (target?.digest !== undefined) throw new TsbuildError('CLI_BAD_VALUE', `cannot commit to a digest reference "${options.reference as string}"`, { exitCode: 125 });
  const image = await loadContainerImage(deps.store, record);
  const lease = await acquireLease(deps.store);
  let thaw: (() => Promise<void>) | undefined;
  try {
    if (options.pause && isContainerRunning(entry.state) && !isContainerPaused(entry)) {
      // A container without a cgroup (rootless without cgroup v2 delegation) cannot be frozen: committed as it runs.
      const opened = await openContainerCgroup(deps, entry, 'pause (for commit)').catch((err: unknown) => {
        if (err instanceof TsbuildError && (err.code === 'RUN_NO_CGROUP' || err.code === 'RUN_NOT_RUNNING')) return undefined;
        throw err;
      });
      if (opened !== undefined) {
        await opened.cgroup.freeze();
        thaw = () => opened.cgroup.thaw();
      }
    }
    const diff = await deps.snapshotter.diff(record.snapshotKey);
    let layer: { digest: Digest; size: number };
    try {
      const packed = packLayer(diff.dir, { mode: diff.mode });
      const blob = await deps.store.blobs.put(packed.stream, undefined, signal === undefined ? {} : { signal });
      const result = await packed.done;
      if (result.diffId !== blob.digest) throw new TsbuildError('INTERNAL', `layer blob ${blob.digest} does not match its diffID ${result.diffId}`);
      layer = { digest: blob.digest, size: blob.size };
    } finally {
      await diff.release();
      await thaw?.();
      thaw = undefined;
    }
    let config: ImageConfig = { ...image.config, created: options.created, config: containerConfigOf(record, image.config.config ?? {}) };
    if (options.author !== undefined) config = { ...config, author: options.author };
    config = addLayer(config, layer.digest, {
      created: options.created,
      created_by: record.args.join(' '),
      ...(options.author === undefined ? {} : { author: options.author }),
      ...(options.message === undefined ? {} : { comment: options.message }),
    });
    config = applyChanges(config, options.changes);
    const configBlob = await deps.store.blobs.putBytes(serializeDocument(config));
    const manifest = createManifest(
      { mediaType: MediaType.ociConfig, digest: configBlob.digest, size: configBlob.size },
      [...image.manifest.layers.map(asOciLayer), { mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }],
    );
    const m = await deps.store.blobs.putBytes(serializeDocument(manifest));
    const descriptor: Descriptor = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
    if (target === undefined) await deps.store.refs.addUntagged(descriptor);
    else await deps.store.refs.set(formatReference(target), descriptor);
    return { id: configBlob.digest, manifest: descriptor };
  } finally {
    await thaw?.();
    await lease.release();
  }
}
