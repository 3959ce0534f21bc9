import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TsbuildError, type Digest } from '../core/index.js';
import type { MountSpec, ProcessUser, ResourcesSpec } from '../sandbox/index.js';
import { removeDirTreeSync } from '../snapshot/index.js';
import type { ContainerNetworkMode, SlirpOptions } from './network-slirp.js';
import { generateContainerName, isValidContainerName } from './ids.js';
import type { PortBinding } from './ports.js';
import type { AttachedVolume } from './volumes.js';
import type { RestartPolicy } from './restart.js';
import type { HealthcheckSpec } from './health.js';
import { isProcessAlive } from './process-info.js';
import type { ContainerRunOptions } from './run-options.js';
import { randomHex, renameInPool } from '../sys/index.js';

/** Docker's zero time, used for times that have not happened yet. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';

/** What a container runs and how: fixed at create time, stored as `config.json`. */
export interface ContainerRecord extends ContainerRunOptions {
  readonly id: string;
  readonly name: string;
  /** ISO 8601. */
  readonly created: string;
  /** The image as the user typed it. */
  readonly image: string;
  /** The image ID (config digest). */
  readonly imageId: Digest;
  /** The committed snapshot (chain ID) under the container's writable layer; undefined for an empty image. */
  readonly imageChain: Digest | undefined;
  /** The active snapshot key of the writable layer. */
  readonly snapshotKey: string;
  readonly args: readonly string[];
  /** The effective ENTRYPOINT and CMD (`args` is their concatenation). */
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly env: readonly string[];
  readonly cwd: string;
  /** The user as written (`USER`/`-u`), and resolved to numeric ids. */
  readonly userText: string;
  readonly user: ProcessUser;
  readonly hostname: string;
  /** `--network`: records written before slirp4netns say `none` for the private namespace with only lo. */
  readonly network: ContainerNetworkMode;
  /** The options of `--network slirp4netns:...` (absent: the defaults). */
  readonly slirpOptions?: SlirpOptions;
  readonly capAdd: readonly string[];
  readonly capDrop: readonly string[];
  readonly mounts: readonly MountSpec[];
  readonly resources: ResourcesSpec | undefined;
  readonly readonlyRootfs: boolean;
  readonly stopSignal: string;
  /** Seconds between the stop signal and SIGKILL. */
  readonly stopTimeout: number;
  readonly autoRemove: boolean;
  readonly labels: Readonly<Record<string, string>>;
  /** `-p` bindings (absent in records written before published ports). */
  readonly portBindings?: readonly PortBinding[];
  /** `-P`: every exposed port is published on a free host port at each start. */
  readonly publishAllPorts?: boolean;
  /** The image's ExposedPorts plus the `-p` container ports, as sorted `PORT/PROTO` keys. */
  readonly exposedPorts?: readonly string[];
  /** Volumes mounted (their binds are among `mounts`; absent in records written before volumes). */
  readonly volumes?: readonly AttachedVolume[];
  /** `--restart` (absent: no). */
  readonly restartPolicy?: RestartPolicy;
  /** The effective healthcheck (image HEALTHCHECK and `--health-*`); absent: none. */
  readonly healthcheck?: HealthcheckSpec;
  /** `--init`: the init binary (bind-mounted among `mounts` at INIT_PATH) runs as PID 1 before `args`. */
  readonly init?: boolean;
  /** `-t`: the process runs on a pseudo-terminal of the container's devpts (its output is the log's stdout); absent: false. */
  readonly tty?: boolean;
}

/** The lifecycle status as docker names it. */
export type ContainerStatus = 'created' | 'running' | 'restarting' | 'exited' | 'removing' | 'dead';

/** The mutable run state, stored as `state.json` (always replaced atomically). */
export interface ContainerState {
  readonly status: ContainerStatus;
  /** Host pid of the container's first process (0 when not running) and its start time (pid reuse guard). */
  readonly pid: number;
  readonly pidStartTime: string;
  /** Pid and start time of the process that owns the container (monitor, or the CLI in the foreground). */
  readonly monitorPid: number;
  readonly monitorStartTime: string;
  readonly exitCode: number;
  readonly oomKilled: boolean;
  readonly error: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  /** Restarts done by the restart policy since the last start (absent: 0). */
  readonly restartCount?: number;
}

/** The state of a container that never ran. */
export function createdState(): ContainerState {
  return { status: 'created', pid: 0, pidStartTime: '', monitorPid: 0, monitorStartTime: '', exitCode: 0, oomKilled: false, error: '', startedAt: ZERO_TIME, finishedAt: ZERO_TIME };
}

/** A container as read from disk. */
export interface ContainerEntry {
  readonly config: ContainerRecord;
  readonly state: ContainerState;
}

const ID_RE = /^[0-9a-f]{64}$/;

