import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MediaType, sha256Of, type Descriptor, type ImageManifest } from '../../src/core/index.js';
import { createIndex, createManifest, serializeDocument } from '../../src/image/index.js';
import { openStore } from '../../src/store/index.js';
import { cli } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, skopeoMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const missing = (await registryMissing()) ?? (await skopeoMissing()) ?? (await busyboxMissing());

testIf(missing, 'interop: skopeo inspects and copies an image when tsbuild pushed it', async (t) => {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  const base = await makeBusyboxImage(dir, root);
  const r = await cli(['--root', root, 'push', 'busybox', `${reg.host}/interop/box:v1`]);
  t.is(r.code, 0, r.stderr);
  const digest = /digest: (sha256:[0-9a-f]{64})/.exec(r.stdout)?.[1];
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/interop/box:v1`]);
  const info = JSON.parse(stdout) as { Digest: string; Architecture: string; Os: string; Layers: string[] };
  t.is(info.Digest, digest as string);
  t.is(info.Architecture, 'amd64');
  t.is(info.Layers.length, 1);
  const { stdout: cfg } = await run('skopeo', ['inspect', '--config', '--raw', '--tls-verify=false', `docker://${reg.host}/interop/box:v1`]);
  t.deepEqual((JSON.parse(cfg) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids, [base.diffId]);
  // skopeo verifies every blob while copying.
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/interop/box:v1`, `oci:${join(dir, 'layout')}:box`]);
});

testIf(missing, 'interop: tsbuild pulls the right platform when skopeo pushed a two-platform index', async (t) => {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const root = join(dir, 'layout-root');
  const base = await makeBusyboxImage(dir, root);
  // A second platform: the same layer with an arm64 config.
  const store = await openStore(root);
  const amd = (await store.blobs.readJson<ImageManifest>(base.manifest.digest)).value;
  const cfg = (await store.blobs.readJson<Record<string, unknown>>(base.configDigest)).value;
  const armCfg = await store.blobs.putBytes(serializeDocument({ ...cfg, architecture: 'arm64' }));
  const arm = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: armCfg.digest, size: armCfg.size }, amd.layers)));
  const index = createIndex([
    { ...base.manifest, platform: { os: 'linux', architecture: 'amd64' } },
    { mediaType: MediaType.ociManifest, digest: arm.digest, size: arm.size, platform: { os: 'linux', architecture: 'arm64' } } as Descriptor,
  ]);
  const idx = await store.blobs.putBytes(serializeDocument(index));
  await store.refs.set('multi', { mediaType: MediaType.ociIndex, digest: idx.digest, size: idx.size });
  await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${root}:multi`, `docker://${reg.host}/multi/box:v1`]);

  // skopeo compresses the layers on the way, so the pushed digests are what the registry holds now.
  const raw = (await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/multi/box:v1`])).stdout;
  const pushedIndex = JSON.parse(raw) as { manifests: Descriptor[] };
  const pushedAmd = pushedIndex.manifests.find((m) => m.platform?.architecture === 'amd64') as Descriptor;
  let r = await cli(['--root', join(dir, 'a'), 'pull', '--platform', 'linux/arm64', `${reg.host}/multi/box:v1`]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`Digest: ${sha256Of(raw)}`));
  r = await cli(['--root', join(dir, 'a'), 'inspect', '-f', '{{.Architecture}} {{.Id}}', `${reg.host}/multi/box:v1`]);
  t.is(r.stdout, `arm64 ${armCfg.digest}\n`);
  r = await cli(['--root', join(dir, 'b'), 'pull', '--platform', 'linux/amd64', `${reg.host}/multi/box:v1`]);
  t.is(r.code, 0, r.stderr);
  r = await cli(['--root', join(dir, 'b'), 'inspect', '-f', '{{.Architecture}} {{json .RepoDigests}}', `${reg.host}/multi/box:v1`]);
  t.is(r.stdout, `amd64 ["${reg.host}/multi/box@${pushedAmd.digest}"]\n`);
  r = await cli(['--root', join(dir, 'c'), 'pull', '--platform', 'linux/s390x', `${reg.host}/multi/box:v1`]);
  t.is(r.code, 1);
  t.regex(r.stderr, /IMAGE_NO_PLATFORM.*\nhint: available: linux\/amd64, linux\/arm64/);
  r = await cli(['--root', join(dir, 'c'), 'fsck']);
  t.is(r.code, 0, r.stderr);
});
