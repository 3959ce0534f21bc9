import test from 'ava';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { MediaType } from '../../src/core/index.js';
import { compressedLayer, isUncompressedLayer } from '../../src/registry/index.js';
import { openStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

test('compressedLayer: gzips an uncompressed layer once and reuses the result when pushed again', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(join(dir, 'root'));
  const data = Buffer.concat([randomBytes(100_000), Buffer.alloc(400_000, 7)]);
  const l = await store.blobs.put(Readable.from([data]));
  const layer = { mediaType: MediaType.ociLayer, digest: l.digest, size: l.size, annotations: { a: 'b' } };
  t.true(isUncompressedLayer(layer));
  const gz = await compressedLayer(store, layer);
  t.is(gz.mediaType, MediaType.ociLayerGzip);
  t.deepEqual(gz.annotations, { a: 'b' });
  t.true(gz.size < data.length);
  t.false(isUncompressedLayer(gz));
  t.deepEqual(gunzipSync(await readFile(store.blobs.pathOf(gz.digest))), data);
  const again = await compressedLayer(store, layer);
  t.is(again.digest, gz.digest);
  const record = JSON.parse(await readFile(join(store.paths.cache, 'registry-compressed.json'), 'utf8')) as Record<string, { digest: string }>;
  t.is(record[l.digest]?.digest, gz.digest);
  // Docker's uncompressed type maps to Docker's gzip type.
  const docker = await compressedLayer(store, { ...layer, mediaType: 'application/vnd.docker.image.rootfs.diff.tar' });
  t.is(docker.mediaType, MediaType.dockerLayerGzip);
  t.is(docker.digest, gz.digest);
});

test('compressedLayer: compresses again when the remembered blob was removed by a prune', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(join(dir, 'root'));
  const l = await store.blobs.put(Readable.from([Buffer.alloc(50_000, 1)]));
  const layer = { mediaType: MediaType.ociLayer, digest: l.digest, size: l.size };
  const gz = await compressedLayer(store, layer);
  await store.blobs.delete(gz.digest);
  const again = await compressedLayer(store, layer);
  t.true(await store.blobs.has(again.digest));
  t.deepEqual(gunzipSync(await readFile(store.blobs.pathOf(again.digest))), Buffer.alloc(50_000, 1));
});
