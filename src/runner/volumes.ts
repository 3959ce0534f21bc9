/**
 * Volumes (as docker's `local` driver): `<store>/volumes/<name>/_data` holds the content,
 * `<store>/volumes/<name>/volume.json` the metadata. Named volumes outlive their containers;
 * anonymous ones (64 hex names, from `-v /path` or an image's VOLUME) go with `rm -v` / `--rm`.
 * Errors are TsbuildErrors `RUN_*`.
 */
import { chmodSync, chownSync, copyFileSync, constants, lchownSync, lutimesSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, utimesSync, type Stats } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import type { MountSpec } from '../sandbox/index.js';
import { mergedChild, mergedRoot, resolveMerged, type MergedEntry, type MergedLayers } from './merged-tree.js';
import { randomHex } from '../sys/index.js';

/** A volume as `docker volume inspect` shows it. */
export interface VolumeInfo {
  readonly CreatedAt: string;
  readonly Driver: 'local';
  readonly Labels: Readonly<Record<string, string>>;
  readonly Mountpoint: string;
  readonly Name: string;
  readonly Options: Readonly<Record<string, string>>;
  readonly Scope: 'local';
}

/** A volume a container asks for: `name` undefined makes an anonymous one. */
export interface VolumeRequest {
  readonly name: string | undefined;
  readonly destination: string;
  readonly readonly: boolean;
  /** `volume-nocopy`: do not seed an empty volume from the image. */
  readonly noCopy?: boolean;
}

/** A volume attached to a container (recorded in its config). */
export interface AttachedVolume {
  readonly name: string;
  readonly destination: string;
  readonly readonly: boolean;
  readonly anonymous: boolean;
}

/** Docker's label on anonymous volumes. */
export const ANONYMOUS_LABEL = 'com.docker.volume.anonymous';
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

/** True when `name` is a valid volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`). */
export function isValidVolumeName(name: string): boolean {
  return NAME_RE.test(name);
}

function ioError(message: string, cause: unknown): TsbuildError {
  return new TsbuildError('RUN_IO', `${message}: ${(cause as Error).message}`, { cause });
}

/** The volumes of a store, under `root` (`<store>/volumes`). */
export class VolumeStore {
  readonly #root: string;

  /** `root` is the store's volumes directory. */
  constructor(root: string) {
    this.#root = root;
  }

