import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MediaType } from '../../src/core/index.js';
import { readTar } from '../../src/layer/index.js';
import { testSerialIf } from '../helpers/capability.js';
import { build, buildMissing, isRoot, makeFixture, readImage, readUnpacked, stat, stepsOf, unpackImage } from './build-helpers.js';

const run = promisify(execFile);
const missing = await buildMissing();

const APP = [
  'FROM busybox',
  'ENV GREETING=hello',
  'RUN echo "$GREETING from run" > /greet && rm /bin/vi && id -u > /uid',
  'WORKDIR /app',
  'COPY a.txt sub ./',
  'COPY a.txt /opt/b.txt',
  'USER nobody',
  'RUN whoami > /tmp/who; pwd > /tmp/pwd',
  'CMD ["cat", "/greet"]',
  '',
].join('\n');

for (const snapshotter of ['overlay', 'naive']) {
testSerialIf(missing, `tsbuild build: writes a runnable OCI image with layers, config and history when building FROM a local busybox (${snapshotter})`, async (t) => {
  const f = await makeFixture(t, { 'a.txt': 'from the context\n', 'sub/dir/c.txt': 'nested\n' });
  const r = await build(f, APP, ['-t', 'app:1', '-t', 'app:latest', '--iidfile', 'iid', '--metadata-file', 'meta.json', `--snapshotter=${snapshotter}`]);
  t.is(r.code, 0, r.stderr);

  const img = await readImage(f.root, 'app:1');
  t.is((await readImage(f.root, 'app:latest')).manifestDigest, img.manifestDigest);
  t.is(img.manifest.mediaType, MediaType.ociManifest);
  t.is(await readFile(join(f.context, 'iid'), 'utf8'), img.manifest.config.digest);
  const meta = JSON.parse(await readFile(join(f.context, 'meta.json'), 'utf8')) as Record<string, unknown>;
  t.is(meta['containerimage.digest'], img.manifestDigest);
  t.is(meta['containerimage.config.digest'], img.manifest.config.digest);
  t.is(meta['image.name'], 'docker.io/library/app:1,docker.io/library/app:latest');

  // Config: planned values plus one diffID per layer; new layers are uncompressed (blob digest = diffID).
  const c = img.config;
  t.deepEqual(c.config?.Cmd, ['cat', '/greet']);
  t.deepEqual(c.config?.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'GREETING=hello']);
  t.is(c.config?.WorkingDir, '/app');
  t.is(c.config?.User, 'nobody');
  t.is(img.manifest.layers.length, 6);
  t.deepEqual(c.rootfs.diff_ids, img.manifest.layers.map((l) => l.digest));
  for (const l of img.manifest.layers.slice(1)) t.is(l.mediaType, MediaType.ociLayer);
  const history = c.history ?? [];
  t.deepEqual(history.map((h) => h.created_by), [
    'COPY busybox / && busybox --install -s /bin',
    'CMD ["sh"]',
    'ENV GREETING=hello',
    'RUN /bin/sh -c echo "$GREETING from run" > /greet && rm /bin/vi && id -u > /uid',
    'WORKDIR /app',
    'COPY a.txt sub ./',
    'COPY a.txt /opt/b.txt',
    'USER nobody',
    'RUN /bin/sh -c whoami > /tmp/who; pwd > /tmp/pwd',
    'CMD ["cat","/greet"]',
  ]);
  t.is(history.filter((h) => h.empty_layer !== true).length, img.manifest.layers.length);
  t.true(history.every((h) => typeof h.created === 'string'));

  // Files: RUN output with ENV, the whiteout of a base file, COPY rules, USER and WORKDIR in RUN.
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is(await readUnpacked(dest, 'greet'), 'hello from run\n');
  t.is(await readUnpacked(dest, 'uid'), '0\n');
  await t.throwsAsync(stat(join(dest, 'bin/vi')));
  t.true((await stat(join(dest, 'bin/busybox'))).isFile());
  // The sandbox's mount points (/etc/hosts ...) never end up in a layer.
  await t.throwsAsync(stat(join(dest, 'etc/hosts')));
  await t.throwsAsync(stat(join(dest, 'etc/resolv.conf')));
  t.is(await readUnpacked(dest, 'app/a.txt'), 'from the context\n');
  t.is(await readUnpacked(dest, 'app/dir/c.txt'), 'nested\n');
  t.is(await readUnpacked(dest, 'opt/b.txt'), 'from the context\n');
  t.is(await readUnpacked(dest, 'tmp/who'), 'nobody\n');
  t.is(await readUnpacked(dest, 'tmp/pwd'), '/app\n');
  const copied = await stat(join(dest, 'app/a.txt'));
  t.is(copied.uid, 0);
  t.is(copied.mtimeMs, Math.floor((await stat(join(f.context, 'a.txt'))).mtimeMs / 1000) * 1000);

  // The RUN layer records the deletion as an OCI whiteout.
  const runLayer = img.manifest.layers[1];
  t.truthy(runLayer);
  const names: string[] = [];
  for await (const e of readTar(await img.store.blobs.open(runLayer?.digest ?? img.manifestDigest))) {
    names.push(e.header.name);
  }
  t.true(names.some((n) => n.replace(/^\.\//, '') === 'bin/.wh.vi'), names.join(' '));
  t.true(names.some((n) => n.replace(/^\.\//, '') === 'greet'), names.join(' '));

  // Progress: every step started once, in a cold store nothing was cached.
  const steps = stepsOf(r.events);
  t.is(steps.cached.length, 0);
  t.is(steps.started.filter((n) => / RUN /.test(n)).length, 2);

  // umoci (a peer tool) reads the store as an OCI layout and unpacks the same tree.
  const bundle = join(f.dir, 'bundle');
  await run('umoci', ['unpack', ...(isRoot ? [] : ['--rootless']), '--image', `${f.root}:docker.io/library/app:1`, bundle]);
  t.is(await readUnpacked(join(bundle, 'rootfs'), 'greet'), 'hello from run\n');
  await t.throwsAsync(stat(join(bundle, 'rootfs/bin/vi')));
  t.is(await readUnpacked(join(bundle, 'rootfs'), 'app/dir/c.txt'), 'nested\n');
});

testSerialIf(missing, `tsbuild build: copies only the named paths of an earlier stage when the target uses COPY --from (${snapshotter})`, async (t) => {
  const f = await makeFixture(t);
  const df = [
    'FROM busybox AS build',
    'RUN mkdir -p /out/bin && echo built > /out/bin/x && ln -s x /out/bin/link && chown -R 1000:1000 /out && echo other > /other',
    'FROM scratch',
    'COPY --from=build /out /res',
    'COPY --from=build --chown=7:8 /out/bin/x /single',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'multi:1', `--snapshotter=${snapshotter}`]);
  t.is(r.code, 0, r.stderr);
  const img = await readImage(f.root, 'multi:1');
  t.is(img.manifest.layers.length, 2);
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is(await readUnpacked(dest, 'res/bin/x'), 'built\n');
  const st = await stat(join(dest, 'res/bin/x'));
  t.is(st.uid, 1000);
  t.is(await readUnpacked(dest, 'single'), 'built\n');
  t.is((await stat(join(dest, 'single'))).uid, 7);
  t.is((await stat(join(dest, 'single'))).gid, 8);
  const { stdout } = await run('readlink', [join(dest, 'res/bin/link')]);
  t.is(stdout.trim(), 'x');
  await t.throwsAsync(stat(join(dest, 'other')));
  await t.throwsAsync(stat(join(dest, 'bin')));
});
}

testSerialIf(missing, 'tsbuild build: reports Dockerfile:LINE: RUN_EXIT with the command and its last output when a RUN fails', async (t) => {
  const f = await makeFixture(t);
  const r = await build(f, 'FROM busybox\nENV X=1\nRUN echo first line && echo boom >&2 && exit 3\nRUN echo never\n', ['-t', 'bad:1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^Dockerfile:3: RUN_EXIT: "echo first line && echo boom >&2 && exit 3" exited 3$/m);
  t.regex(r.stderr, /^ {2}first line\n {2}boom$/m);
  t.regex(r.stderr, /^ +3 \| RUN echo first line/m);
  t.false(stepsOf(r.events).started.some((n) => n.includes('echo never')));
  const images = await (await import('../../src/store/index.js')).openStore(f.root).then((s) => s.refs.list());
  t.false(images.some((e) => e.name?.includes('bad') === true));
});

testSerialIf(missing, 'tsbuild build: keeps unsupported features behind CLI_NOT_SUPPORTED when they are used', async (t) => {
  const f = await makeFixture(t);
  const r = await build(f, 'FROM busybox AS a\nFROM busybox\nCOPY --from=a <<EOF /x\nhi\nEOF\n');
  t.is(r.code, 1);
  t.regex(r.stderr, /^Dockerfile:3: CLI_NOT_SUPPORTED: here-documents with COPY --from is not supported yet/m);
});

for (const snapshotter of ['overlay', 'naive']) {
  testSerialIf(missing, `tsbuild build: gives identical image digests in two empty stores when SOURCE_DATE_EPOCH is set (${snapshotter})`, async (t) => {
    const files = { 'a.txt': 'from the context\n', 'sub/dir/c.txt': 'nested\n' };
    const a = await makeFixture(t, files);
    const b = await makeFixture(t, files);
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    const ra = await build(a, APP, ['-t', 'repro:1', `--snapshotter=${snapshotter}`], env);
    const rb = await build(b, APP, ['-t', 'repro:1', `--snapshotter=${snapshotter}`], env);
    t.is(ra.code, 0, ra.stderr);
    t.is(rb.code, 0, rb.stderr);
    const ia = await readImage(a.root, 'repro:1');
    const ib = await readImage(b.root, 'repro:1');
    t.deepEqual(ia.config.rootfs.diff_ids, ib.config.rootfs.diff_ids);
    t.is(ia.manifestDigest, ib.manifestDigest);
    t.is(ia.config.created, '2023-11-14T22:13:20Z');
  });
}
