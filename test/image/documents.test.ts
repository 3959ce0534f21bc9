import test from 'ava';
import { MediaType, sha256Of, type Descriptor } from '../../src/core/index.js';
import {
  addEmptyHistory, addLayer, applyChanges, createEmptyConfig, createIndex, createManifest, parseImageConfig,
  parseImageDocument, parsePlatform, platformMatches, selectPlatform, serializeDocument, validateImage,
} from '../../src/image/index.js';

const layer = (s: string): Descriptor => ({ mediaType: MediaType.ociLayerGzip, digest: sha256Of(s), size: s.length });

function sample() {
  let config = createEmptyConfig({ os: 'linux', architecture: 'amd64' }, '2024-01-01T00:00:00Z');
  config = addLayer(config, sha256Of('diff1'), { created_by: 'COPY a /' });
  config = addEmptyHistory(config, { created_by: 'CMD ["sh"]' });
  const bytes = Buffer.from(serializeDocument(config));
  const manifest = createManifest({ mediaType: MediaType.ociConfig, digest: sha256Of(bytes), size: bytes.length }, [layer('l1')]);
  return { config, bytes, manifest };
}

test('image: a built config and manifest validate when consistent', (t) => {
  const { config, bytes, manifest } = sample();
  t.deepEqual(validateImage({ manifest, config, configBytes: bytes }), []);
  t.is(manifest.mediaType, MediaType.ociManifest);
  t.deepEqual(config.rootfs.diff_ids, [sha256Of('diff1')]);
});

test('image: validate reports diff_id, history, digest and size problems when inconsistent', (t) => {
  const { config, bytes, manifest } = sample();
  const twoLayers = { ...manifest, layers: [layer('l1'), layer('l2')] };
  const problems = validateImage({ manifest: twoLayers, config, configBytes: Buffer.concat([bytes, Buffer.from(' ')]), blobSizes: new Map([[sha256Of('l1'), 99]]) });
  t.true(problems.some((p) => p.includes('2 layers but the config has 1 diff_ids')));
  t.true(problems.some((p) => p.includes('config digest')));
  t.true(problems.some((p) => p.includes('bytes, the manifest says')));
  t.true(problems.some((p) => p.includes(`blob ${sha256Of('l2')} is missing`)));
  const badHistory = { ...config, history: [{ created_by: 'x' }, { created_by: 'y' }] };
  t.true(validateImage({ manifest, config: badHistory }).some((p) => p.includes('history has 2 entries')));
});

test('image: docker format maps media types when requested', (t) => {
  const { manifest } = sample();
  const docker = createManifest(manifest.config, manifest.layers, 'docker');
  t.is(docker.mediaType, MediaType.dockerManifest);
  t.is(docker.config.mediaType, MediaType.dockerConfig);
  t.is(docker.layers[0]?.mediaType, MediaType.dockerLayerGzip);
  t.throws(() => createManifest(manifest.config, [{ ...layer('x'), mediaType: MediaType.ociLayer }], 'docker'), { message: /no Docker schema 2 equivalent/ });
  t.is(createIndex([], 'docker').mediaType, MediaType.dockerManifestList);
});

test('image: parseImageDocument tells manifests from indexes when media types are OCI, Docker or absent', (t) => {
  const { manifest } = sample();
  t.is(parseImageDocument(JSON.parse(JSON.stringify(manifest))).kind, 'manifest');
  t.is(parseImageDocument({ schemaVersion: 2, mediaType: MediaType.dockerManifestList, manifests: [] }).kind, 'index');
  t.is(parseImageDocument({ schemaVersion: 2, manifests: [] }).kind, 'index');
  t.throws(() => parseImageDocument({ schemaVersion: 1, fsLayers: [] }), { message: /schemaVersion 1/ });
  t.throws(() => parseImageDocument({ schemaVersion: 2, config: { digest: 'x' }, layers: [] }), { message: /config must be a descriptor/ });
});

