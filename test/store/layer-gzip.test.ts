import test from 'ava';
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { MediaType, type Descriptor } from '../../src/core/index.js';
import { openStore, PULLED_INDEX_ANNOTATION, saveArchive, withCompressedLayers, type Store } from '../../src/store/index.js';
import { testIf } from '../helpers/capability.js';
import { skopeoMissing } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const noSkopeo = await skopeoMissing();

/** A one-layer image (uncompressed OCI layer of a real tar) in a fresh store. */
async function makeImage(store: Store): Promise<Descriptor> {
  const pack = tar.pack();
  pack.entry({ name: 'hello.txt', mtime: new Date(0) }, 'hello world\n'.repeat(1000));
  pack.finalize();
  const layer = await store.blobs.put(Readable.from(pack));
  const config = await store.blobs.putBytes(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } }));
  const manifest = {
    schemaVersion: 2, mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size },
    layers: [{ mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }],
  };
  const m = await store.blobs.putBytes(JSON.stringify(manifest));
  const d = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
  await store.refs.set('docker.io/library/hello:1', d);
  return d;
}

test('withCompressedLayers: rewrites the manifest to gzip layers once and returns the same blob again', async (t) => {
  const store = await openStore(join(await tempDir(t), 'root'));
  const image = await makeImage(store);
  const a = await withCompressedLayers(store, image);
  t.not(a.digest, image.digest);
  const m = (await store.blobs.readJson<{ layers: Descriptor[]; config: Descriptor }>(a.digest)).value;
  t.is(m.layers[0]?.mediaType, MediaType.ociLayerGzip);
  const gz = m.layers[0] as Descriptor;
  const head = await readFile(store.blobs.pathOf(gz.digest));
  t.deepEqual([head[0], head[1]], [0x1f, 0x8b]);
  const before = (await stat(store.blobs.pathOf(gz.digest))).mtimeMs;
  const b = await withCompressedLayers(store, image);
  t.deepEqual(b, a);
  t.is((await stat(store.blobs.pathOf(gz.digest))).mtimeMs, before, 'the gzip blob was not written again');
  // An image whose layers are already compressed comes back unchanged.
  t.is(await withCompressedLayers(store, a), a);
});

testIf(noSkopeo, 'saveArchive: writes gzip layers with gzipLayers that skopeo reads from oci-archive and docker-archive', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(join(dir, 'root'));
  const image = await makeImage(store);
  for (const format of ['oci', 'docker'] as const) {
    const file = join(dir, `${format}.tar`);
    const out = createWriteStream(file);
    await saveArchive(store, [{ descriptor: image, names: ['docker.io/library/hello:1'] }], out, { format, gzipLayers: true });
    out.end();
    await finished(out);
    const skopeo = await run('skopeo', ['inspect', '--raw', `${format === 'oci' ? 'oci-archive' : 'docker-archive'}:${file}`]);
    const raw = JSON.parse(skopeo.stdout) as { layers: Descriptor[] };
    t.is(raw.layers.length, 1, skopeo.stdout);
    t.regex(raw.layers[0]?.mediaType ?? '', /gzip/, skopeo.stdout);
  }
});

test('saveArchive: the store\'s own note of a pulled index does not go into the archive\'s index.json', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(join(dir, 'root'));
  const image = await makeImage(store);
  const noted = { ...image, annotations: { [PULLED_INDEX_ANNOTATION]: `sha256:${'a'.repeat(64)}`, 'org.example.kept': 'yes' } };
  const file = join(dir, 'oci.tar');
  const out = createWriteStream(file);
  await saveArchive(store, [{ descriptor: noted, names: ['docker.io/library/hello:1'] }], out, { format: 'oci', gzipLayers: false });
  out.end();
  await finished(out);
  const extract = tar.extract();
  let index = '';
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      if (header.name === 'index.json') index = Buffer.concat(chunks).toString('utf8');
      next();
    });
  });
  Readable.from(await readFile(file)).pipe(extract);
  await finished(extract);
  const annotations = (JSON.parse(index) as { manifests: Descriptor[] }).manifests[0]?.annotations ?? {};
  t.is(annotations[PULLED_INDEX_ANNOTATION], undefined);
  t.is(annotations['org.example.kept'], 'yes');
  t.is(annotations['io.containerd.image.name'], 'docker.io/library/hello:1');
});
