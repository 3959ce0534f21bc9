import type { ExecutionContext, Implementation } from 'ava';
import { lstat as fsLstat, mkdir, readdir, readFile, realpath, stat as fsStat, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync, type Stats } from 'node:fs';
import { userInfo } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { BuildEvent, Digest, ImageConfig, ImageManifest } from '../../src/core/index.js';
import { applyLayer, readTar } from '../../src/layer/index.js';
import { openStore, resolveImage, type Store } from '../../src/store/index.js';
import { cli, type CliResult } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { cgroupsOwnedBy, liveChildren } from '../helpers/containers.js';
import { ensureLauncher, mountsUnder } from '../sandbox/sandbox-helpers.js';
import { tempDir } from '../helpers/tmp.js';
import { testSerialIf } from '../helpers/capability.js';

/** True when this test process runs as root (the builds run directly), false when builds are rootless. */
export const isRoot = process.getuid?.() === 0;

/**
 * Why a non-root user cannot build here (a rootless build runs as root of a user namespace over the
 * user's /etc/subuid and /etc/subgid ranges through newuidmap/newgidmap), or undefined.
 */
export function rootlessMissing(): string | undefined {
  const { username, uid } = userInfo();
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
    if (!lines.some((l) => l.startsWith(`${username}:`) || l.startsWith(`${uid}:`))) return `no ${file} range for ${username} (rootless builds need sub-ids; scripts/setup.sh adds them for tsbuild-test)`;
  }
  for (const tool of ['/usr/bin/newuidmap', '/usr/bin/newgidmap']) if (!existsSync(tool)) return `${tool} missing (apt-get install uidmap)`;
  return undefined;
}

/** Why build integration tests cannot run here (no busybox; not root and no sub-ids for rootless builds), or undefined. */
export async function buildMissing(): Promise<string | undefined> {
  return (isRoot ? undefined : rootlessMissing()) ?? (await busyboxMissing());
}

/**
 * A serial test that needs root for a real reason (`why`: e.g. it switches to another user with
 * runuser). As root it is {@link testSerialIf} with `missing`; as non-root (CI's second, rootless
 * pass) it is not part of the run at all, with `why` logged: CI runs these files as root too, so
 * the test is not lost, and the rootless pass reports no skips.
 */
export function testSerialRootOnly(why: string, missing: string | undefined, title: string, impl: Implementation<[]>): void {
  if (isRoot) {
    testSerialIf(missing, title, impl);
  } else {
    console.warn(`not in this non-root run (uid ${String(process.getuid?.())}): "${title}": ${why}`);
  }
}

/** A temp store with the busybox image, a context dir and the env the CLI needs. */
export interface BuildFixture {
  readonly dir: string;
  readonly root: string;
  readonly context: string;
  readonly runDir: string;
  readonly env: Record<string, string | undefined>;
}

/**
 * Makes a fixture and registers a teardown (also on failure) that checks for leaks: no mounts on
 * the host below the fixture, no cgroup of this process left, no child process left, no active
 * snapshot left in the store.
 */
export async function makeFixture(t: ExecutionContext, files: Readonly<Record<string, string>> = {}): Promise<BuildFixture> {
  const dir = await tempDir(t, 'tsbuild-build-');
  const root = join(dir, 'root');
  const context = join(dir, 'ctx');
  const runDir = join(dir, 'run');
  await makeBusyboxImage(join(dir, 'base'), root);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(join(context, name)), { recursive: true });
    await writeFile(join(context, name), text);
  }
  await mkdir(context, { recursive: true });
  t.teardown(async () => {
    const mounts = mountsUnder([dir]);
    if (mounts.length > 0) throw new Error(`leftover mounts: ${mounts.join(', ')}`);
    const cgroups = ownCgroups();
    if (cgroups.length > 0) throw new Error(`leftover cgroups: ${cgroups.join(', ')}`);
    const children = childProcesses();
    if (children.length > 0) throw new Error(`leftover child processes: ${children.join(', ')}`);
    const active = await activeSnapshots(root);
    if (active.length > 0) throw new Error(`leftover active snapshots: ${active.join(', ')}`);
  });
  return {
    dir,
    root,
    context,
    runDir,
    env: { PATH: process.env.PATH, TSBUILD_LAUNCHER: ensureLauncher(), TSBUILD_RUN_DIR: runDir },
  };
}

/** Cgroup directories of this process (any controller) below tsbuild/. */
export function ownCgroups(): string[] {
  return cgroupsOwnedBy(process.pid);
}

/** Live child processes of this process (tsx's esbuild service excepted). */
export function childProcesses(): string[] {
  return liveChildren(process.pid).filter((c) => c.comm !== 'esbuild').map((c) => `${c.pid} (${c.comm})`);
}

/** Keys of active snapshots left in a store (any snapshotter). */
export async function activeSnapshots(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const kind of ['overlay', 'naive']) {
    const dir = join(root, 'snapshots', kind, 'active');
    const names = await readdir(dir).catch(() => [] as string[]);
    out.push(...names.map((n) => `${kind}/${n}`));
  }
  return out;
}

