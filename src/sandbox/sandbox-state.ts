/**
 * Sandbox state on the host. The built-in sandbox keeps nothing per sandbox: a state dir holds
 * shared, immutable parts only (made once): the init layer `.init-layer` (empty mountpoints, the
 * top overlay lowerdir, so the upperdir stays clean), the overlay mountpoint `.rootfs` and `.files`,
 * where the launcher mounts a private tmpfs with the init files (/etc/hosts, /etc/hostname,
 * /etc/resolv.conf, bind-mounted so they never enter an image layer). Every mount lives in the
 * sandbox's own mount namespace, so concurrent sandboxes share these directories and nothing is
 * left to remove after a run or a SIGKILL. The OCI runtime path still uses per-sandbox
 * `<stateDir>/<id>/` directories (init files, bundle); those of dead owners go at the next start.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { randomHex, readProcStat } from '../sys/index.js';
import type { MountSpec } from './spec.js';

/** Paths of one sandbox's state. */
export interface SandboxState {
  readonly id: string;
  readonly dir: string;
  /** Empty directory the overlay root is mounted on. */
  readonly rootMount: string;
  /** Init layer: empty mountpoints for the init files and the standard mounts. */
  readonly initLayer: string;
  /** Bind mounts of the generated init files. */
  readonly initMounts: readonly MountSpec[];
}

/** Contents of the init files. */
export interface InitFiles {
  readonly hostname: string;
  /** Text of /etc/resolv.conf (usually the host's). */
  readonly resolvConf: string;
}

/** The /etc/hosts Docker writes for a container (pure). */
export function renderHosts(hostname: string): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    `127.0.1.1\t${hostname}`,
    '',
  ].join('\n');
}

/** A fresh random sandbox id (12 hex digits, like a short container id). */
export function newSandboxId(): string {
  return randomHex(6);
}

function stateError(what: string, path: string, err: unknown): TsbuildError {
  return new TsbuildError('SANDBOX_STATE', `cannot ${what} ${path}: ${(err as Error).message}`, { cause: err, exitCode: 125 });
}

/** Start time of a process (field 22 of /proc/PID/stat), or undefined when it is gone (or a zombie). */
async function readStartTime(pid: number): Promise<string | undefined> {
  const s = readProcStat(pid);
  return s === undefined || s.state === 'Z' || s.state === 'X' ? undefined : s.startTime;
}

/** Name of the init layer shared by every sandbox of a state dir (immutable once made). */
const SHARED_INIT_LAYER = '.init-layer';

// The per-run state is a handful of tiny files: synchronous calls (microseconds each) keep the
// sandbox start-up off libuv's thread pool, which dominates the cost on a busy machine.

