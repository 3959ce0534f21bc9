import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildEvent, Digest } from '../../src/core/index.js';
import { readTar, type TarHeader } from '../../src/layer/index.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testSerialIf } from '../helpers/capability.js';
import { processesMentioning } from '../helpers/containers.js';
import { cliAsUser, rootlessMissing, ROOTLESS_USER as USER, type UserCliResult } from '../helpers/rootless.js';
import { tempDir } from '../helpers/tmp.js';
import { ensureLauncher, mountsUnder } from '../sandbox/sandbox-helpers.js';
import { build, makeFixture, readImage, stepsOf, type StoredImage } from './build-helpers.js';

const missing = rootlessMissing('rootless build tests switch to an unprivileged user and need root to do so') ?? await busyboxMissing();

/** Fixed, so layers built by root and by the user get the same mtimes and hence the same diffIDs. */
const EPOCH = '1700000000';

/**
 * Ownership changes by RUN (chown, an adduser-like passwd entry, a 0600 file of uid 1000), whiteouts
 * (a lower file, a lower directory, a directory replaced by a file, an opaque directory), hardlinks,
 * symlinks, COPY --chown by name, USER app, and COPY --from of another stage.
 */
const DOCKERFILE = `FROM busybox AS other
RUN mkdir -p /o/d && echo o > /o/f && chown -R 1000:1000 /o && chown 3000 /o/d && ln -s f /o/l

FROM busybox
RUN mkdir -p /data/sub /gone/deep /swap /opq && echo one > /data/sub/f && echo keep > /data/keep \\
 && echo old > /opq/old && echo x > /swap/x && echo deep > /gone/deep/f \\
 && echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group \\
 && mkdir -p /home/app && echo secret > /home/app/secret && chmod 600 /home/app/secret \\
 && chown -R app:app /home/app /data && chown 1000:2000 /data/keep && chmod 700 /data/sub
RUN rm /bin/vi && rm -rf /gone /data/sub && rm -rf /swap && echo now-a-file > /swap \\
 && rm -rf /opq && mkdir /opq && echo new > /opq/new \\
 && ln /data/keep /data/hard && ln -s keep /data/soft && cat /home/app/secret > /seen
COPY --chown=app:app f.txt /home/app/
USER app
RUN id -u > /home/app/id && echo mine > /home/app/mine
COPY --from=other /o /copied
RUN stat -c '%A %u %g %n' /copied/* > /home/app/listing
`;

/** Runs the real CLI as the unprivileged user (store, temp and runtime dirs under `home`). */
function buildAsUser(home: string, root: string, context: string, args: readonly string[]): Promise<UserCliResult> {
  return cliAsUser(home, root, ['build', '--progress=rawjson', ...args, '.'], { cwd: context, env: { TSBUILD_LAUNCHER: ensureLauncher(), SOURCE_DATE_EPOCH: EPOCH } });
}

function eventsOf(stderr: string): BuildEvent[] {
  return stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as BuildEvent);
}

/** One tar entry as compared between builds: everything but the content. */
type Entry = Pick<TarHeader, 'name' | 'type' | 'mode' | 'uid' | 'gid' | 'linkname' | 'size'>;

/** The entries of every layer the image adds to busybox (base layer excluded). */
async function layerEntries(img: StoredImage): Promise<Entry[][]> {
  const out: Entry[][] = [];
  for (const l of img.manifest.layers.slice(1)) {
    const entries: Entry[] = [];
    for await (const e of readTar(await img.store.blobs.open(l.digest))) {
      const { name, type, mode, uid, gid, linkname, size } = e.header;
      entries.push({ name, type, mode, uid, gid, linkname, size });
      for await (const _ of e.body) { /* drain */ }
    }
    out.push(entries);
  }
  return out;
}

async function fileOf(img: StoredImage, path: string): Promise<string | undefined> {
  let found: string | undefined;
  for (const l of img.manifest.layers) {
    for await (const e of readTar(await img.store.blobs.open(l.digest))) {
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(c);
      if (e.header.name === path) found = Buffer.concat(chunks).toString('utf8');
    }
  }
  return found;
}