/**
 * The target of container `id`'s name link: the id's 32 bytes in base64url (43 characters). ext4 keeps a
 * target shorter than 60 bytes in the inode, where the 64 hex digits needed a data block of their own, whose
 * allocation and release (a synchronous discard on some disks) cost ~0.3 ms of each run's create and removal.
 */
export function nameLinkTarget(id: string): string {
  return Buffer.from(id, 'hex').toString('base64url');
}

/** The container id a name link's target names (base64url, or the hex id earlier versions wrote), or undefined. */
export function idOfNameLink(target: string | undefined): string | undefined {
  if (target === undefined) return undefined;
  if (ID_RE.test(target)) return target;
  if (!/^[A-Za-z0-9_-]{43}$/.test(target)) return undefined;
  const id = Buffer.from(target, 'base64url').toString('hex');
  return ID_RE.test(id) ? id : undefined;
}

/**
 * Containers under `<store>/containers/`: `<id>/config.json`, `<id>/state.json`, `<id>/<id>-json.log`,
 * and `names/<name>` symlinks to ids ({@link nameLinkTarget}; a symlink is created atomically, so names are unique).
 * Errors are TsbuildErrors `RUN_*`. The files are small and the callers wait for them: they are read
 * and written synchronously (a thread-pool round trip per call costs more than the call itself), except
 * the rename that replaces state.json (see {@link ContainerStore.writeState}).
 */
export class ContainerStore {
  readonly #root: string;

  /** `root` is the store's containers directory. */
  constructor(root: string) {
    this.#root = root;
  }

