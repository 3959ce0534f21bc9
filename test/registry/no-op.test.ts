import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MediaType, parseReference, type Descriptor } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createIndex, createManifest, serializeDocument } from '../../src/image/index.js';
import { HttpRegistryClient, pullImage, pushImage } from '../../src/registry/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startProxy, startRegistry, type TestProxy } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const missing = await registryMissing();
const amd64 = { os: 'linux', architecture: 'amd64' };
const arm64 = { os: 'linux', architecture: 'arm64' };

/** An image of one random 64 KiB layer for `platform` in `store`; resolves to its manifest descriptor and layer. */
async function makeImage(store: Store, platform: typeof amd64, layerBytes = randomBytes(64 * 1024)): Promise<{ manifest: Descriptor; layer: Descriptor }> {
  const l = await store.blobs.putBytes(layerBytes);
  const layer: Descriptor = { mediaType: MediaType.ociLayerGzip, digest: l.digest, size: l.size };
  const c = await store.blobs.putBytes(serializeDocument(addLayer(createEmptyConfig(platform, '2024-01-01T00:00:00Z'), l.digest)));
  const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, [layer])));
  return { manifest: { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size }, layer };
}

/** A fresh client per operation, as each CLI command has; closed by the teardown. */
function client(t: ExecutionContext): HttpRegistryClient {
  const c = new HttpRegistryClient({ retryBaseMs: 5 });
  t.teardown(() => c.close());
  return c;
}

/**
 * The requests the proxy saw since `from`, as `METHOD path`, without the scheme probe of a loopback
 * registry that a fresh client sends first (`GET /v2/` over plain HTTP, once per client: it replaces a
 * TLS attempt, transport.ts schemeOf); any other `GET /v2/` counts.
 */
function seen(proxy: TestProxy, from: number): string[] {
  const requests = proxy.requests.slice(from).map((r) => `${r.method} ${r.url}`);
  return requests[0] === 'GET /v2/' ? requests.slice(1) : requests;
}

testIf(missing, 'pull: a no-op pull sends one manifest HEAD when the store holds the named image', async (t) => {
  const reg = await startRegistry(t);
  const proxy = await startProxy(t, reg.url);
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const image = await makeImage(src, amd64);
  await pushImage(client(t), src, image.manifest, parseReference(`${reg.host}/team/img:v1`));
  const dst = await openStore(join(dir, 'dst'));
  const ref = parseReference(`${proxy.host}/team/img:v1`);
  const first = await pullImage(client(t), dst, ref, { platform: amd64 });
  t.is(first.downloaded, 2);
  const before = proxy.requests.length;
  const again = await pullImage(client(t), dst, ref, { platform: amd64 });
  t.deepEqual(seen(proxy, before), ['HEAD /v2/team/img/manifests/v1']);
  t.deepEqual([again.downloaded, again.present, again.repoDigest, again.manifest.digest, again.name], [0, 2, image.manifest.digest, image.manifest.digest, `${proxy.host}/team/img:v1`]);
  t.is((await dst.refs.get(`${proxy.host}/team/img:v1`))?.digest, image.manifest.digest);
});

testIf(missing, 'pull: a no-op pull of a two-platform index sends one HEAD when the platform\'s image is stored', async (t) => {
  const reg = await startRegistry(t);
  const proxy = await startProxy(t, reg.url);
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const a = await makeImage(src, amd64);
  const b = await makeImage(src, arm64);
  const idx = await src.blobs.putBytes(serializeDocument(createIndex([{ ...a.manifest, platform: amd64 }, { ...b.manifest, platform: arm64 }])));
  const index: Descriptor = { mediaType: MediaType.ociIndex, digest: idx.digest, size: idx.size };
  await pushImage(client(t), src, index, parseReference(`${reg.host}/multi/img:v1`));
  const dst = await openStore(join(dir, 'dst'));
  const ref = parseReference(`${proxy.host}/multi/img:v1`);
  await pullImage(client(t), dst, ref, { platform: arm64 });
  const before = proxy.requests.length;
  const again = await pullImage(client(t), dst, ref, { platform: arm64 });
  // Without the HEAD: GET of the index, then GET of the arm64 manifest.
  t.deepEqual(seen(proxy, before), ['HEAD /v2/multi/img/manifests/v1']);
  t.deepEqual([again.downloaded, again.repoDigest, again.manifest.digest], [0, index.digest, b.manifest.digest]);
  // The other platform is not stored: that pull fetches the index, the amd64 manifest and its blobs.
  const mid = proxy.requests.length;
  const other = await pullImage(client(t), dst, ref, { platform: amd64 });
  t.is(other.manifest.digest, a.manifest.digest);
  t.true(seen(proxy, mid).includes(`GET /v2/multi/img/manifests/${a.manifest.digest}`));
});

