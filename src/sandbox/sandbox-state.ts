/**
 * Per-sandbox state on the host: `<stateDir>/<id>/` holds the init files (/etc/hosts,
 * /etc/hostname, /etc/resolv.conf, bind-mounted so they never enter an image layer), the
 * overlay mountpoint; the init layer (empty mountpoints, the top overlay lowerdir, so the
 * upperdir stays clean) is shared by all sandboxes of a state dir (`<stateDir>/.init-layer`). Mounts live only in the sandbox's mount namespace; this directory is
 * removed after the run, and directories of dead owners are removed on the next start.
 */
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TsbuildError } from '../core/index.js';
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
  return randomBytes(6).toString('hex');
}

function stateError(what: string, path: string, err: unknown): TsbuildError {
  return new TsbuildError('SANDBOX_STATE', `cannot ${what} ${path}: ${(err as Error).message}`, { cause: err, exitCode: 125 });
}

/** Start time of a process (field 22 of /proc/PID/stat), or undefined when it is gone. */
async function readStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Name of the init layer shared by every sandbox of a state dir (immutable once made). */
const SHARED_INIT_LAYER = '.init-layer';

/** Creates the shared init layer: empty mountpoints only, so one copy serves every sandbox. Idempotent and race-safe. */
async function ensureInitLayer(parent: string, name = SHARED_INIT_LAYER): Promise<string> {
  const layer = join(parent, name);
  if (await stat(join(layer, 'etc', 'resolv.conf')).then(() => true, () => false)) return layer;
  await Promise.all(['proc', 'sys', 'dev', 'etc'].map((d) => mkdir(join(layer, d), { recursive: true, mode: 0o755 })));
  for (const name of ['hosts', 'hostname', 'resolv.conf']) {
    // 'wx': never rewrite a file another sandbox may already use as an overlay lowerdir.
    await writeFile(join(layer, 'etc', name), '', { mode: 0o644, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  return layer;
}

/** Where the init layer of a sandbox lives: its own dir, `<stateDir>/.init-layer` (shared, made once), or none. */
export type InitLayerMode = 'private' | 'shared' | 'none';

/** Creates `<stateDir>/<id>/` with the init files (and an init layer, see {@link InitLayerMode}), owned by `ownerPid`. */
export async function createSandboxState(stateDir: string, id: string, files: InitFiles, ownerPid: number, initLayerMode: InitLayerMode = 'private'): Promise<SandboxState> {
  const dir = join(stateDir, id);
  let initLayer = initLayerMode === 'shared' ? join(stateDir, SHARED_INIT_LAYER) : join(dir, 'init');
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o711 });
    await mkdir(dir, { mode: 0o755 });
    const contents: Record<string, string> = {
      hosts: renderHosts(files.hostname),
      hostname: `${files.hostname}\n`,
      'resolv.conf': files.resolvConf,
    };
    const startTime = await readStartTime(ownerPid);
    await Promise.all([
      writeFile(join(dir, 'owner'), `${ownerPid} ${startTime ?? ''}\n`),
      mkdir(join(dir, 'files')).then(() => Promise.all(Object.entries(contents).map(([name, text]) => writeFile(join(dir, 'files', name), text, { mode: 0o644 })))),
      ...(initLayerMode === 'none' ? [] : [mkdir(join(dir, 'rootfs'))]),
      ...(initLayerMode === 'shared' ? [ensureInitLayer(stateDir).then((l) => { initLayer = l; })] : []),
      ...(initLayerMode === 'private' ? [ensureInitLayer(dir, 'init')] : []),
    ]);
  } catch (err) {
    throw stateError('create sandbox state', dir, err);
  }
  const initMounts: MountSpec[] = ['hosts', 'hostname', 'resolv.conf'].map((name) => ({
    destination: `/etc/${name}`,
    type: 'bind',
    source: join(dir, 'files', name),
    options: ['rbind', 'rprivate'],
  }));
  return { id, dir, rootMount: join(dir, 'rootfs'), initLayer, initMounts };
}

/** Removes one sandbox's state directory (idempotent). */
export async function removeSandboxState(state: SandboxState): Promise<void> {
  try {
    await rm(state.dir, { recursive: true, force: true });
  } catch (err) {
    throw stateError('remove sandbox state', state.dir, err);
  }
}

/** Removes state directories whose owner process is gone; returns the removed ids. */
export async function cleanStaleSandboxStates(stateDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(stateDir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (name === SHARED_INIT_LAYER) continue;
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
