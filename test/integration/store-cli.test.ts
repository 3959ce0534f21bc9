import test from 'ava';
import { readFile, writeFile, readdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveStoreRoot } from '../../src/cli/store-root.js';
import { openStore, checkStore } from '../../src/store/index.js';
import { humanSize, timeAgo } from '../../src/cli/commands/image-info.js';
import { cli } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage, makeBusyboxRootfs, tarDirectory } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

const noBusybox = await busyboxMissing();

test('store root: --root wins, then $TSBUILD_ROOT, then the per-user default when resolving', (t) => {
  const base = { cwd: '/w', env: {} as Record<string, string | undefined> };
  t.is(resolveStoreRoot({ ...base, global: { root: 'r', debug: false } }, 1000), '/w/r');
  t.is(resolveStoreRoot({ ...base, env: { TSBUILD_ROOT: '/t' }, global: { debug: false } }, 0), '/t');
  t.is(resolveStoreRoot({ ...base, global: { debug: false } }, 0), '/var/lib/tsbuild');
  t.is(resolveStoreRoot({ ...base, env: { XDG_DATA_HOME: '/x' }, global: { debug: false } }, 1000), '/x/tsbuild');
  t.is(resolveStoreRoot({ ...base, env: { HOME: '/home/u' }, global: { debug: false } }, 1000), '/home/u/.local/share/tsbuild');
});

testIf(noBusybox, 'images/tag/inspect/history/rmi: behave like docker when managing a busybox image', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  const base = await makeBusyboxImage(dir, root);
  const r = ['--root', root];
  let res = await cli([...r, 'images']);
  t.is(res.code, 0, res.stderr);
  const lines = res.stdout.trim().split('\n');
  t.regex(lines[0] as string, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
  t.regex(lines[1] as string, new RegExp(`^busybox\\s+latest\\s+${base.configDigest.slice(7, 19)}\\s+\\d+ years ago\\s+2\\.\\d+MB$`));

  t.is((await cli([...r, 'tag', 'busybox', 'localhost:5000/team/box:v1'])).code, 0);
  res = await cli([...r, 'images', '--format', 'json']);
  const rows = res.stdout.trim().split('\n').map((l) => JSON.parse(l) as { Repository: string; Tag: string; ID: string });
  t.deepEqual(rows.map((x) => `${x.Repository}:${x.Tag}`).sort(), ['busybox:latest', 'localhost:5000/team/box:v1']);
  t.true(rows.every((x) => x.ID === base.configDigest.slice(7, 19)));
  t.is((await cli([...r, 'images', '-q'])).stdout, `${base.configDigest.slice(7, 19)}\n`);
  t.is((await cli([...r, 'images', 'busybox'])).stdout.trim().split('\n').length, 2);

  res = await cli([...r, 'inspect', 'localhost:5000/team/box:v1']);
  const [info] = JSON.parse(res.stdout) as [{ Id: string; RepoTags: string[]; RootFS: { Layers: string[] }; Config: { Cmd: string[] }; Os: string }];
  t.is(info.Id, base.configDigest);
  t.deepEqual(info.RepoTags.sort(), ['busybox:latest', 'localhost:5000/team/box:v1']);
  t.deepEqual(info.RootFS.Layers, [base.diffId]);
  t.deepEqual(info.Config.Cmd, ['sh']);
  t.is((await cli([...r, 'inspect', '-f', '{{.Os}} {{json .Config.Cmd}}', base.configDigest.slice(7, 15)])).stdout, 'linux ["sh"]\n');

  res = await cli([...r, 'history', 'busybox']);
  const hist = res.stdout.trim().split('\n');
  t.is(hist.length, 3);
  t.regex(hist[1] as string, /^[0-9a-f]{12}\s+.*CMD \["sh"\]\s+0B/);
  t.regex(hist[2] as string, /^<missing>\s+.*busybox --install -s \/bin\s+2\.\d+MB/);

  res = await cli([...r, 'rmi', base.configDigest.slice(7, 19)]);
  t.is(res.code, 1);
  t.regex(res.stderr, /referenced in multiple repositories/);
  res = await cli([...r, 'rmi', 'busybox']);
  t.is(res.stdout, 'Untagged: busybox:latest\n');
  const store = await openStore(root);
  t.true(await store.blobs.has(base.diffId));
  res = await cli([...r, 'rmi', 'localhost:5000/team/box:v1']);
  t.is(res.stdout, `Untagged: localhost:5000/team/box:v1\nDeleted: ${base.configDigest}\n`);
  t.false(await store.blobs.has(base.diffId));
  t.deepEqual(await readdir(store.paths.blobs), []);
  res = await cli([...r, 'rmi', 'busybox']);
  t.is(res.code, 1);
  t.regex(res.stderr, /no such image: busybox/);
  t.is((await cli([...r, 'rmi', '-f', 'busybox'])).code, 0);
});

