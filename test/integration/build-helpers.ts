import type { ExecutionContext } from 'ava';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BuildEvent, Digest, ImageConfig, ImageManifest } from '../../src/core/index.js';
import { applyLayer } from '../../src/layer/index.js';
import { openStore, resolveImage, type Store } from '../../src/store/index.js';
import { cli, type CliResult } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { ensureLauncher, mountsUnder, notRoot } from '../sandbox/sandbox-helpers.js';
import { tempDir } from '../helpers/tmp.js';

/** Why build integration tests cannot run here (not root, no busybox), or undefined. */
export async function buildMissing(): Promise<string | undefined> {
  return notRoot() ?? (await busyboxMissing());
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
  const out: string[] = [];
  for (const c of readdirSync('/sys/fs/cgroup')) {
    let names: string[] = [];
    try {
      names = readdirSync(join('/sys/fs/cgroup', c, 'tsbuild'));
    } catch {
      continue;
    }
    for (const n of names) if (n.includes(`.owner-${process.pid}-`)) out.push(`${c}/tsbuild/${n}`);
  }
  return out;
}

/** Live child processes of this process (tsx's esbuild service excepted). */
export function childProcesses(): string[] {
  const out: string[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === process.pid && fields[0] !== 'Z' && !stat.includes('(esbuild)')) out.push(`${p} ${stat.slice(stat.indexOf('('), stat.lastIndexOf(')') + 1)}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
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

/** Unpacks every layer of the image into `dest` with applyLayer (whiteouts delete lower files). */
export async function unpackImage(img: StoredImage, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  for (const l of img.manifest.layers) await applyLayer(await img.store.blobs.open(l.digest), dest);
}

/** Reads a file of an unpacked image. */
export function readUnpacked(dest: string, path: string): Promise<string> {
  return readFile(join(dest, path), 'utf8');
}
