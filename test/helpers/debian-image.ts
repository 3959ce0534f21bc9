/**
 * The Debian base image of the classic example (`FROM debian` + apt-get install nginx): a
 * `debootstrap --variant=minbase bookworm` root filesystem, made once per machine and cached as an
 * uncompressed tar outside the checkout (default /var/cache/tsbuild-test, `$TSBUILD_TEST_CACHE`
 * overrides), then imported into a test store with `tsbuild import`.
 *
 * The cache is made atomically: debootstrap and tar work in a private temporary directory next to
 * the archive and the finished tar is renamed into place, so an interrupted run leaves no archive
 * (only a temporary directory the next run removes). scripts/demo-nginx.sh follows the same recipe.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { cli } from '../cli/run-cli.js';

const run = promisify(execFile);

/** The Debian suite and mirror of the fixture. */
export const DEBIAN_SUITE = 'bookworm';
export const DEBIAN_MIRROR = 'http://deb.debian.org/debian';

/** The PATH of the official Debian image's config. */
export const DEBIAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The file name of the cached archive inside the cache directory. */
export const DEBIAN_ARCHIVE_NAME = `debian-${DEBIAN_SUITE}-minbase.tar`;

/** The cache directory: `$TSBUILD_TEST_CACHE`, else /var/cache/tsbuild-test. */
export function debianCacheDir(): string {
  const env = process.env.TSBUILD_TEST_CACHE;
  return env !== undefined && env !== '' ? env : '/var/cache/tsbuild-test';
}

const TMP_PREFIX = '.tmp-debian-';

/**
 * Why the Debian example cannot run here, or undefined: needs root, and either the cached archive
 * or `debootstrap`; the nginx build needs the Debian mirror in any case (checked with one HTTP
 * request, 10 s at most).
 */
export async function debianMissing(cacheDir: string = debianCacheDir()): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (debootstrap, build sandbox)';
  const cached = await stat(join(cacheDir, DEBIAN_ARCHIVE_NAME)).then(() => true, () => false);
  if (!cached) {
    try {
      await run('debootstrap', ['--version']);
    } catch {
      return 'debootstrap is not installed (apt-get install debootstrap)';
    }
  }
  try {
    const res = await fetch(`${DEBIAN_MIRROR}/dists/${DEBIAN_SUITE}/Release`, { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
    if (!res.ok) return `the Debian mirror answered HTTP ${res.status}`;
  } catch (err) {
    return `the Debian mirror ${DEBIAN_MIRROR} is not reachable: ${(err as Error).message}`;
  }
  return undefined;
}

/** Mount points at or below `dir` (deepest first), from /proc/self/mountinfo. */
async function mountsBelow(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const points = info.split('\n').map((l) => l.split(' ')[4]).filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)));
  return points.sort((a, b) => b.length - a.length);
}

/** Removes a work directory of debootstrap: unmounts what an interrupted debootstrap left mounted first. */
async function removeWorkDir(dir: string): Promise<void> {
  for (const m of await mountsBelow(dir)) await run('umount', ['-l', m]).catch(() => undefined);
  // SECURITY: never rm -rf through a bind mount of the host's /dev or /proc.
  if ((await mountsBelow(dir)).length > 0) throw new Error(`cannot remove ${dir}: mounts are left below it`);
  await rm(dir, { recursive: true, force: true });
}

/** Removes temporary directories of earlier runs whose process is gone. */
async function removeStaleWork(cacheDir: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    if (!name.startsWith(TMP_PREFIX)) continue;
    const pid = Number(name.slice(TMP_PREFIX.length).split('-')[0]);
    const alive = Number.isInteger(pid) && pid > 0 && (await stat(`/proc/${pid}`).then(() => true, () => false));
    if (!alive) await removeWorkDir(join(cacheDir, name));
  }
}

/**
 * Makes the root filesystem in `rootfs` the way the official image is made, minus the image
 * tooling: debootstrap minbase, a policy-rc.d that keeps package scripts from starting services
 * (as in the official image), no apt lists or downloaded packages, no resolv.conf/hostname
 * (the sandbox provides them).
 */
