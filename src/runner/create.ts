import { join } from 'node:path';
import type { CompressionTools } from '../layer/index.js';
import type { MountSpec, ResourcesSpec } from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import type { Store } from '../store/index.js';
import { resolveProcess, type ProcessFlags } from './container-config.js';
import type { ContainerRecord, ContainerStore } from './container-store.js';
import { newContainerId, shortContainerId } from './ids.js';
import { prepareImage } from './image-root.js';
import { containerPortFields, type PortBinding } from './ports.js';
import type { ContainerNetwork } from './network-slirp.js';
import { snapshotKeyOf } from './runner.js';
import { readSnapshotFile, resolveSnapshotUser } from './snapshot-user.js';
import type { RestartPolicy } from './restart.js';
import { INIT_PATH } from './runner.js';
import { resolveHealthcheck, type HealthcheckSpec, type HealthFlags } from './health.js';
import { resolveGroupAdd, runOptionFields, type ContainerRunOptions } from './run-options.js';
import { imageVolumeRequests, layersOfMounts, normalizeDestination, seedVolume, volumeMount, VolumeStore, type AttachedVolume, type VolumeRequest } from './volumes.js';

/** What `docker create` / `run` decide besides the process. */
export interface CreateContainerOptions {
  readonly image: string;
  readonly name?: string;
  readonly process: ProcessFlags;
  readonly hostname?: string;
  /** `--network`, as resolved for this machine (resolveContainerNetwork). */
  readonly network: ContainerNetwork;
  readonly capAdd: readonly string[];
  readonly capDrop: readonly string[];
  readonly mounts: readonly MountSpec[];
  readonly resources?: ResourcesSpec;
  readonly readonlyRootfs: boolean;
  readonly autoRemove: boolean;
  /** Seconds from the stop signal to SIGKILL (default 10, as docker). */
  readonly stopTimeout?: number;
  /** `-p` bindings and `-P` (every exposed port of the image on a free host port). */
  readonly ports?: readonly PortBinding[];
  readonly publishAll?: boolean;
  /** Named (`-v NAME:/path`) and anonymous (`-v /path`) volumes; the image's VOLUME paths not mounted otherwise get anonymous ones. */
  readonly volumes?: readonly VolumeRequest[];
  /** `--restart` (default no). */
  readonly restartPolicy?: RestartPolicy;
  /** `--health-*` and `--no-healthcheck` over the image's HEALTHCHECK. */
  readonly health?: HealthFlags;
  /** `--init`: the host path of the init binary (build/tsbuild-init), mounted at INIT_PATH. */
  readonly initPath?: string;
  /** `-t`: run the process on a pseudo-terminal. */
  readonly tty?: boolean;
  /** `--label`/`--label-file`: merged over the image's labels. */
  readonly labels?: Readonly<Record<string, string>>;
  /** `--expose`: port keys (`80/tcp`) added to the image's exposed ports (so `-P` publishes them). */
  readonly expose?: readonly string[];
  /** `--add-host`, `--dns*`, `--ulimit`, `--group-add`, `--shm-size`, `--security-opt`. */
  readonly runOptions?: ContainerRunOptions;
}

/** What creating a container touches. */
export interface CreateDeps {
  readonly store: Store;
  readonly containers: ContainerStore;
  readonly snapshotter: Snapshotter;
  readonly compressionTools: CompressionTools;
  /** True when not root: volumes seeded from the image keep no owners. */
  readonly rootless?: boolean;
}

/**
 * One turn of the event loop. Creating a container reads and writes its small files synchronously; in a
 * foreground `run` the sandbox starts meanwhile (Sandbox.prestart: the launcher's messages, cgroup moves,
 * slirp4netns), and its steps wait for this thread: without these turns they waited for the whole create
 * (~6 ms), which made the run longer than with the slower asynchronous create.
 */
