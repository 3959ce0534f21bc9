import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import test from 'ava';
import { MediaType, sha256Of, type Descriptor } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { openStore } from '../../src/store/index.js';
import { distMissing, runNode, runRecordingBuiltins, testBundle } from '../helpers/bundle.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

// A no-op push or pull is mostly Node's start-up: what the command loads beyond it is its cost. These
// run the CLI's esbuild bundle (what users run), built here from the current sources into dist/cli/.
const missing = distMissing ?? (await registryMissing());
const bundle = testBundle('bundle-noop-test');
test.after.always(() => bundle.remove());

testIf(missing, 'bundle: a no-op push and a no-op pull load neither child_process (credential helpers) nor zlib or worker_threads (compression, unpack, hash threads)', async (t) => {
  const reg = await startRegistry(t);
  const entry = await bundle.get();
  const dir = await tempDir(t, 'tsbuild-noop-');
  const env = { TSBUILD_CODE_CACHE_DIR: join(dir, 'code-cache'), DOCKER_CONFIG: join(dir, 'docker'), HOME: dir };
  const src = await openStore(join(dir, 'src'));
  // An empty tar (its end-of-archive blocks): the first pull unpacks it.
  const tar = Buffer.alloc(1024);
  const l = await src.blobs.putBytes(gzipSync(tar));
  const layer: Descriptor = { mediaType: MediaType.ociLayerGzip, digest: l.digest, size: l.size };
  const c = await src.blobs.putBytes(serializeDocument(addLayer(createEmptyConfig({ os: 'linux', architecture: 'amd64' }, '2024-01-01T00:00:00Z'), sha256Of(tar))));
  const m = await src.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, [layer])));
  await src.refs.set('docker.io/library/img:latest', { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size });
  const dest = `${reg.host}/team/img:v1`;
  const pushArgs = ['--root', join(dir, 'src'), 'push', '-q', 'img', dest];
  const first = await runNode([entry, ...pushArgs], { env });
  t.is(first.code, 0, first.stderr);
  const pullArgs = ['--root', join(dir, 'dst'), 'pull', '-q', '--platform', 'linux/amd64', dest];
  // The first pull downloads, so it unpacks: only the second is a no-op.
  const pulled = await runNode([entry, ...pullArgs], { env });
  t.is(pulled.code, 0, pulled.stderr);
  for (const args of [pushArgs, pullArgs]) {
    const r = await runRecordingBuiltins(entry, dir, args, env);
    t.is(r.code, 0, r.stderr);
    t.true(r.builtins.includes('http'), `${args[2]}: the record lists what was loaded`);
    t.deepEqual(r.builtins.filter((b) => ['child_process', 'zlib', 'worker_threads', 'https', 'tls'].includes(b)), [], `a no-op ${args[2]} loads none of them`);
  }
});
