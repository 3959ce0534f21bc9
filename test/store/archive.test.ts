import test from 'ava';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { utimes } from 'node:fs/promises';
import tar from 'tar-stream';
import { MediaType, sha256Of } from '../../src/core/index.js';
import { acquireLease, collectGarbage, decompressed, loadArchive, openStore, peekStream } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

type Entry = { name: string; data?: string | Buffer; type?: 'file' | 'symlink'; linkname?: string };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      if (e.type === 'symlink') pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname ?? '' }, (err) => (err ? reject(err) : resolve()));
      else pack.entry({ name: e.name }, Buffer.from(e.data ?? ''), (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function ociImage(layer: string) {
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256Of(layer)] } });
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256Of(config), size: config.length },
    layers: [{ mediaType: MediaType.ociLayer, digest: sha256Of(layer), size: layer.length }],
  });
  const blob = (s: string): Entry => ({ name: `blobs/sha256/${sha256Of(s).slice(7)}`, data: s });
  return { config, manifest, layer, blobs: [blob(config), blob(manifest), blob(layer)], descriptor: { mediaType: MediaType.ociManifest, digest: sha256Of(manifest), size: manifest.length } };
}

const layout = { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' };

test('archive: an OCI archive naming images only by tag loads untagged unless --tag names it', async (t) => {
  const store = await openStore(await tempDir(t));
  const img = ociImage('layer-a');
  const index = JSON.stringify({ schemaVersion: 2, manifests: [{ ...img.descriptor, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }] });
  const bytes = await makeTar([layout, { name: 'index.json', data: index }, ...img.blobs]);
  const a = await loadArchive(store, Readable.from([bytes]), 'x.tar');
  t.deepEqual(a.images[0]?.names, []);
  t.regex(a.warnings[0] ?? '', /only the tag "v1"/);
  const b = await loadArchive(store, Readable.from([gzipSync(bytes)]), 'x.tar.gz', { tag: 'me/app:v1' });
  t.deepEqual(b.images[0]?.names, ['docker.io/me/app:v1']);
  t.deepEqual((await store.refs.list()).map((e) => e.name), ['docker.io/me/app:v1']);
});

test('archive: --tag is refused when several images of the archive lack a full name', async (t) => {
  const store = await openStore(await tempDir(t));
  const a = ociImage('a');
  const b = ociImage('b');
  const index = JSON.stringify({ schemaVersion: 2, manifests: [a.descriptor, b.descriptor] });
  const bytes = await makeTar([layout, { name: 'index.json', data: index }, ...a.blobs, ...b.blobs]);
  await t.throwsAsync(loadArchive(store, Readable.from([bytes]), 'x.tar', { tag: 'x' }), { message: /holds 2 images without a full name/ });
});

test('archive: a blob whose content does not match its name fails with a digest mismatch', async (t) => {
  const store = await openStore(await tempDir(t));
  const img = ociImage('layer');
  const index = JSON.stringify({ schemaVersion: 2, manifests: [img.descriptor] });
  const tampered = img.blobs.map((b) => (b.data === 'layer' ? { ...b, data: 'LAYER' } : b));
  const bytes = await makeTar([layout, { name: 'index.json', data: index }, ...tampered]);
  await t.throwsAsync(loadArchive(store, Readable.from([bytes]), 'x.tar'), { message: /digest mismatch/ });
  t.deepEqual(await store.refs.list(), []);
});

test('archive: an index naming a blob the archive lacks fails with STORE_BAD_ARCHIVE', async (t) => {
  const store = await openStore(await tempDir(t));
  const img = ociImage('layer');
  const index = JSON.stringify({ schemaVersion: 2, manifests: [{ ...img.descriptor, annotations: { 'io.containerd.image.name': 'docker.io/library/x:1' } }] });
  const bytes = await makeTar([layout, { name: 'index.json', data: index }, ...img.blobs.slice(0, 2)]);
  await t.throwsAsync(loadArchive(store, Readable.from([bytes]), 'x.tar'), { message: /missing blob/ });
  t.deepEqual(await store.refs.list(), []);
});

test('archive: docker save archives with shared layers as symlinks load when layers are linked', async (t) => {
  const store = await openStore(await tempDir(t));
  const layer = 'x'.repeat(100_000);
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256Of(layer), sha256Of(layer)] } });
  const manifest = JSON.stringify([{ Config: 'cfg.json', RepoTags: ['app:1', 'other/app:2'], Layers: ['l1/layer.tar', 'l2/layer.tar'] }]);
  const bytes = await makeTar([
    { name: 'l1/layer.tar', data: layer },
    { name: 'l1/VERSION', data: '1.0' },
    { name: 'l2/layer.tar', type: 'symlink', linkname: '../l1/layer.tar' },
    { name: 'cfg.json', data: config },
    { name: 'manifest.json', data: manifest },
  ]);
  const res = await loadArchive(store, Readable.from([bytes]), 'd.tar');
  t.deepEqual(res.images[0]?.names, ['docker.io/library/app:1', 'docker.io/other/app:2']);
  const m = (await store.blobs.readJson<{ config: { digest: string }; layers: { digest: string; mediaType: string }[] }>(res.images[0]!.descriptor.digest)).value;
  t.is(m.config.digest, sha256Of(config));
  t.deepEqual(m.layers.map((l) => l.digest), [sha256Of(layer), sha256Of(layer)]);
  t.is(m.layers[0]?.mediaType, MediaType.ociLayer);
  t.false(await store.blobs.has(sha256Of('1.0')), 'small files nobody references are not stored');
});

test('archive: input that is neither format fails with STORE_BAD_ARCHIVE', async (t) => {
  const store = await openStore(await tempDir(t));
  await t.throwsAsync(loadArchive(store, Readable.from([await makeTar([{ name: 'hello.txt', data: 'hi' }])]), 'h.tar'), { message: /neither an OCI archive/ });
  await t.throwsAsync(loadArchive(store, Readable.from([Buffer.alloc(2000, 0x41)]), 'junk'), { code: 'STORE_BAD_ARCHIVE' } as never);
});

test('compression: peekStream returns the head and leaves it in the stream when peeking', async (t) => {
  const s = Readable.from([Buffer.from([0x1f]), Buffer.from([0x8b, 1, 2, 3])]);
  t.deepEqual([...(await peekStream(s, 3))], [0x1f, 0x8b, 1]);
  const out = await decompressed(Readable.from([gzipSync('hello world')]), 'x');
  let text = '';
  for await (const c of out) text += (c as Buffer).toString();
  t.is(text, 'hello world');
});

test('gc: blobs written under a live lease survive a prune when not yet named', async (t) => {
  const store = await openStore(await tempDir(t));
  const old = await store.blobs.putBytes('old garbage');
  const past = new Date(Date.now() - 60_000);
  await utimes(store.blobs.pathOf(old.digest), past, past);
  const lease = await acquireLease(store);
  const fresh = await store.blobs.putBytes('fresh, not yet named');
  const report = await collectGarbage(store);
  t.deepEqual(report.blobs, [old.digest]);
  t.true(await store.blobs.has(fresh.digest));
  await lease.release();
  t.deepEqual((await collectGarbage(store)).blobs, [fresh.digest]);
});
