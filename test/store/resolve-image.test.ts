import test from 'ava';
import { mkdir, rm } from 'node:fs/promises';
import { MediaType, type Descriptor, type Digest } from '../../src/core/index.js';
import { listImages, openStore, resolveImage, type Store } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

/** Stores a config and a manifest naming it; returns the manifest's descriptor and the image ID. */
async function putImage(store: Store, label: string): Promise<{ manifest: Descriptor; id: Digest }> {
  const config = await store.blobs.putBytes(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: { label } }, rootfs: { type: 'layers', diff_ids: [] } }));
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size }, layers: [] });
  const info = await store.blobs.putBytes(manifest);
  return { manifest: { mediaType: MediaType.ociManifest, digest: info.digest, size: info.size }, id: config.digest };
}

test('resolveImage: a name gives every name of its digest and the image ID, as the listing does, without reading other images', async (t) => {
  const store = await openStore(await tempDir(t));
  const a = await putImage(store, 'a');
  const b = await putImage(store, 'b');
  await store.refs.set('docker.io/library/a:latest', a.manifest);
  await store.refs.set('docker.io/library/a:1', a.manifest);
  await store.refs.set('docker.io/library/b:latest', b.manifest);
  const listed = (await listImages(store)).find((i) => i.descriptor.digest === a.manifest.digest);
  const found = await resolveImage(store, 'a');
  t.deepEqual(found, listed);
  t.deepEqual([...found.names].sort(), ['docker.io/library/a:1', 'docker.io/library/a:latest']);
  t.is(found.configDigest, a.id);
  // Another image's manifest is not read for a name: its blob may be gone (a half-finished rmi).
  await rm(store.blobs.pathOf(b.manifest.digest));
  t.is((await resolveImage(store, 'docker.io/library/a:1')).configDigest, a.id);
  // IDs and digests still resolve through the listing.
  t.is((await resolveImage(store, a.id.slice(7, 19))).descriptor.digest, a.manifest.digest);
  t.is((await resolveImage(store, `a@${a.manifest.digest}`)).descriptor.digest, a.manifest.digest);
  await t.throwsAsync(resolveImage(store, 'c'), { code: 'STORE_IMAGE_NOT_FOUND' });
});

test('readJson: a missing blob is STORE_BLOB_NOT_FOUND, a directory in its place too, a non-JSON one STORE_BAD_JSON', async (t) => {
  const store = await openStore(await tempDir(t));
  const bad = await store.blobs.putBytes('not json');
  await t.throwsAsync(store.blobs.readJson(bad.digest), { code: 'STORE_BAD_JSON' });
  const gone = await store.blobs.putBytes('{}');
  await rm(store.blobs.pathOf(gone.digest));
  await t.throwsAsync(store.blobs.readJson(gone.digest), { code: 'STORE_BLOB_NOT_FOUND' });
  await mkdir(store.blobs.pathOf(gone.digest));
  await t.throwsAsync(store.blobs.readJson(gone.digest), { code: 'STORE_BLOB_NOT_FOUND' });
});