  /** The content directory of volume `name`. */
  dataDirOf(name: string): string {
    return join(this.#root, name, '_data');
  }

  /**
   * Creates volume `name` (a random 64-hex name when undefined, labelled anonymous), or returns it
   * when it exists. `owner` (uid, gid) owns the content directory (the container's root when rootless).
   * Throws RUN_BAD_VOLUME_NAME.
   */
  async create(name: string | undefined, labels: Readonly<Record<string, string>> = {}, owner?: { uid: number; gid: number }): Promise<VolumeInfo> {
    const n = name ?? randomHex(32);
    if (!isValidVolumeName(n)) {
      throw new TsbuildError('RUN_BAD_VOLUME_NAME', `"${n}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed`, { exitCode: 125 });
    }
    const existing = await this.inspect(n);
    if (existing !== undefined) return existing;
    const dir = join(this.#root, n);
    const info: VolumeInfo = {
      CreatedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      Driver: 'local',
      Labels: name === undefined ? { ...labels, [ANONYMOUS_LABEL]: '' } : { ...labels },
      Mountpoint: this.dataDirOf(n),
      Name: n,
      Options: {},
      Scope: 'local',
    };
    try {
      await mkdir(join(dir, '_data'), { recursive: true, mode: 0o755 });
      if (owner !== undefined) chownSync(join(dir, '_data'), owner.uid, owner.gid);
      const tmp = join(dir, `.volume.json.${process.pid}`);
      await writeFile(tmp, `${JSON.stringify(info, null, 2)}\n`);
      await rename(tmp, join(dir, 'volume.json'));
    } catch (err) {
      throw ioError(`cannot create volume ${n}`, err);
    }
    return info;
  }

  /** Volume `name`, or undefined when it does not exist. */
  async inspect(name: string): Promise<VolumeInfo | undefined> {
    if (!isValidVolumeName(name)) return undefined;
    try {
      return JSON.parse(await readFile(join(this.#root, name, 'volume.json'), 'utf8')) as VolumeInfo;
    } catch {
      return undefined;
    }
  }

  /** Volume `name`; throws RUN_NO_SUCH_VOLUME. */
  async get(name: string): Promise<VolumeInfo> {
    const v = await this.inspect(name);
    if (v === undefined) throw new TsbuildError('RUN_NO_SUCH_VOLUME', `no such volume: ${name}`, { exitCode: 1 });
    return v;
  }

  /** Every volume, by name. */
  async list(): Promise<VolumeInfo[]> {
    const out: VolumeInfo[] = [];
    for (const n of (await readdir(this.#root).catch(() => [] as string[])).sort()) {
      const v = await this.inspect(n);
      if (v !== undefined) out.push(v);
    }
    return out;
  }

  /** Deletes volume `name` and its content (the caller checked it is unused). Idempotent. */
  async remove(name: string): Promise<void> {
    if (!isValidVolumeName(name)) return;
    await rm(join(this.#root, name), { recursive: true, force: true }).catch((err: unknown) => {
      throw ioError(`cannot remove volume ${name}`, err);
    });
  }
}

/** The volumes that containers with `records` use, as name -> container IDs. */
export function volumeUsers(records: readonly { readonly id: string; readonly volumes?: readonly AttachedVolume[] }[]): Map<string, string[]> {
  const users = new Map<string, string[]>();
  for (const r of records) {
    for (const v of r.volumes ?? []) users.set(v.name, [...(users.get(v.name) ?? []), r.id]);
  }
  return users;
}

/** Copies owner, mode and times of `st` to `dest` (owner only when `privileged`). */
function copyAttributes(dest: string, st: Stats, privileged: boolean): void {
  if (privileged) chownSync(dest, st.uid, st.gid);
  chmodSync(dest, st.mode & 0o7777);
  utimesSync(dest, st.atime, st.mtime);
}

/** Copies (never links: the volume is written to) the merged subtree of `entry` into the existing directory `dest`. */
function copyMergedInto(m: MergedLayers, dir: MergedEntry, dest: string, privileged: boolean): void {
  const seen = new Set<string>();
  for (const li of dir.dirLayers) {
    for (const name of readdirSync(join(m.layers[li] as string, ...dir.parts))) {
      if (seen.has(name)) continue;
      seen.add(name);
      const child = mergedChild(m, dir, name);
      if (child === undefined) continue;
      const target = join(dest, name);
      const st = child.stat;
      if (st.isDirectory()) {
        mkdirSync(target, { mode: 0o700 });
        copyMergedInto(m, child, target, privileged);
        copyAttributes(target, st, privileged);
      } else if (st.isSymbolicLink()) {
        symlinkSync(readlinkSync(child.host), target);
        if (privileged) lchownSync(target, st.uid, st.gid);
        lutimesSync(target, st.atime, st.mtime);
      } else if (st.isFile()) {
        copyFileSync(child.host, target, constants.COPYFILE_EXCL);
        copyAttributes(target, st, privileged);
      }
      // Devices, FIFOs and sockets are not seeded.
    }
  }
}

/**
 * Seeds the empty volume directory `dataDir` from the image's content at `path` (as docker does on
 * first use): the directory's files are copied (owners kept when `privileged`), and the volume
 * root takes the directory's mode (and owner). Does nothing when the volume has content or the
 * path is not a directory in the image. SECURITY: the path is resolved inside the layers only.
 */
export async function seedVolume(m: MergedLayers, path: string, dataDir: string, privileged: boolean): Promise<boolean> {
  if ((await readdir(dataDir)).length > 0) return false;
  let entry: MergedEntry | undefined;
  try {
    entry = resolveMerged(m, path, true).entry;
  } catch {
    return false;
  }
  if (entry === undefined || !entry.stat.isDirectory()) return false;
  try {
    copyMergedInto(m, entry, dataDir, privileged);
    copyAttributes(dataDir, entry.stat, privileged);
  } catch (err) {
    throw ioError(`cannot copy ${path} of the image into its volume`, err);
  }
  return true;
}

/** The layers of an active snapshot's mounts, nearest first (for {@link seedVolume}). */
export function layersOfMounts(m: { type: 'bind'; source: string } | { type: 'overlay'; upperdir: string; lowerdirs: readonly string[]; options: readonly string[] }): MergedLayers {
  if (m.type === 'bind') return { layers: [m.source], xattrPrefix: 'trusted' };
  return { layers: [m.upperdir, ...m.lowerdirs], xattrPrefix: m.options.includes('userxattr') ? 'user' : 'trusted' };
}

/** The bind mount of an attached volume. */
export function volumeMount(volumes: VolumeStore, v: AttachedVolume): MountSpec {
  return { destination: v.destination, type: 'bind', source: volumes.dataDirOf(v.name), options: ['rbind', 'rprivate', ...(v.readonly ? ['ro'] : [])] };
}

/** Normalizes a container path for comparisons (`/data/` -> `/data`). */
export function normalizeDestination(path: string): string {
  const p = path.replace(/\/+/g, '/').replace(/(.)\/$/, '$1');
  return p;
}

/** The image's VOLUME paths that no explicit mount (`taken`) covers, as anonymous volume requests. */
export function imageVolumeRequests(imageVolumes: Readonly<Record<string, unknown>> | undefined, taken: readonly string[]): VolumeRequest[] {
  const used = new Set(taken.map(normalizeDestination));
  return Object.keys(imageVolumes ?? {})
    .map(normalizeDestination)
    .filter((p) => p.startsWith('/') && !used.has(p))
    .sort()
    .map((p) => ({ name: undefined, destination: p, readonly: false }));
}

/**
 * Removes the anonymous volumes of a removed container (`rm -v`, `--rm`), found through its
 * recorded mounts; named volumes stay. Anonymous volumes another container still uses are not
 * shared (each container gets its own), so no usage check is needed.
 */
export async function removeAnonymousVolumes(config: { readonly volumes?: readonly AttachedVolume[]; readonly mounts: readonly MountSpec[] }): Promise<void> {
  for (const v of config.volumes ?? []) {
    if (!v.anonymous || !isValidVolumeName(v.name)) continue;
    const source = config.mounts.find((m) => m.type === 'bind' && normalizeDestination(m.destination) === v.destination)?.source;
    // SECURITY: only a directory that is exactly <volumes>/<name>/_data of this volume is removed.
    if (source === undefined || basename(source) !== '_data' || basename(dirname(source)) !== v.name) continue;
    await new VolumeStore(dirname(dirname(source))).remove(v.name);
  }
}