  /** The directory of container `id`. */
  dirOf(id: string): string {
    return join(this.#root, id);
  }

  /** The JSON-lines log file of container `id`. */
  logPathOf(id: string): string {
    return join(this.#root, id, `${id}-json.log`);
  }

  /**
   * Reserves `name` (or a generated one) for `id`; throws RUN_NAME_IN_USE / RUN_BAD_NAME.
   * Returns the name without a leading `/`.
   */
  async claimName(id: string, name: string | undefined): Promise<string> {
    if (name !== undefined) {
      if (!isValidContainerName(name)) {
        throw new TsbuildError('RUN_BAD_NAME', `invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`, { exitCode: 125 });
      }
      const n = name.replace(/^\//, '');
      this.#dropStaleName(n);
      try {
        this.#link(id, n);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(`cannot reserve the container name ${n}`, err);
        const owner = this.#nameOwner(n) ?? '?';
        throw new TsbuildError('RUN_NAME_IN_USE', `the container name "/${n}" is already in use by container "${owner}"`, {
          hint: 'remove (or rename) that container to be able to reuse that name', exitCode: 125,
        });
      }
      return n;
    }
    for (let i = 0; ; i++) {
      const n = i < 10 ? generateContainerName() : `${generateContainerName()}${i}`;
      try {
        this.#link(id, n);
        return n;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || i > 100) throw ioError('cannot reserve a container name', err);
      }
    }
  }

  /** Creates the name link `names/<n>` -> `id` (EEXIST when taken); `names/` is made by the first one. */
  #link(id: string, n: string): void {
    const link = join(this.#root, 'names', n);
    try {
      symlinkSync(nameLinkTarget(id), link);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      mkdirSync(join(this.#root, 'names'), { recursive: true });
      symlinkSync(nameLinkTarget(id), link);
    }
  }

  /** The id the name `n` points at (undefined: no such name, or a link that names no id). */
  #nameOwner(n: string): string | undefined {
    return idOfNameLink(readlinkOrUndefined(join(this.#root, 'names', n)));
  }

  /** Removes the name `n` when it points at no container for more than a minute (a create that crashed midway). */
  #dropStaleName(n: string): void {
    const link = join(this.#root, 'names', n);
    let info;
    try {
      info = lstatSync(link, { throwIfNoEntry: false });
    } catch {
      return;
    }
    if (info === undefined || Date.now() - info.mtimeMs < 60_000) return;
    const id = this.#nameOwner(n) ?? '';
    try {
      statSync(join(this.dirOf(id), 'config.json'));
      return;
    } catch {
      // no container behind the name
    }
    try {
      unlinkSync(link);
    } catch {
      // gone meanwhile
    }
  }

  /**
   * Writes the config and the initial state of a new container (its name already claimed). The directory
   * is new, so both are written in place: a reader that meets either half-written takes the container
   * for half-created (as before its state.json exists), which it is.
   */
  async create(config: ContainerRecord): Promise<void> {
    const dir = this.dirOf(config.id);
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
      writeFileSync(join(dir, 'state.json'), `${JSON.stringify(createdState(), null, 2)}\n`);
    } catch (err) {
      throw ioError(`cannot write the files of container ${config.id.slice(0, 12)}`, err);
    }
  }

  /**
   * Replaces `state.json` atomically: written to a temporary file (synchronously: a new small file), then
   * renamed over it on libuv's threads: replacing a file frees its blocks, which on an ext4 mounted with
   * `discard` trims them inside the rename (0.3 ms typical, several ms at times), and a monitor forwards
   * output meanwhile.
   */
  async writeState(id: string, state: ContainerState): Promise<void> {
    const tmp = join(this.dirOf(id), `.state.json.${process.pid}-${randomHex(4)}`);
    try {
      writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
      // In the thread pool: the replaced file's blocks are discarded synchronously on some disks.
      await renameInPool(tmp, join(this.dirOf(id), 'state.json'));
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {
        // never made
      }
      throw ioError(`cannot write state.json of container ${id.slice(0, 12)}`, err);
    }
  }

  /** Reads container `id`; undefined when it is gone (or half-created). */
  async read(id: string): Promise<ContainerEntry | undefined> {
    try {
      const config = JSON.parse(readFileSync(join(this.dirOf(id), 'config.json'), 'utf8')) as ContainerRecord;
      const state = JSON.parse(readFileSync(join(this.dirOf(id), 'state.json'), 'utf8')) as ContainerState;
      return { config, state };
    } catch {
      return undefined;
    }
  }

  /**
   * Reads container `id` and notices a dead owner: a `running` container whose monitor is gone
   * (killed, host rebooted) is recorded and returned as exited, never as a ghost.
   */
  async inspect(id: string): Promise<ContainerEntry | undefined> {
    const first = await this.read(id);
    if (first === undefined || (first.state.status !== 'running' && first.state.status !== 'restarting') || isProcessAlive(first.state.monitorPid, first.state.monitorStartTime)) return first;
    // The monitor may have written the real exit state and exited between our read and the liveness
    // check: read again now that it is known dead (it cannot write any more).
    const e = await this.read(id);
    if (e === undefined || (e.state.status !== 'running' && e.state.status !== 'restarting')) return e;
    const state: ContainerState = { ...e.state, status: 'exited', pid: 0, exitCode: 255, error: 'the container monitor died', finishedAt: new Date().toISOString() };
    await this.writeState(id, state).catch(() => undefined);
    return { config: e.config, state };
  }

  /** Every container, newest first. */
  async list(): Promise<ContainerEntry[]> {
    const names = readdirOrEmpty(this.#root);
    const out: ContainerEntry[] = [];
    for (const n of names) {
      if (!ID_RE.test(n)) continue;
      const e = await this.inspect(n);
      if (e !== undefined) out.push(e);
    }
    return out.sort((a, b) => b.config.created.localeCompare(a.config.created));
  }

  /** Finds a container by full ID, name, or unique ID prefix. Throws RUN_NO_SUCH_CONTAINER / RUN_AMBIGUOUS. */
  async resolve(text: string): Promise<ContainerEntry> {
    const name = text.replace(/^\//, '');
    if (isValidContainerName(name)) {
      // SECURITY: only an ID is followed, never a path the link might hold.
      const id = this.#nameOwner(name);
      const e = id === undefined ? undefined : await this.inspect(id);
      if (e !== undefined) return e;
    }
    if (/^[0-9a-f]{1,64}$/.test(text)) {
      const ids = readdirOrEmpty(this.#root).filter((n) => ID_RE.test(n) && n.startsWith(text));
      if (ids.length > 1) throw new TsbuildError('RUN_AMBIGUOUS', `multiple containers found with the ID prefix "${text}"`, { exitCode: 1 });
      const e = ids[0] === undefined ? undefined : await this.inspect(ids[0]);
      if (e !== undefined) return e;
    }
    throw new TsbuildError('RUN_NO_SUCH_CONTAINER', `no such container: ${text}`, { exitCode: 1 });
  }

  /** Removes the container's directory and its name (the caller removed its snapshot). Idempotent. */
  async remove(id: string, name: string): Promise<void> {
    const link = join(this.#root, 'names', name);
    if (this.#nameOwner(name) === id) {
      try {
        unlinkSync(link);
      } catch {
        // removed meanwhile
      }
    }
    try {
      removeDirTreeSync(this.dirOf(id));
    } catch (err) {
      // A permission problem: fs.rm reports what it cannot remove.
      try {
        rmSync(this.dirOf(id), { recursive: true, force: true });
      } catch {
        throw ioError(`cannot remove container ${id.slice(0, 12)}`, err);
      }
    }
  }

  /** Releases a name claimed for a container that was never created. */
  async releaseName(id: string, name: string): Promise<void> {
    await this.remove(id, name);
  }
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function readlinkOrUndefined(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

function ioError(message: string, cause: unknown): TsbuildError {
  return new TsbuildError('RUN_IO', `${message}: ${(cause as Error).message}`, { cause });
}