/** The same Dockerfile built as root (in-process CLI): the reference the rootless builds must match. */
async function buildAsRoot(t: ExecutionContext, snapshotter: string): Promise<StoredImage> {
  const f = await makeFixture(t, { 'f.txt': 'copied\n' });
  const r = await build(f, DOCKERFILE, ['-t', 'ref', `--snapshotter=${snapshotter}`], { SOURCE_DATE_EPOCH: EPOCH });
  t.is(r.code, 0, r.stderr);
  return readImage(f.root, 'ref');
}

/** A home of the user with a store holding busybox, a context, and cleanup checks (no process or mount left). */
async function userFixture(t: ExecutionContext): Promise<{ home: string; root: string; context: string }> {
  const dir = await tempDir(t, 'tsbuild-build-rootless-');
  await chmod(dir, 0o755);
  const home = join(dir, 'home');
  const root = join(home, 'store');
  const context = join(home, 'ctx');
  for (const d of [home, join(home, 'tmp'), join(home, 'run'), context]) await mkdir(d, { recursive: true });
  await makeBusyboxImage(join(dir, 'base'), root);
  await writeFile(join(context, 'Dockerfile'), DOCKERFILE);
  await writeFile(join(context, 'f.txt'), 'copied\n');
  execFileSync('chown', ['-R', `${USER}:${USER}`, home]);
  t.teardown(() => {
    const left = processesMentioning(root);
    if (left.length > 0) throw new Error(`leftover build or sandbox processes: ${left.join(', ')}`);
    const mounts = mountsUnder([dir]);
    if (mounts.length > 0) throw new Error(`leftover mounts: ${mounts.join(', ')}`);
  });
  return { home, root, context };
}

for (const snapshotter of ['overlay', 'naive'] as const) {
  testSerialIf(missing, `build rootless: an unprivileged user builds the same layers as root when using the ${snapshotter} snapshotter`, async (t) => {
    const [reference, u] = await Promise.all([buildAsRoot(t, snapshotter), userFixture(t)]);
    const r = await buildAsUser(u.home, u.root, u.context, ['-t', 'img', `--snapshotter=${snapshotter}`]);
    t.is(r.code, 0, r.stderr);
    t.false(r.stderr.includes('WARNING'), r.stderr);
    t.deepEqual(readdirSync(join(u.root, 'tmp')), [], 'the commits\' scratch (overlay work dirs, mode 000 inside) is gone when the build ends');
    const img = await readImage(u.root, 'img');

    // Ownership as the container saw it, not as the host stores it (201000...).
    const layers = await layerEntries(img);
    const entry = (layer: number, name: string): Entry | undefined => layers[layer]?.find((e) => e.name === name);
    t.like(entry(0, 'data/sub/'), { uid: 1000, gid: 1000, mode: 0o700, type: 'directory' });
    t.like(entry(0, 'data/keep'), { uid: 1000, gid: 2000 });
    t.like(entry(0, 'home/app/secret'), { uid: 1000, gid: 1000, mode: 0o600 });
    t.like(entry(0, 'etc/passwd'), { uid: 0, gid: 0 });
    // Whiteouts of a lower file and directories, a directory replaced by a file, an opaque directory, links.
    const second = new Set(layers[1]?.map((e) => e.name));
    for (const name of ['bin/.wh.vi', '.wh.gone', 'data/.wh.sub', 'opq/.wh..wh..opq', 'opq/new']) t.true(second.has(name), name);
    t.false(second.has('opq/.wh.old'), 'an opaque directory lists no single whiteouts');
    t.like(entry(1, 'swap'), { type: 'file', size: 11 });
    t.like(entry(1, 'data/hard'), { type: 'file', uid: 1000, gid: 2000 });
    t.like(entry(1, 'data/keep'), { type: 'link', linkname: 'data/hard' }, 'a hardlink to a lower file: both names, one inode');
    t.like(entry(1, 'data/soft'), { type: 'symlink', linkname: 'keep' });
    t.is(await fileOf(img, 'seen'), 'secret\n', 'root in the build reads a 0600 file of uid 1000');
    t.like(entry(2, 'home/app/f.txt'), { uid: 1000, gid: 1000 });
    t.is(await fileOf(img, 'home/app/id'), '1000\n', 'USER app runs as uid 1000');
    t.like(entry(3, 'home/app/mine'), { uid: 1000, gid: 1000 });
    t.like(entry(4, 'copied/d/'), { uid: 3000, gid: 1000 });
    t.like(entry(4, 'copied/f'), { uid: 1000, gid: 1000 });
    t.regex(await fileOf(img, 'home/app/listing') ?? '', /^drwxr-xr-x 3000 1000 \/copied\/d$/m, 'RUN sees the owners COPY --from wrote');

    // Byte-identical layers: the same diffIDs as the build as root.
    t.deepEqual(layers, await layerEntries(reference));
    t.deepEqual(img.config.rootfs.diff_ids, reference.config.rootfs.diff_ids);

    // The second build is a cache hit everywhere.
    const again = await buildAsUser(u.home, u.root, u.context, ['-t', 'img2', `--snapshotter=${snapshotter}`]);
    t.is(again.code, 0, again.stderr);
    const steps = stepsOf(eventsOf(again.stderr));
    t.deepEqual(steps.started.filter((s) => !s.includes('FROM')).filter((s) => !steps.cached.includes(s)), [], again.stderr);
    // The final stage's 6 steps; the `other` stage is skipped (lazy solving: its COPY --from is a hit).
    t.is(steps.cached.length, 6, again.stderr);
    t.true(again.stderr.includes('"skipped 2 steps no step to run needs'), again.stderr);
    t.is((await readImage(u.root, 'img2')).manifestDigest as Digest, img.manifestDigest);
  });
}