function breathe(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Creates a container: resolves the image (its layers unpacked once as committed snapshots),
 * reserves the name, prepares the writable layer (a fresh active snapshot over the image's chain),
 * resolves the user in the image, and writes config.json + state.json (`created`). On any error
 * nothing is left behind. Throws STORE_IMAGE_NOT_FOUND, RUN_NAME_IN_USE, RUN_NO_COMMAND, SANDBOX_* (user).
 */
export async function createContainer(deps: CreateDeps, o: CreateContainerOptions, signal?: AbortSignal): Promise<ContainerRecord> {
  // The compression tools only when a layer must be unpacked (openContainerDeps looks them up on first use).
  const image = await prepareImage(deps.store, deps.snapshotter, o.image, () => deps.compressionTools, signal);
  await breathe();
  const proc = resolveProcess(image.config.config, o.process);
  const id = newContainerId();
  const name = await deps.containers.claimName(id, o.name);
  const key = snapshotKeyOf(id);
  let prepared = false;
  const volumeStore = new VolumeStore(join(deps.store.paths.root, 'volumes'));
  const made: string[] = [];
  try {
    await deps.snapshotter.prepare(key, image.chain, { persistent: true });
    prepared = true;
    await breathe();
    const requests = [...(o.volumes ?? [])];
    requests.push(...imageVolumeRequests(image.config.config?.Volumes, [...o.mounts.map((m) => m.destination), ...requests.map((r) => r.destination)]));
    const volumes: AttachedVolume[] = [];
    for (const r of requests) {
      const isNew = r.name === undefined || (await volumeStore.inspect(r.name)) === undefined;
      const v = await volumeStore.create(r.name);
      if (isNew) made.push(v.Name);
      volumes.push({ name: v.Name, destination: normalizeDestination(r.destination), readonly: r.readonly, anonymous: r.name === undefined });
      if (r.noCopy !== true) await seedVolume(layersOfMounts((await deps.snapshotter.open(key)).mounts()), r.destination, v.Mountpoint, deps.rootless !== true);
    }
    const user = await resolveSnapshotUser(deps.snapshotter, key, proc.userText);
    await breathe();
    // --group-add names resolve against the image's /etc/group (as docker), gids as given.
    const groupAdd = o.runOptions?.groupAdd ?? [];
    if (groupAdd.length > 0) {
      const extra = resolveGroupAdd(groupAdd, await readSnapshotFile(deps.snapshotter, key, '/etc/group'));
      user.additionalGids = [...new Set([...user.additionalGids, ...extra])];
    }
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
      network: o.network.mode,
      ...(o.network.slirp === undefined || Object.keys(o.network.slirp).length === 0 ? {} : { slirpOptions: o.network.slirp }),
      capAdd: o.capAdd,
      capDrop: o.capDrop,
      mounts: [
        ...o.mounts,
        ...volumes.map((v) => volumeMount(volumeStore, v)),
        ...(o.initPath === undefined ? [] : [{ destination: INIT_PATH, type: 'bind', source: o.initPath, options: ['bind', 'ro', 'rprivate'] }]),
      ],
      ...(o.initPath === undefined ? {} : { init: true }),
      ...(o.tty === true ? { tty: true } : {}),
      volumes,
      ...healthcheckField(resolveHealthcheck(image.config.config?.Healthcheck, o.health ?? {})),
      ...(o.restartPolicy === undefined || o.restartPolicy.Name === 'no' ? {} : { restartPolicy: o.restartPolicy }),
      resources: o.resources,
      readonlyRootfs: o.readonlyRootfs,
      stopSignal: proc.stopSignal,
      stopTimeout: o.stopTimeout ?? 10,
      autoRemove: o.autoRemove,
      labels: { ...(image.config.config?.Labels ?? {}), ...(o.labels ?? {}) },
      ...containerPortFields({ ...(image.config.config?.ExposedPorts ?? {}), ...Object.fromEntries((o.expose ?? []).map((k) => [k, {}])) }, o.ports ?? [], o.publishAll ?? false),
      ...runOptionFields(o.runOptions ?? {}),
    };
    await deps.containers.create(record);
    await breathe();
    return record;
  } catch (err) {
    if (prepared) await deps.snapshotter.remove(key).catch(() => undefined);
    for (const n of made) if (n !== '') await volumeStore.remove(n).catch(() => undefined);
    await deps.containers.releaseName(id, name).catch(() => undefined);
    throw err;
  }
}

function healthcheckField(spec: HealthcheckSpec | undefined): { healthcheck?: HealthcheckSpec } {
  return spec === undefined ? {} : { healthcheck: spec };
}
