import test from 'ava';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Of } from '../../src/core/index.js';
import { BuildCacheStore, BUILD_LAYER_MEDIA_TYPE } from '../../src/solve/index.js';
import { openStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

test('BuildCacheStore: returns the recorded layer when its blob is stored', async (t) => {
  const store = await openStore(join(await tempDir(t), 'root'));
  const blob = await store.blobs.putBytes('layer bytes');
  const cache = new BuildCacheStore(store);
  const key = sha256Of('step');
  const layer = { diffId: blob.digest, digest: blob.digest, size: blob.size, mediaType: BUILD_LAYER_MEDIA_TYPE };
  t.is(await cache.get(key), undefined);
  await cache.put(key, layer);
  t.deepEqual((await cache.get(key))?.layer, layer);
  t.deepEqual(await readdir(store.paths.tmp), []);
});

test('BuildCacheStore: reads a miss when the layer blob is gone or the record is corrupt', async (t) => {
  const store = await openStore(join(await tempDir(t), 'root'));
  const blob = await store.blobs.putBytes('layer bytes');
  const cache = new BuildCacheStore(store);
  const key = sha256Of('step');
  await cache.put(key, { diffId: blob.digest, digest: blob.digest, size: blob.size, mediaType: BUILD_LAYER_MEDIA_TYPE });
  await store.blobs.delete(blob.digest);
  t.is(await cache.get(key), undefined);
  const other = sha256Of('other');
  await writeFile(join(store.paths.cache, 'build', `${other.slice(7)}.json`), '{"format":"tsbuild-build-cache/1","key":');
  t.is(await cache.get(other), undefined);
  // A record stored under the wrong name (another key) is not trusted.
  const third = sha256Of('third');
  await writeFile(join(store.paths.cache, 'build', `${third.slice(7)}.json`), JSON.stringify({ format: 'tsbuild-build-cache/1', key, layer: {} }));
  t.is(await cache.get(third), undefined);
});

test('BuildCacheStore: makes its directory once, and again when it was removed after the first put', async (t) => {
  const store = await openStore(join(await tempDir(t), 'root'));
  const blob = await store.blobs.putBytes('layer bytes');
  const cache = new BuildCacheStore(store);
  const layer = { diffId: blob.digest, digest: blob.digest, size: blob.size, mediaType: BUILD_LAYER_MEDIA_TYPE };
  await cache.put(sha256Of('one'), layer);
  await rm(join(store.paths.cache, 'build'), { recursive: true });
  await cache.put(sha256Of('two'), layer);
  t.deepEqual((await cache.get(sha256Of('two')))?.layer, layer);
  t.deepEqual(await readdir(store.paths.tmp), []);
});
