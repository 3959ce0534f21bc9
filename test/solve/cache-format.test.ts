import test from 'ava';
import { isTsbuildError, MediaType, sha256Of, type Digest } from '../../src/core/index.js';
import { CACHE_CONFIG_MEDIA_TYPE, createCacheDocuments, parseCacheConfig, type CacheConfigRecord } from '../../src/solve/index.js';
import { cacheConfigDescriptor } from '../../src/solve/cache-format.js';

const d = (s: string): Digest => sha256Of(s);

function rec(key: string, layer: string, parent?: string): CacheConfigRecord {
  return {
    key: d(key), ...(parent === undefined ? {} : { parent: d(parent) }), name: `step ${key}`,
    diffId: d(`tar-${layer}`), size: 1024, mediaType: MediaType.ociLayer,
    blob: { mediaType: MediaType.ociLayerGzip, digest: d(`gz-${layer}`), size: 100 },
  };
}

test('createCacheDocuments: same records in any order give the same bytes, each blob listed once', (t) => {
  const records = [rec('a', 'L1'), rec('b', 'L2', 'a'), rec('c', 'L1', 'b')];
  const one = createCacheDocuments(records);
  const two = createCacheDocuments([...records].reverse());
  t.deepEqual(one.manifest, two.manifest);
  t.deepEqual(one.config, two.config);
  t.is(one.manifestDescriptor.digest, sha256Of(one.manifest));
  t.is(one.configDescriptor.mediaType, CACHE_CONFIG_MEDIA_TYPE);
  const manifest = JSON.parse(one.manifest.toString('utf8')) as { mediaType: string; config: { digest: string }; layers: { digest: string }[] };
  t.is(manifest.mediaType, MediaType.ociManifest);
  t.is(manifest.config.digest, one.configDescriptor.digest);
  t.deepEqual(manifest.layers.map((l) => l.digest).sort(), [d('gz-L1'), d('gz-L2')].sort());
});

test('createCacheDocuments: cache mounts add their blobs and round-trip through parseCacheConfig', (t) => {
  const mount = { id: 'pkgs', diffId: d('tar-m'), size: 2048, blob: { mediaType: MediaType.ociLayerGzip, digest: d('gz-m'), size: 200 } };
  const docs = createCacheDocuments([rec('a', 'L1')], [mount]);
  t.is(docs.layers.length, 2);
  const parsed = parseCacheConfig(JSON.parse(docs.config.toString('utf8')), 'cfg');
  t.deepEqual(parsed.mounts, [mount]);
  t.deepEqual(parsed.records, [rec('a', 'L1')]);
});

test('parseCacheConfig: rejects what is not a tsbuild cache config with SOLVE_CACHE_BAD_FORMAT', (t) => {
  const good = JSON.parse(createCacheDocuments([rec('a', 'L1')]).config.toString('utf8')) as { records: Record<string, unknown>[] };
  const cases: unknown[] = [
    null, [], { format: 'buildkit' }, { format: 'tsbuild-cache/1' },
    { ...good, records: [{ ...good.records[0], key: 'nope' }] },
    { ...good, records: [{ ...good.records[0], blob: { digest: d('x') } }] },
    { ...good, records: [{ ...good.records[0], size: -1.5 }] },
    { ...good, mounts: {} },
    { ...good, mounts: [{ id: '', diffId: d('x'), size: 1, blob: good.records[0]?.blob }] },
  ];
  for (const c of cases) {
    const err = t.throws(() => parseCacheConfig(c, 'the config'));
    t.true(isTsbuildError(err, 'SOLVE_CACHE_BAD_FORMAT'), String(err));
    t.true(err?.message.startsWith('the config'));
  }
});

test('cacheConfigDescriptor: an image manifest (not a cache) is SOLVE_CACHE_BAD_FORMAT with a hint', (t) => {
  const image = { schemaVersion: 2, config: { mediaType: MediaType.ociConfig, digest: d('c'), size: 10 }, layers: [] };
  const err = t.throws(() => cacheConfigDescriptor(image, 'cache r:1'));
  t.true(isTsbuildError(err, 'SOLVE_CACHE_BAD_FORMAT'));
  t.regex(err?.message ?? '', /cache r:1 is not a tsbuild build cache/);
  const docs = createCacheDocuments([rec('a', 'L1')]);
  t.deepEqual(cacheConfigDescriptor(JSON.parse(docs.manifest.toString('utf8')), 'x'), docs.configDescriptor);
});