/** Creates an init layer: empty mountpoints only, so one copy serves every sandbox. Idempotent and race-safe. */
function ensureInitLayer(parent: string, name = SHARED_INIT_LAYER): string {
  const layer = join(parent, name);
  if (existsSync(join(layer, 'etc', 'resolv.conf'))) return layer;
  for (const d of ['proc', 'sys', 'dev', 'etc']) mkdirSync(join(layer, d), { recursive: true, mode: 0o755 });
  for (const file of ['hosts', 'hostname', 'resolv.conf']) {
    // 'wx': never rewrite a file another sandbox may already use as an overlay lowerdir.
    try {
      writeFileSync(join(layer, 'etc', file), '', { mode: 0o644, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return layer;
}

/** The shared parts of a state dir for sandboxes whose launcher writes the init files itself. */
export interface SharedSandboxState {
  /** Empty directory every sandbox mounts its overlay root on (in its own mount namespace). */
  readonly rootMount: string;
  /** Init layer: empty mountpoints for the init files and the standard mounts. */
  readonly initLayer: string;
  /** Empty directory the launcher mounts a private tmpfs with the init files on. */
  readonly filesDir: string;
}

/** Names of the init files, as in /etc. */
const INIT_FILES = ['hosts', 'hostname', 'resolv.conf'] as const;

/** Creates (once; idempotent and race-safe) the shared parts of `stateDir`. Throws SANDBOX_STATE. */
export function prepareSharedState(stateDir: string): SharedSandboxState {
  const rootMount = join(stateDir, '.rootfs');
  const filesDir = join(stateDir, '.files');
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o711 });
    for (const d of [rootMount, filesDir]) mkdirSync(d, { recursive: true, mode: 0o755 });
    return { rootMount, filesDir, initLayer: ensureInitLayer(stateDir) };
  } catch (err) {
    throw stateError('create sandbox state', stateDir, err);
  }
}

/** The init files' contents (pure): name -> text, for the launcher to write in the sandbox's namespace. */
export function renderInitFiles(files: InitFiles): { name: string; content: string }[] {
  return [
    { name: 'hosts', content: renderHosts(files.hostname) },
    { name: 'hostname', content: `${files.hostname}\n` },
    { name: 'resolv.conf', content: files.resolvConf },
  ];
}

/** The bind mounts of the init files in `filesDir` onto /etc (read-write, as Docker's). */
export function initFileMounts(filesDir: string): MountSpec[] {
  return INIT_FILES.map((name) => ({ destination: `/etc/${name}`, type: 'bind', source: join(filesDir, name), options: ['rbind', 'rprivate'] }));
}

/** Where the init layer of a sandbox lives: its own dir, `<stateDir>/.init-layer` (shared, made once), or none. */
export type InitLayerMode = 'private' | 'shared' | 'none';

/** `PID STARTTIME` of the owner process, recorded so stale state can be told from live state. */
export async function describeOwner(pid: number): Promise<string> {
  return `${pid} ${(await readStartTime(pid)) ?? ''}`;
}

/**
 * Creates `<stateDir>/<id>/` with the init files (and an init layer, see {@link InitLayerMode}),
 * owned by `ownerPid` (or the precomputed `owner` text of {@link describeOwner}).
 */
export async function createSandboxState(stateDir: string, id: string, files: InitFiles, ownerPid: number, initLayerMode: InitLayerMode = 'private', owner?: string): Promise<SandboxState> {
  const dir = join(stateDir, id);
  const ownerText = owner ?? (await describeOwner(ownerPid));
  let initLayer = join(dir, 'init');
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o711 });
    mkdirSync(dir, { mode: 0o755 });
    writeFileSync(join(dir, 'owner'), `${ownerText}\n`);
    mkdirSync(join(dir, 'files'));
    writeFileSync(join(dir, 'files', 'hosts'), renderHosts(files.hostname), { mode: 0o644 });
    writeFileSync(join(dir, 'files', 'hostname'), `${files.hostname}\n`, { mode: 0o644 });
    writeFileSync(join(dir, 'files', 'resolv.conf'), files.resolvConf, { mode: 0o644 });
    if (initLayerMode !== 'none') mkdirSync(join(dir, 'rootfs'));
    if (initLayerMode === 'shared') initLayer = ensureInitLayer(stateDir);
    if (initLayerMode === 'private') ensureInitLayer(dir, 'init');
  } catch (err) {
    throw stateError('create sandbox state', dir, err);
  }
  return { id, dir, rootMount: join(dir, 'rootfs'), initLayer, initMounts: initFileMounts(join(dir, 'files')) };
}

/** Removes one sandbox's state directory (idempotent). */
export async function removeSandboxState(state: SandboxState): Promise<void> {
  try {
    rmSync(state.dir, { recursive: true, force: true });
  } catch (err) {
    throw stateError('remove sandbox state', state.dir, err);
  }
}

/** Removes state directories whose owner process is gone; returns the removed ids. */
export async function cleanStaleSandboxStates(stateDir: string): Promise<string[]> {
  let names: string[];
  try {
    // The state dir is on a tmpfs (/run): a synchronous listing costs microseconds, where a thread-pool round trip
    // waited ~1 ms while the container started on the other core (the sweep runs then).
    names = readdirSync(stateDir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    // The shared parts (.init-layer, .rootfs, .files) stay.
    if (name.startsWith('.')) continue;
    const dir = join(stateDir, name);
    let alive = false;
    try {
      const [pid, start] = (await readFile(join(dir, 'owner'), 'utf8')).trim().split(' ');
      alive = pid !== undefined && /^\d+$/.test(pid) && (await readStartTime(Number(pid))) === start;
    } catch {
      // No owner file yet: a sandbox being created right now (by another process) is not stale.
      const st = await stat(dir).catch(() => undefined);
      alive = st !== undefined && Date.now() - st.mtimeMs < 60_000;
    }
    if (alive) continue;
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}