testIf(missing, 'pull: the full pull runs when a blob of the named image is missing from the store', async (t) => {
  const reg = await startRegistry(t);
  const proxy = await startProxy(t, reg.url);
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const image = await makeImage(src, amd64);
  await pushImage(client(t), src, image.manifest, parseReference(`${reg.host}/team/img:v1`));
  const dst = await openStore(join(dir, 'dst'));
  const ref = parseReference(`${proxy.host}/team/img:v1`);
  await pullImage(client(t), dst, ref, { platform: amd64 });
  await rm(dst.blobs.pathOf(image.layer.digest));
  const before = proxy.requests.length;
  const again = await pullImage(client(t), dst, ref, { platform: amd64 });
  t.deepEqual(seen(proxy, before), ['HEAD /v2/team/img/manifests/v1', 'GET /v2/team/img/manifests/v1', `GET /v2/team/img/blobs/${image.layer.digest}`]);
  t.deepEqual([again.downloaded, again.present], [1, 1]);
  t.is((await dst.blobs.stat(image.layer.digest))?.size, image.layer.size);
});

testIf(missing, 'push: a no-op push sends one manifest HEAD and no blob HEADs when the tag already has the image', async (t) => {
  const reg = await startRegistry(t);
  const proxy = await startProxy(t, reg.url);
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const image = await makeImage(src, amd64);
  const dest = parseReference(`${proxy.host}/team/img:v1`);
  const first = await pushImage(client(t), src, image.manifest, dest);
  t.deepEqual([first.uploaded, first.existing], [2, 0]);
  const before = proxy.requests.length;
  const again = await pushImage(client(t), src, image.manifest, dest);
  t.deepEqual(seen(proxy, before), ['HEAD /v2/team/img/manifests/v1']);
  t.deepEqual([again.digest, again.uploaded, again.mounted, again.existing], [image.manifest.digest, 0, 0, 2]);
});

testIf(missing, 'push: blobs are checked and the manifest PUT when the tag points at another image', async (t) => {
  const reg = await startRegistry(t);
  const proxy = await startProxy(t, reg.url);
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const layerBytes = randomBytes(64 * 1024);
  const older = await makeImage(src, amd64, layerBytes);
  const newer = await makeImage(src, arm64, layerBytes);
  const dest = parseReference(`${proxy.host}/team/img:v1`);
  await pushImage(client(t), src, older.manifest, dest);
  const before = proxy.requests.length;
  const r = await pushImage(client(t), src, newer.manifest, dest);
  const sent = seen(proxy, before);
  t.is(sent[0], 'HEAD /v2/team/img/manifests/v1');
  t.true(sent.includes(`HEAD /v2/team/img/blobs/${newer.layer.digest}`));
  t.is(sent.at(-1), 'PUT /v2/team/img/manifests/v1');
  t.deepEqual([r.uploaded, r.existing], [1, 1]);
  t.is((await client(t).manifestDigest({ host: reg.host, path: 'team/img' }, 'v1'))?.digest, newer.manifest.digest);
});

testIf(missing, 'push: one bearer token with pull,push serves every request when pushing to a token registry', async (t) => {
  const reg = await startRegistry(t, { auth: 'token', users: { alice: { password: 'pw' } } });
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const image = await makeImage(src, amd64);
  const c = new HttpRegistryClient({ caFiles: reg.caFile === undefined ? [] : [reg.caFile], credentials: async () => ({ username: 'alice', password: 'pw' }) });
  t.teardown(() => c.close());
  const before = reg.tokenRequests.length;
  const r = await pushImage(c, src, image.manifest, parseReference(`${reg.host}/t/img:v1`));
  t.is(r.uploaded, 2);
  // Reads (manifest and blob HEADs) and writes share the token asked for pull,push up-front.
  t.deepEqual(reg.tokenRequests.slice(before).map((x) => x.scopes), [['repository:t/img:pull,push']]);
});
