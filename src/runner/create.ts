import type { CompressionTools } from '../layer/index.js';
import type { MountSpec, NetworkMode, ResourcesSpec } from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import type { Store } from '../store/index.js';
import { resolveProcess, type ProcessFlags } from './container-config.js';
import type { ContainerRecord, ContainerStore } from './container-store.js';
import { newContainerId, shortContainerId } from './ids.js';
import { prepareImage } from './image-root.js';
import { resolveSnapshotUser, snapshotKeyOf } from './runner.js';

/** What `docker create` / `run` decide besides the process. */
export interface CreateContainerOptions {
  readonly image: string;
  readonly name?: string;
  readonly process: ProcessFlags;
  readonly hostname?: string;
  readonly network: NetworkMode;
  readonly capAdd: readonly string[];
  readonly capDrop: readonly string[];
  readonly mounts: readonly MountSpec[];
  readonly resources?: ResourcesSpec;
  readonly readonlyRootfs: boolean;
  readonly autoRemove: boolean;
  /** Seconds from the stop signal to SIGKILL (default 10, as docker). */
  readonly stopTimeout?: number;
}

/** What creating a container touches. */
export interface CreateDeps {
  readonly store: Store;
  readonly containers: ContainerStore;
  readonly snapshotter: Snapshotter;
  readonly compressionTools: CompressionTools;
}

/**
 * Creates a container: resolves the image (its layers unpacked once as committed snapshots),
 * reserves the name, prepares the writable layer (a fresh active snapshot over the image's chain),
 * resolves the user in the image, and writes config.json + state.json (`created`). On any error
 * nothing is left behind. Throws STORE_IMAGE_NOT_FOUND, RUN_NAME_IN_USE, RUN_NO_COMMAND, SANDBOX_* (user).
 */
export async function createContainer(deps: CreateDeps, o: CreateContainerOptions, signal?: AbortSignal): Promise<ContainerRecord> {
  const image = await prepareImage(deps.store, deps.snapshotter, o.image, deps.compressionTools, signal);
  const proc = resolveProcess(image.config.config, o.process);
  const id = newContainerId();
  const name = await deps.containers.claimName(id, o.name);
  const key = snapshotKeyOf(id);
  let prepared = false;
  try {
    await deps.snapshotter.prepare(key, image.chain, { persistent: true });
    prepared = true;
    const user = await resolveSnapshotUser(deps.snapshotter, key, proc.userText);
    const env = proc.env.some((e) => e.startsWith('HOME=')) ? proc.env : [...proc.env, `HOME=${user.home ?? '/'}`];
    const record: ContainerRecord = {
      id,
      name,
      created: new Date().toISOString(),
      image: o.image,
      imageId: image.id,
      imageChain: image.chain,
      snapshotKey: key,
      args: proc.args,
      entrypoint: proc.entrypoint,
      cmd: proc.cmd,
      env,
      cwd: proc.cwd,
      userText: proc.userText,
      user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
      hostname: o.hostname ?? shortContainerId(id),
      network: o.network,
      capAdd: o.capAdd,
      capDrop: o.capDrop,
      mounts: o.mounts,
      resources: o.resources,
      readonlyRootfs: o.readonlyRootfs,
      stopSignal: proc.stopSignal,
      stopTimeout: o.stopTimeout ?? 10,
      autoRemove: o.autoRemove,
      labels: image.config.config?.Labels ?? {},
    };
    await deps.containers.create(record);
    return record;
  } catch (err) {
    if (prepared) await deps.snapshotter.remove(key).catch(() => undefined);
    await deps.containers.releaseName(id, name).catch(() => undefined);
    throw err;
  }
}
