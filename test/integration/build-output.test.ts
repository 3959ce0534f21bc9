import test from 'ava';
import { execFile } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MediaType, type Descriptor } from '../../src/core/index.js';
import { cli } from '../cli/run-cli.js';
import { testSerialIf } from '../helpers/capability.js';
import { skopeoMissing } from '../helpers/registry.js';
import { build, buildMissing, makeFixture, readImage } from './build-helpers.js';

const run = promisify(execFile);
const missing = (await buildMissing()) ?? (await skopeoMissing());

/** Deletes a base file (a whiteout), adds a file, a symlink and a hardlink. */
const DOCKERFILE = 'FROM busybox\nCOPY hello.txt /app/hello.txt\nRUN rm /bin/vi && ln -s hello.txt /app/link && ln /app/hello.txt /app/hard\n';

testSerialIf(missing, 'tsbuild build --output: writes oci, docker, tar and local outputs of one build that skopeo, load, tar and the file system read back', async (t) => {
  const f = await makeFixture(t, { 'hello.txt': 'hello output\n' });
  const out = join(f.dir, 'out');
  // A pre-existing symlink in the local destination pointing outside must not be followed out of it.
  const outside = join(f.dir, 'outside');
  await mkdir(join(out), { recursive: true });
  await mkdir(outside);
  await symlink(outside, join(out, 'app'));
  const r = await build(f, DOCKERFILE, [
    '-t', 'app:1',
    '--output', `type=oci,dest=${join(f.dir, 'img-oci.tar')}`,
    '--output', `type=docker,dest=${join(f.dir, 'img-docker.tar')},name=named:2`,
    '--output', `type=tar,dest=${join(f.dir, 'rootfs.tar')}`,
    '-o', out,
    '--output', 'type=image,name=extra:3',
  ]);
  t.is(r.code, 0, r.stderr);
  const built = await readImage(f.root, 'app:1');
  t.is((await readImage(f.root, 'extra:3')).manifestDigest, built.manifestDigest);

  // oci: skopeo reads it, the layers are gzip, and tsbuild load gives the same image ID.
  const oci = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci-archive:${join(f.dir, 'img-oci.tar')}`])).stdout) as { config: Descriptor; layers: Descriptor[] };
  t.is(oci.config.digest, built.manifest.config.digest);
  t.deepEqual(oci.layers.map((l) => l.mediaType), built.manifest.layers.map(() => MediaType.ociLayerGzip));
  const other = join(f.dir, 'other');
  let l = await cli(['--root', other, 'load', '-i', join(f.dir, 'img-oci.tar')]);
  t.is(l.code, 0, l.stderr);
  t.is((await readImage(other, 'app:1')).manifest.config.digest, built.manifest.config.digest);

  // docker: named by name=, readable by skopeo's docker-archive transport and by load.
  const docker = JSON.parse((await run('skopeo', ['inspect', `docker-archive:${join(f.dir, 'img-docker.tar')}`])).stdout) as { Layers: string[] };
  t.is(docker.Layers.length, built.manifest.layers.length);
  const manifestJson = (await run('tar', ['-xOf', join(f.dir, 'img-docker.tar'), 'manifest.json'])).stdout;
  t.deepEqual((JSON.parse(manifestJson) as { RepoTags: string[] }[])[0]?.RepoTags, ['named:2']);
  l = await cli(['--root', join(f.dir, 'third'), 'load', '-i', join(f.dir, 'img-docker.tar')]);
  t.is(l.code, 0, l.stderr);
  t.is((await readImage(join(f.dir, 'third'), 'named:2')).manifest.config.digest, built.manifest.config.digest);

  // tar: the flattened root file system (the whiteout applied, links kept).
  const listing = (await run('tar', ['-tvf', join(f.dir, 'rootfs.tar')])).stdout;
  // Hard links point at the first path in bytewise order: app/hard.
  t.regex(listing, /^-rw-r--r-- 0\/0 +13 .* app\/hard$/m);
  t.regex(listing, /^lrwxrwxrwx 0\/0 .* app\/link -> hello\.txt$/m);
  t.regex(listing, /^hrw-r--r-- 0\/0 .* app\/hello\.txt link to app\/hard$/m);
  t.regex(listing, /^-rwxr-xr-x 0\/0 .* bin\/busybox$/m);
  t.notRegex(listing, /bin\/vi\b/);
  t.false(listing.includes('.wh.'));
  t.is((await run('tar', ['-xOf', join(f.dir, 'rootfs.tar'), 'app/hard'])).stdout, 'hello output\n');

  // local: the same tree written into the directory, nothing through the planted symlink.
  t.deepEqual(await readdir(outside), []);
  t.true((await lstat(join(out, 'app'))).isDirectory());
  t.is(await readFile(join(out, 'app', 'hello.txt'), 'utf8'), 'hello output\n');
  t.is(await readlink(join(out, 'app', 'link')), 'hello.txt');
  t.is((await lstat(join(out, 'app', 'hard'))).ino, (await lstat(join(out, 'app', 'hello.txt'))).ino);
  t.true((await lstat(join(out, 'bin', 'busybox'))).isFile());
  await t.throwsAsync(lstat(join(out, 'bin', 'vi')));
  // Nothing of the outputs is left in the store's tmp/ (except leases of nobody).
  t.deepEqual((await readdir(join(f.root, 'tmp'))).filter((n) => n.startsWith('output-')), []);
});

testSerialIf(missing, 'tsbuild build --output: writes a tar to stdout with dest=- and -o -, and rejects -q with it', async (t) => {
  const f = await makeFixture(t, { 'hello.txt': 'on stdout\n' });
  await writeFile(join(f.context, 'Dockerfile'), 'FROM scratch\nCOPY hello.txt /hello.txt\n');
  for (const flag of [['-o', '-'], ['--output', 'type=tar,dest=-']]) {
    const r = await cli(['--root', f.root, 'build', '--progress=plain', ...flag, '.'], { cwd: f.context, env: f.env });
    t.is(r.code, 0, r.stderr);
    t.true(r.stdout.startsWith('hello.txt\0'), r.stdout.slice(0, 100));
    t.is(r.stdout.length % 512, 0);
    t.true(r.stdout.includes('on stdout\n'));
    t.regex(r.stderr, /writing root file system tar to stdout done/);
  }
  const q = await cli(['--root', f.root, 'build', '-q', '-o', '-', '.'], { cwd: f.context, env: f.env });
  t.is(q.code, 125);
  t.regex(q.stderr, /CLI_BAD_VALUE: -q prints the image ID on stdout/);
});

testSerialIf(missing, 'tsbuild build --output: fails with a clear error and leaves no partial file when the destination cannot be written', async (t) => {
  const f = await makeFixture(t, { 'hello.txt': 'x\n' });
  const r = await build(f, 'FROM scratch\nCOPY hello.txt /hello.txt\n', ['--output', `type=oci,dest=${join(f.dir, 'no-such-dir', 'img.tar')}`]);
  t.is(r.code, 1);
  t.regex(r.stderr, /CLI_IO: cannot write oci archive .*no-such-dir\/img\.tar/);
  t.deepEqual(await readdir(f.dir).then((n) => n.filter((x) => x.includes('.tmp-'))), []);
});