testSerialIf(missing, 'build rootless: a Dockerfile from stdin and a failing RUN report as in a root build', async (t) => {
  const u = await userFixture(t);
  const r = await cliAsUser(u.home, u.root, ['build', '--progress=plain', '-f', '-', '.'],
    { cwd: u.context, env: { TSBUILD_LAUNCHER: ensureLauncher() }, stdin: 'FROM busybox\nRUN echo from-stdin && exit 3\n' });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /from-stdin/);
  t.regex(r.stderr, /RUN_EXIT/);
});

testSerialIf(missing, 'build rootless: prune as the user removes the active snapshot of a killed build when it holds files of sub-ids', async (t) => {
  const u = await userFixture(t);
  await writeFile(join(u.context, 'Dockerfile'), 'FROM busybox\nRUN mkdir -p /a/b && echo x > /a/b/f && chown -R 1000:1000 /a && chmod 700 /a && touch /started && sleep 60\n');
  execFileSync('chown', ['-R', `${USER}:${USER}`, u.context]);
  const running = buildAsUser(u.home, u.root, u.context, ['--snapshotter=naive']);
  const killAll = (): void => {
    for (const pid of processesMentioning(u.root)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  };
  t.teardown(killAll);
  // Wait until the RUN has written its files (the active snapshot's copy holds /started).
  const active = join(u.root, 'snapshots', 'naive', 'active');
  const started = (): boolean => (existsSync(active) ? readdirSync(active) : []).some((k) => existsSync(join(active, k, 'fs', 'started')));
  for (let i = 0; i < 1200 && !started(); i++) await new Promise((r) => setTimeout(r, 100));
  t.true(started(), 'the RUN step started');
  killAll();
  await running;
  const left = readdirSync(active);
  t.is(left.length, 1, 'the killed build left its active snapshot');
  const r = await cliAsUser(u.home, u.root, ['prune'], { cwd: u.home });
  t.is(r.code, 0, r.stderr);
  t.false(r.stderr.includes('cannot remove'), r.stderr);
  t.deepEqual(readdirSync(active), [], 'prune removed it');
  t.deepEqual(readdirSync(join(u.root, 'tmp')), [], 'nothing of it is left in tmp/, /a/b/f of host uid 201000 included');
});
