import test from 'ava';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { MediaType, parseReference, sha256Of, type Descriptor } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { HttpRegistryClient, pullImage, pushImage } from '../../src/registry/index.js';
import { checkStore, openStore } from '../../src/store/index.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startProxy, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const missing = (await registryMissing()) ?? (await busyboxMissing());
const platform = { os: 'linux', architecture: 'amd64' };

testIf(missing, 'push then pull: the registry round trip is byte-identical when pushing a busybox image', async (t) => {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const base = await makeBusyboxImage(dir, join(dir, 'src-root'));
  const src = await openStore(join(dir, 'src-root'));
  const client = new HttpRegistryClient({ retryBaseMs: 10 });
  t.teardown(() => client.close());
  const dest = parseReference(`${reg.host}/team/busybox:v1`);
  const pushed = await pushImage(client, src, base.manifest, dest);
  t.is(pushed.uploaded, 2);
  t.is(pushed.existing, 0);

  const dst = await openStore(join(dir, 'dst-root'));
  const pulled = await pullImage(client, dst, dest, { platform });
  t.is(pulled.manifest.digest, pushed.digest);
  t.is(pulled.repoDigest, pushed.digest);
  t.is(pulled.configDigest, base.configDigest);
  t.is(pulled.downloaded, 2);
  const manifest = (await dst.blobs.readJson<{ layers: Descriptor[]; config: Descriptor }>(pulled.manifest.digest)).value;
  t.is(manifest.layers[0]?.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  // The compressed layer pulled is the one pushed, and the config is byte-identical.
  t.deepEqual(await readFile(dst.blobs.pathOf(base.configDigest)), await readFile(src.blobs.pathOf(base.configDigest)));
  const layer = manifest.layers[0] as Descriptor;
  t.deepEqual(await readFile(dst.blobs.pathOf(layer.digest)), await readFile(src.blobs.pathOf(layer.digest)));
  const raw = await fetch(`${reg.url}/v2/team/busybox/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const bytes = Buffer.from(await raw.arrayBuffer());
  t.is(sha256Of(bytes), pulled.manifest.digest);
  t.deepEqual(await readFile(dst.blobs.pathOf(pulled.manifest.digest)), bytes);
  t.is((await dst.refs.get(`${reg.host}/team/busybox:v1`))?.digest, pulled.manifest.digest);
  t.deepEqual((await checkStore(dst)).problems, []);

  // A second push finds every blob, a second pull downloads nothing.
  const again = await pushImage(client, src, base.manifest, dest);
  t.deepEqual([again.uploaded, again.existing, again.digest], [0, 2, pushed.digest]);
  const again2 = await pullImage(client, dst, dest, { platform });
  t.is(again2.downloaded, 0);
});

testIf(missing, 'push: large blobs go up in PATCH chunks and a second repository mounts the blobs when the store knows where they are', async (t) => {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const base = await makeBusyboxImage(dir, join(dir, 'root'));
  const store = await openStore(join(dir, 'root'));
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  const first = await pushImage(client, store, base.manifest, parseReference(`${reg.host}/one/box:v1`), { chunkBytes: 256 * 1024, monolithicMaxBytes: 64 * 1024 });
  t.is(first.uploaded, 2);
  const patches = reg.logs().match(/"PATCH \/v2\/one\/box\/blobs\/uploads\/[^"]*" 202/g) ?? [];
  t.true(patches.length >= 3, `expected several chunks, saw ${patches.length}`);
  const second = await pushImage(client, store, base.manifest, parseReference(`${reg.host}/two/box:v1`));
  t.deepEqual([second.mounted, second.uploaded, second.existing], [2, 0, 0]);
  t.regex(reg.logs(), /"POST \/v2\/two\/box\/blobs\/uploads\/\?mount=sha256:[0-9a-f]{64}&from=one%2Fbox HTTP\/1\.1" 201/);
  t.is(second.digest, first.digest);

  // What was pushed in chunks pulls back intact.
  const dst = await openStore(join(dir, 'dst'));
  const pulled = await pullImage(client, dst, parseReference(`${reg.host}/two/box:v1`), { platform });
  t.is(pulled.manifest.digest, first.digest);
  t.deepEqual((await checkStore(dst)).problems, []);
});

testIf(missing, 'push: a chunked upload interrupted midway resumes from the registry\'s offset when pushed again', async (t) => {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const store = await openStore(join(dir, 'root'));
  const blob = randomBytes(2 * 1024 * 1024);
  const l = await store.blobs.put(Readable.from([blob]));
  const c = await store.blobs.putBytes(serializeDocument(addLayer(createEmptyConfig(platform, '2024-01-01T00:00:00Z'), l.digest)));
  const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, [{ mediaType: MediaType.ociLayerGzip, digest: l.digest, size: l.size }])));
  const manifest = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
  const abort = new AbortController();
  let patches = 0;
  // A "crash" after the third chunk was acknowledged: the proxy aborts the push when the fourth arrives.
  const proxy = await startProxy(t, reg.url, (x) => {
    if (x.req.method === 'PATCH' && ++patches === 4) {
      abort.abort();
      x.res.destroy();
      return;
    }
    return x.forward();
  });
  const dest = parseReference(`${proxy.host}/resume/img:1`);
  const options = { chunkBytes: 256 * 1024, monolithicMaxBytes: 1024 };
  const first = new HttpRegistryClient();
  t.teardown(() => first.close());
  await t.throwsAsync(pushImage(first, store, manifest, dest, { ...options, signal: abort.signal }));
  const second = new HttpRegistryClient();
  t.teardown(() => second.close());
  const events: string[] = [];
  await pushImage(second, store, manifest, dest, { ...options, onEvent: (e) => e.type === 'info' && events.push(e.message) });
  t.deepEqual(events, [`${l.digest.slice(7, 19)}: resuming the upload at byte ${3 * 256 * 1024}`]);
  // 8 chunks in all: 3 before the crash, the aborted 4th, then chunks 4..8 again.
  t.is(patches, 3 + 1 + 5);
  t.true(proxy.requests.some((r) => r.method === 'GET' && r.url.includes('/blobs/uploads/')));
  const dst = await openStore(join(dir, 'dst'));
  await pullImage(second, dst, dest, { platform });
  t.deepEqual(await readFile(dst.blobs.pathOf(l.digest)), blob);
});