testIf(noBusybox, 'import: makes a one-layer image with --change edits when given a rootfs tarball', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxRootfs(join(dir, 'fs'));
  await tarDirectory(join(dir, 'fs'), join(dir, 'fs.tar'));
  const res = await cli(['--root', root, 'import', '--change', 'CMD ["/bin/sh"]', '-c', 'ENV A=1', '-m', 'hello', join(dir, 'fs.tar'), 'imported:v2'], { env: { SOURCE_DATE_EPOCH: '1700000000' } });
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /^sha256:[0-9a-f]{64}\n$/);
  const [info] = JSON.parse((await cli(['--root', root, 'inspect', 'imported:v2'])).stdout) as [{ Id: string; Config: { Cmd: string[]; Env: string[] }; Comment: string; Created: string; RootFS: { Layers: string[] } }];
  t.is(info.Id, res.stdout.trim());
  t.deepEqual(info.Config.Cmd, ['/bin/sh']);
  t.deepEqual(info.Config.Env, ['A=1']);
  t.is(info.Comment, 'hello');
  t.is(info.Created, '2023-11-14T22:13:20.000Z');
  const { sha256Of } = await import('../../src/core/index.js');
  t.is(info.RootFS.Layers[0], sha256Of(await readFile(join(dir, 'fs.tar'))));
  // The same tarball gzip-compressed, from stdin, untagged: same diffID.
  const { gzipSync } = await import('node:zlib');
  const gz = await cli(['--root', root, 'import', '-'], { stdin: gzipSync(await readFile(join(dir, 'fs.tar'))), env: { SOURCE_DATE_EPOCH: '1700000000' } });
  t.is(gz.code, 0, gz.stderr);
  const again = JSON.parse((await cli(['--root', root, 'inspect', gz.stdout.trim()])).stdout) as [{ RootFS: { Layers: string[] }; RepoTags: string[] }];
  t.deepEqual(again[0].RootFS.Layers, info.RootFS.Layers);
  t.deepEqual(again[0].RepoTags, []);
  t.regex((await cli(['--root', root, 'images'])).stdout, /<none>\s+<none>/);
  const bad = await cli(['--root', root, 'import', '--change', 'RUN true', join(dir, 'fs.tar'), 'x']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /IMAGE_BAD_CHANGE/);
});

testIf(noBusybox, 'save/load: round-trips images in oci, docker and gzip archives when saved by tsbuild', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  const base = await makeBusyboxImage(dir, root);
  await cli(['--root', root, 'tag', 'busybox', 'other/name:2']);
  for (const format of ['oci', 'docker']) {
    const file = join(dir, `${format}.tar`);
    const saved = await cli(['--root', root, 'save', '-o', file, '--format', format, 'busybox', 'other/name:2']);
    t.is(saved.code, 0, saved.stderr);
    const root2 = join(dir, `root-${format}`);
    const loaded = await cli(['--root', root2, 'load', '-i', file]);
    t.is(loaded.code, 0, loaded.stderr);
    t.is(loaded.stdout, 'Loaded image: busybox:latest\nLoaded image: other/name:2\n');
    const [info] = JSON.parse((await cli(['--root', root2, 'inspect', 'other/name:2'])).stdout) as [{ Id: string }];
    t.is(info.Id, base.configDigest);
    const report = await checkStore(await openStore(root2));
    t.deepEqual(report.problems, []);
    t.is(report.unreferenced, 0);
  }
  // Byte-identical archives for the same images.
  await cli(['--root', root, 'save', '-o', join(dir, 'again.tar'), '--format', 'docker', 'busybox', 'other/name:2']);
  t.deepEqual(await readFile(join(dir, 'again.tar')), await readFile(join(dir, 'docker.tar')));
  const { gzipSync } = await import('node:zlib');
  await writeFile(join(dir, 'x.tar.gz'), gzipSync(await readFile(join(dir, 'oci.tar'))));
  const gz = await cli(['--root', join(dir, 'root-gz'), 'load', '-i', join(dir, 'x.tar.gz')]);
  t.is(gz.code, 0, gz.stderr);
  t.regex(gz.stdout, /Loaded image: busybox:latest/);
  // stdin in, stdout out.
  const out = await cli(['--root', root, 'save', 'busybox']);
  t.is(out.code, 0);
  const bad = await cli(['--root', join(dir, 'root-bad'), 'load'], { stdin: 'not a tar at all' });
  t.is(bad.code, 1);
  t.regex(bad.stderr, /STORE_BAD_ARCHIVE/);
});