test('image: selectPlatform picks the matching manifest and lists choices when none fits', (t) => {
  const m = (arch: string, variant?: string): Descriptor => ({ ...layer(arch + (variant ?? '')), mediaType: MediaType.ociManifest, platform: { os: 'linux', architecture: arch, ...(variant ? { variant } : {}) } });
  const index = createIndex([m('amd64'), m('arm', 'v6'), m('arm', 'v7'), m('arm64', 'v8')]);
  t.is(selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest, sha256Of('armv7'));
  t.is(selectPlatform(index, { os: 'linux', architecture: 'arm64' }).digest, sha256Of('arm64v8'));
  t.is(selectPlatform(index, { os: 'linux', architecture: 'x86_64' }).digest, sha256Of('amd64'));
  t.throws(() => selectPlatform(index, { os: 'linux', architecture: 's390x' }), { message: /no image for linux\/s390x/ });
});

test('image: parseImageConfig rejects configs without rootfs when malformed', (t) => {
  t.throws(() => parseImageConfig({ architecture: 'amd64', os: 'linux' }), { message: /rootfs/ });
  t.throws(() => parseImageConfig({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Cmd: 'sh' } }), { message: /Cmd/ });
  t.is(parseImageConfig(sample().config).os, 'linux');
});

test('image: --change lines edit the container config when applied in order', (t) => {
  const base = createEmptyConfig({ os: 'linux', architecture: 'amd64' });
  const c = applyChanges(base, [
    'CMD ["/bin/sh"]', 'ENTRYPOINT echo hi', 'ENV A=1 B="two words"', 'ENV A 3', 'EXPOSE 80 53/udp',
    'LABEL x=y', 'USER 1000:1000', 'WORKDIR /app', 'WORKDIR sub', 'VOLUME ["/data"]', 'STOPSIGNAL SIGTERM',
  ]).config ?? {};
  t.deepEqual(c.Cmd, ['/bin/sh']);
  t.deepEqual(c.Entrypoint, ['/bin/sh', '-c', 'echo hi']);
  t.deepEqual(c.Env, ['A=3', 'B=two words']);
  t.deepEqual(Object.keys(c.ExposedPorts ?? {}), ['80/tcp', '53/udp']);
  t.deepEqual(c.Labels, { x: 'y' });
  t.is(c.User, '1000:1000');
  t.is(c.WorkingDir, '/app/sub');
  t.deepEqual(Object.keys(c.Volumes ?? {}), ['/data']);
  t.is(c.StopSignal, 'SIGTERM');
  t.throws(() => applyChanges(base, ['RUN echo']), { message: /RUN cannot be used/ });
  t.throws(() => applyChanges(base, ['EXPOSE abc']), { message: /invalid port/ });
});

test('image: platformMatches compares os and architecture after normalising, variants only when both name one', (t) => {
  const amd64 = { os: 'linux', architecture: 'amd64' };
  t.true(platformMatches({ os: 'linux', architecture: 'amd64' }, amd64));
  t.true(platformMatches({ os: 'linux', architecture: 'x86_64' }, amd64));
  t.false(platformMatches({ os: 'linux', architecture: 'arm64' }, amd64));
  t.false(platformMatches({ os: 'windows', architecture: 'amd64' }, amd64));
  t.true(platformMatches({ os: 'linux', architecture: 'aarch64', variant: 'v8' }, parsePlatform('linux/arm64')));
  t.true(platformMatches({ os: 'linux', architecture: 'arm' }, parsePlatform('linux/arm/v7')));
  t.false(platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, parsePlatform('linux/arm/v7')));
  t.true(platformMatches({ os: 'linux', architecture: 'arm64' }, parsePlatform('linux/arm64/v8')));
  // A hand-made config without an architecture is not refused.
  t.true(platformMatches({ os: 'linux', architecture: '' }, amd64));
});
