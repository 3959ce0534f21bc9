import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { checkStore, openStore, withCompressedLayers } from '../../src/store/index.js';
import { cli } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);

async function missing(...tools: string[]): Promise<string | undefined> {
  const bb = await busyboxMissing();
  if (bb !== undefined) return bb;
  for (const tool of tools) {
    try {
      await run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      return `${tool} is not installed (apt-get install ${tool})`;
    }
  }
  return undefined;
}

const noSkopeo = await missing('skopeo');
const noUmoci = await missing('umoci');

testIf(noSkopeo, 'interop: skopeo inspects and copies our store when reading it as an OCI layout', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  const base = await makeBusyboxImage(dir, root);
  const { stdout } = await run('skopeo', ['inspect', `oci:${root}:${base.name}`]);
  const info = JSON.parse(stdout) as { Digest: string; Layers: string[]; Architecture: string; Os: string };
  t.is(info.Digest, base.manifest.digest);
  t.deepEqual(info.Layers, [base.diffId]);
  t.is(info.Os, 'linux');
  const archive = join(dir, 'copy.tar');
  await run('skopeo', ['copy', `oci:${root}:${base.name}`, `oci-archive:${archive}`]);
  t.true((await stat(archive)).size > 1_000_000);
  const { stdout: raw } = await run('skopeo', ['inspect', '--config', `oci-archive:${archive}`]);
  t.deepEqual((JSON.parse(raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids, [base.diffId]);
});

testIf(noSkopeo, 'interop: tsbuild loads what skopeo wrote when given oci-archive, docker-archive and oci layouts', async (t) => {
  const dir = await tempDir(t);
  const base = await makeBusyboxImage(dir, join(dir, 'src'));
  const src = `oci:${join(dir, 'src')}:${base.name}`;
  // skopeo compresses layers for oci-archive and names the image only by tag.
  await run('skopeo', ['copy', src, `oci-archive:${join(dir, 'a.tar')}:latest`]);
  await run('skopeo', ['copy', src, `docker-archive:${join(dir, 'd.tar')}:team/box:v3`]);
  await run('skopeo', ['copy', src, `oci:${join(dir, 'layout')}:v9`]);
  const root = join(dir, 'root');
  let res = await cli(['--root', root, 'load', '-i', join(dir, 'a.tar'), '--tag', 'busybox:fromoci']);
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'Loaded image: busybox:fromoci\n');
  res = await cli(['--root', root, 'load', '-i', join(dir, 'a.tar')]);
  t.regex(res.stderr, /only the tag "latest"; loaded untagged/);
  res = await cli(['--root', root, 'load', '-i', join(dir, 'd.tar')]);
  t.is(res.stdout, 'Loaded image: team/box:v3\n', res.stderr);
  res = await cli(['--root', root, 'load', '-i', join(dir, 'layout'), '--tag', 'fromdir']);
  t.is(res.stdout, 'Loaded image: fromdir:latest\n', res.stderr);
  for (const name of ['busybox:fromoci', 'team/box:v3', 'fromdir']) {
    const [info] = JSON.parse((await cli(['--root', root, 'inspect', name])).stdout) as [{ Id: string; RootFS: { Layers: string[] } }];
    t.is(info.Id, base.configDigest, name);
    t.deepEqual(info.RootFS.Layers, [base.diffId]);
  }
  const report = await checkStore(await openStore(root));
  t.deepEqual(report.problems, []);
  // And our docker-format save is readable by skopeo's docker-archive transport.
  await cli(['--root', root, 'save', '-o', join(dir, 'ours.tar'), 'team/box:v3']);
  const { stdout } = await run('skopeo', ['inspect', `docker-archive:${join(dir, 'ours.tar')}`]);
  t.deepEqual((JSON.parse(stdout) as { RepoTags: string[]; Layers: string[] }).Layers.length, 1);
  await run('skopeo', ['copy', `docker-archive:${join(dir, 'ours.tar')}`, `oci:${join(dir, 'back')}:x`]);
});

testIf(noUmoci, 'interop: umoci unpacks our image and tar lists our layer when reading the store', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  const base = await makeBusyboxImage(dir, root);
  const bundle = join(dir, 'bundle');
  await run('umoci', ['unpack', '--image', `${root}:${base.name}`, bundle]);
  t.is(await readlink(join(bundle, 'rootfs', 'bin', 'sh')), '/bin/busybox');
  t.deepEqual(await readFile(join(bundle, 'rootfs', 'bin', 'busybox')), await readFile('/bin/busybox'));
  const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { args: string[] } };
  t.deepEqual(spec.process.args, ['sh']);
  const store = await openStore(root);
  const { stdout } = await run('tar', ['-tvf', store.blobs.pathOf(base.diffId)]);
  t.regex(stdout, /^lrwxrwxrwx 0\/0\s+0 1970-01-01 00:00 \.\/bin\/sh -> \/bin\/busybox$/m);
  t.regex(stdout, /^-rwxr-xr-x 0\/0\s+\d+ 1970-01-01 00:00 \.\/bin\/busybox$/m);
  t.regex(stdout, /^drwxrwxrwt 0\/0\s+0 1970-01-01 00:00 \.\/tmp\/$/m);
  // Our saved archives list as an OCI layout plus docker's manifest.json.
  await cli(['--root', root, 'save', '-o', join(dir, 'saved.tar'), 'busybox']);
  const { stdout: listing } = await run('tar', ['-tvf', join(dir, 'saved.tar')]);
  const names = listing.trim().split('\n').map((l) => l.split(/\s+/).at(-1));
  // The layer is saved gzip-compressed (remembered per diffID), so the saved manifest is a rewritten one.
  const saved = await withCompressedLayers(store, base.manifest);
  const savedLayer = (await store.blobs.readJson<{ layers: { digest: string }[] }>(saved.digest)).value.layers[0]?.digest as string;
  t.not(savedLayer, base.diffId);
  t.deepEqual(names, ['blobs/', 'blobs/sha256/', 'oci-layout', 'index.json', 'manifest.json', 'repositories',
    ...[base.configDigest, savedLayer, saved.digest].sort().map((d) => `blobs/sha256/${d.slice(7)}`)]);
});