testIf(noBusybox, 'fsck/prune: damage is reported and garbage removed when the store is corrupted', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  const base = await makeBusyboxImage(dir, root);
  const r = ['--root', root];
  t.regex((await cli([...r, 'fsck'])).stdout, /checked 3 blobs .* 1 references .*: consistent\n$/);
  const store = await openStore(root);
  const stray = await store.blobs.putBytes('unreferenced');
  const old = new Date(Date.now() - 3600_000);
  await utimes(store.blobs.pathOf(stray.digest), old, old);
  await writeFile(join(store.paths.tmp, 'blob-4194305-deadbeef'), 'partial');
  let res = await cli([...r, 'fsck']);
  t.is(res.code, 0);
  t.regex(res.stdout, /1 unreferenced blobs, 1 leftovers in tmp/);
  res = await cli([...r, 'prune', '--dry-run']);
  t.regex(res.stdout, new RegExp(`Would delete: ${stray.digest}`));
  t.true(await store.blobs.has(stray.digest));
  res = await cli([...r, 'prune']);
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, new RegExp(`Deleted: ${stray.digest}`));
  t.regex(res.stdout, /Total reclaimed space: 12B \(and 1 leftovers in tmp\/\)/);
  t.false(await store.blobs.has(stray.digest));
  t.deepEqual(await readdir(store.paths.tmp), []);
  t.true(await store.blobs.has(base.diffId));
  // Corrupt the layer (same size, flipped byte) and delete the config.
  const layerPath = store.blobs.pathOf(base.diffId);
  const bytes = await readFile(layerPath);
  bytes[1000] = (bytes[1000] as number) ^ 0xff;
  await writeFile(layerPath, bytes);
  await store.blobs.delete(base.configDigest);
  res = await cli([...r, 'fsck']);
  t.is(res.code, 1);
  t.regex(res.stdout, new RegExp(`corrupt-blob: blob ${base.diffId} has content sha256:`));
  t.regex(res.stdout, new RegExp(`missing-blob: blob ${base.configDigest} .* is missing`));
  t.regex(res.stdout, /2 problems/);
  const json = JSON.parse((await cli([...r, 'fsck', '--json'])).stdout) as { consistent: boolean };
  t.false(json.consistent);
});

testIf(noBusybox, 'fsck: an image whose config lists fewer diff_ids than layers is reported when inconsistent', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  const base = await makeBusyboxImage(dir, root);
  const store = await openStore(root);
  const manifest = (await store.blobs.readJson<{ layers: unknown[] }>(base.manifest.digest)).value;
  const doubled = await store.blobs.putBytes(JSON.stringify({ ...manifest, layers: [...manifest.layers, ...manifest.layers] }));
  await store.refs.set('docker.io/library/broken:1', { ...base.manifest, digest: doubled.digest, size: doubled.size });
  const res = await cli(['--root', root, 'fsck']);
  t.is(res.code, 1);
  t.regex(res.stdout, /invalid-image: image docker.io\/library\/broken:1: the manifest has 2 layers but the config has 1 diff_ids/);
});

test('image info: sizes and relative times print like docker when formatting', (t) => {
  t.is(humanSize(512), '512B');
  t.is(humanSize(2_130_392), '2.13MB');
  t.is(humanSize(1_500_000_000), '1.5GB');
  const now = Date.parse('2024-01-10T00:00:00Z');
  t.is(timeAgo('2024-01-09T23:59:30Z', now), '30 seconds ago');
  t.is(timeAgo('2024-01-09T21:00:00Z', now), '3 hours ago');
  t.is(timeAgo('2024-01-01T00:00:00Z', now), '9 days ago');
  t.is(timeAgo(undefined, now), 'N/A');
});