/** Writes the Dockerfile into the context and runs `tsbuild --root R build --progress=rawjson ...ARGS .`. */
export async function build(f: BuildFixture, dockerfile: string, args: readonly string[] = [], env: Record<string, string> = {}): Promise<CliResult & { events: BuildEvent[] }> {
  await writeFile(join(f.context, 'Dockerfile'), dockerfile);
  const r = await cli(['--root', f.root, 'build', '--progress=rawjson', ...args, '.'], { cwd: f.context, env: { ...f.env, ...env } });
  const events: BuildEvent[] = [];
  for (const line of r.stderr.split('\n')) {
    if (line.startsWith('{')) events.push(JSON.parse(line) as BuildEvent);
  }
  return { ...r, events };
}

/** Names of the vertices that ran (`vertex.start`) and that were cache hits. */
export function stepsOf(events: readonly BuildEvent[]): { started: string[]; cached: string[] } {
  return {
    started: events.flatMap((e) => (e.type === 'vertex.start' ? [e.name] : [])),
    cached: events.flatMap((e) => (e.type === 'vertex.cached' ? [e.name] : [])),
  };
}

/** An image of the store with its manifest and config. */
export interface StoredImage {
  readonly store: Store;
  readonly manifestDigest: Digest;
  readonly manifest: ImageManifest;
  readonly config: ImageConfig;
}

/** Reads the image `name` from the store at `root`. */
export async function readImage(root: string, name: string): Promise<StoredImage> {
  const store = await openStore(root);
  const found = await resolveImage(store, name);
  const manifest = (await store.blobs.readJson<ImageManifest>(found.descriptor.digest)).value;
  const config = (await store.blobs.readJson<ImageConfig>(manifest.config.digest)).value;
  return { store, manifestDigest: found.descriptor.digest, manifest, config };
}

/** Owner and permission bits of a tar entry, as the image records them. */
interface ImageIds {
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
}

/**
 * Real path of an unpacked file -> the ids and mode its image gives it, for trees unpacked by a
 * non-root user (who cannot chown; applyLayer then leaves every file owned by the user). Test-only
 * state of this process: {@link lstat} and {@link stat} report these instead of the host's.
 */
const imageIds = new Map<string, ImageIds>();

/** The entry name of a tar header as a relative path (`./a/b/` -> `a/b`). */
function relativeName(name: string): string {
  return name.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
}

/**
 * Unpacks every layer of the image into `dest` with applyLayer (whiteouts delete lower files). As
 * root the files get the image's owners; as non-root they are the user's and the image's ids and
 * modes are read from the layer tars and reported by {@link lstat} and {@link stat} of this module.
 */
export async function unpackImage(img: StoredImage, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  for (const l of img.manifest.layers) await applyLayer(await img.store.blobs.open(l.digest), dest);
  if (isRoot) return;
  const root = await realpath(dest);
  for (const l of img.manifest.layers) {
    for await (const e of readTar(await img.store.blobs.open(l.digest))) {
      for await (const _ of e.body) { /* drain */ }
      const name = relativeName(e.header.name);
      if (name === '' || basename(name).startsWith('.wh.')) continue;
      imageIds.set(join(root, name), { uid: e.header.uid, gid: e.header.gid, mode: e.header.mode & 0o7777 });
    }
  }
}

/** Unpacks the image tagged `tag` in the fixture's store into `<fixture dir>/<name>` and returns that directory. */
export async function unpackedImage(f: BuildFixture, tag: string, name = 'unpacked'): Promise<string> {
  const dest = join(f.dir, name);
  await unpackImage(await readImage(f.root, tag), dest);
  return dest;
}

/** `st` with the image's ids and permission bits when `real` is a file unpacked by a non-root {@link unpackImage}. */
function withImageIds(real: string, st: Stats): Stats {
  const ids = imageIds.get(real);
  if (ids === undefined) return st;
  return Object.assign(Object.create(Object.getPrototypeOf(st) as object) as Stats, st, { uid: ids.uid, gid: ids.gid, mode: (st.mode & ~0o7777) | ids.mode });
}

/** fs.lstat, reporting owners and modes as the image has them for a tree unpacked by {@link unpackImage} (also as non-root). */
export async function lstat(path: string): Promise<Stats> {
  const st = await fsLstat(path);
  return isRoot ? st : withImageIds(join(await realpath(dirname(path)), basename(path)), st);
}

/** fs.stat (follows links), reporting owners and modes as the image has them for a tree unpacked by {@link unpackImage}. */
export async function stat(path: string): Promise<Stats> {
  const st = await fsStat(path);
  return isRoot ? st : withImageIds(await realpath(path), st);
}

/** Reads a file of an unpacked image. */
export function readUnpacked(dest: string, path: string): Promise<string> {
  return readFile(join(dest, path), 'utf8');
}