export async function makeDebianRootfs(rootfs: string, log: (line: string) => void = () => undefined): Promise<void> {
  log(`debootstrap --variant=minbase ${DEBIAN_SUITE} ${rootfs} ${DEBIAN_MIRROR}`);
  await run('debootstrap', ['--variant=minbase', DEBIAN_SUITE, rootfs, DEBIAN_MIRROR], { maxBuffer: 64 << 20 });
  await writeFile(join(rootfs, 'usr/sbin/policy-rc.d'), '#!/bin/sh\n# Package scripts must not start services during a build.\nexit 101\n');
  await chmod(join(rootfs, 'usr/sbin/policy-rc.d'), 0o755);
  for (const dir of ['var/lib/apt/lists', 'var/cache/apt/archives']) {
    for (const name of await readdir(join(rootfs, dir))) {
      if (name !== 'partial' && name !== 'lock') await rm(join(rootfs, dir, name), { recursive: true, force: true });
    }
  }
  for (const file of ['etc/resolv.conf', 'etc/hostname']) await rm(join(rootfs, file), { force: true });
}

/**
 * The path of the cached Debian minbase archive (an uncompressed root filesystem tar), making it
 * first when it is missing (a few minutes: downloads ~40 MB from the mirror). Concurrent callers
 * each make their own and the last rename wins; readers never see a partial archive.
 */
export async function ensureDebianArchive(cacheDir: string = debianCacheDir(), log: (line: string) => void = () => undefined): Promise<string> {
  const archive = join(cacheDir, DEBIAN_ARCHIVE_NAME);
  if (await stat(archive).then((s) => s.isFile(), () => false)) return archive;
  await mkdir(cacheDir, { recursive: true });
  await removeStaleWork(cacheDir);
  const work = await mkdtemp(join(cacheDir, `${TMP_PREFIX}${process.pid}-`));
  try {
    const rootfs = join(work, 'rootfs');
    await makeDebianRootfs(rootfs, log);
    const tmpTar = join(work, DEBIAN_ARCHIVE_NAME);
    log(`tar ${tmpTar}`);
    await run('tar', ['--sort=name', '--numeric-owner', '--xattrs', '--xattrs-include=security.capability', '-C', rootfs,
      '--exclude=./dev/*', '--exclude=./proc/*', '--exclude=./sys/*', '--exclude=./run/*', '--exclude=./tmp/*', '-cf', tmpTar, '.']);
    await rename(tmpTar, archive);
    log(`cached ${archive}`);
  } finally {
    await removeWorkDir(work);
  }
  return archive;
}

/**
 * Imports the cached Debian archive into the store at `root` as `debian:bookworm` and
 * `debian:latest` (`tsbuild import` through the in-process CLI; PATH and `CMD ["bash"]` as in the
 * official image). Returns the config digest `tsbuild import` printed.
 */
export async function importDebianImage(root: string, archive: string): Promise<string> {
  const imported = await cli(['--root', root, 'import', '--change', `ENV PATH=${DEBIAN_PATH}`, '--change', 'CMD ["bash"]', '--message', `debootstrap --variant=minbase ${DEBIAN_SUITE}`, archive, `debian:${DEBIAN_SUITE}`]);
  if (imported.code !== 0) throw new Error(`tsbuild import failed (${imported.code}): ${imported.stderr}`);
  const tagged = await cli(['--root', root, 'tag', `debian:${DEBIAN_SUITE}`, 'debian:latest']);
  if (tagged.code !== 0) throw new Error(`tsbuild tag failed (${tagged.code}): ${tagged.stderr}`);
  return imported.stdout.trim();
}

/** Command-line use (`npx tsx test/helpers/debian-image.ts`): makes the cache and prints its path. */
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${await ensureDebianArchive(debianCacheDir(), (l) => process.stderr.write(`${l}\n`))}\n`);
}
