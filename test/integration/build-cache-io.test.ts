import { execFile } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseReference, type BuildEvent, type Digest } from '../../src/core/index.js';
import { HttpRegistryClient } from '../../src/registry/index.js';
import { CACHE_CONFIG_MEDIA_TYPE, readCacheConfig, type CacheConfig } from '../../src/solve/index.js';
import { openStore } from '../../src/store/index.js';
import { testSerialIf } from '../helpers/capability.js';
import { registryMissing, skopeoMissing, startRegistry } from '../helpers/registry.js';
import { build, buildMissing, makeFixture, readImage, readUnpacked, stepsOf, unpackImage, type BuildFixture } from './build-helpers.js';

const run = promisify(execFile);
const missing = await buildMissing();
const registryOrBuildMissing = missing ?? (await registryMissing());
const skopeoOrBuildMissing = missing ?? (await skopeoMissing());

const DF = [
  'FROM busybox AS builder',
  'RUN echo built > /artifact && echo more > /other',
  'FROM busybox',
  'RUN echo one > /one',
  'COPY app.txt /app/',
  'COPY --from=builder /artifact /artifact',
  'RUN cat /app/app.txt /artifact > /combined',
  '',
].join('\n');

const BUILDER_RUN = '[builder 2/2] RUN echo built > /artifact && echo more > /other';
const RUN_ONE = '[stage-1 2/5] RUN echo one > /one';
const COPY_APP = '[stage-1 3/5] COPY app.txt /app/';
const COPY_FROM = '[stage-1 4/5] COPY --from=builder /artifact /artifact';
const RUN_CAT = '[stage-1 5/5] RUN cat /app/app.txt /artifact > /combined';
const ENV = { SOURCE_DATE_EPOCH: '1700000000' };

/** The steps of a build that ran and were cached, FROM lines left out, sorted (parallel stages). */
function steps(events: readonly BuildEvent[]): { started: string[]; cached: string[] } {
  const s = stepsOf(events);
  return { started: s.started.filter((n) => !n.includes('FROM')).sort(), cached: s.cached.sort() };
}

/** Layers pulled from an imported cache (their "Pull complete" transfer events). */
function pulledLayers(events: readonly BuildEvent[]): number {
  return events.filter((e) => e.type === 'transfer' && e.name === 'Pull complete').length;
}

/** Does the store at `root` hold the blob `digest`? */
async function hasBlob(root: string, digest: Digest): Promise<boolean> {
  return (await openStore(root)).blobs.has(digest);
}

function diffIdOf(config: CacheConfig, name: string): Digest {
  const r = config.records.find((x) => x.name === name);
  if (r === undefined) throw new Error(`no record named ${name} in ${config.records.map((x) => x.name).join(', ')}`);
  return r.diffId;
}

async function fixture(t: Parameters<typeof makeFixture>[0]): Promise<BuildFixture> {
  return makeFixture(t, { 'app.txt': 'v1\n' });
}

testSerialIf(registryOrBuildMissing, 'build --cache-to/--cache-from type=registry: an empty store gets every step from the cache, pulling only the layers the image needs', async (t) => {
  // Fixtures first: their leak check (a teardown) must run after the registry's teardown stopped it.
  const [a, b, c] = [await fixture(t), await fixture(t), await fixture(t)];
  const reg = await startRegistry(t);
  const ref = `${reg.host}/cache/app:buildcache`;
  const exported = await build(a, DF, ['-t', 'app:a', `--cache-to=type=registry,ref=${ref},mode=max`], ENV);
  t.is(exported.code, 0, exported.stderr);
  t.deepEqual(steps(exported.events).started, [BUILDER_RUN, COPY_APP, COPY_FROM, RUN_ONE, RUN_CAT].sort());
  t.true(exported.events.some((e) => e.type === 'info' && e.message.startsWith(`exporting cache to ${ref} (mode=max): 5 records, 0 cache mounts, 5 layers`)), exported.stderr);
  const imageA = await readImage(a.root, 'app:a');

  // The cache is a plain OCI manifest in the registry, its config our cache config.
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  const manifest = JSON.parse((await client.getManifest({ host: reg.host, path: 'cache/app' }, 'buildcache')).bytes.toString('utf8')) as { config: { mediaType: string }; layers: { digest: string }[] };
  t.is(manifest.config.mediaType, CACHE_CONFIG_MEDIA_TYPE);
  t.is(manifest.layers.length, 5);
  const probe = await openStore(join(a.dir, 'probe'));
  const config = await readCacheConfig({ kind: 'registry', ref: parseReference(ref), client }, probe);
  if (config === undefined) return t.fail('the exported cache is not in the registry');
  const builderLayer = diffIdOf(config, BUILDER_RUN);
  const builderBlob = config.records.find((r) => r.name === BUILDER_RUN)?.blob.digest ?? '';
  const blobGets = (digest: string): number => reg.logs().split('\n').filter((l) => l.includes(`GET /v2/cache/app/blobs/${digest}`)).length;

  // Machine B: another empty store, the same Dockerfile and context.
  const imported = await build(b, DF, ['-t', 'app:b', `--cache-from=${ref}`], ENV);
  t.is(imported.code, 0, imported.stderr);
  // Lazy solving: the COPY --from is a hit, so nothing needs the builder stage: it is not even looked at.
  t.deepEqual(steps(imported.events), { started: [], cached: [COPY_APP, COPY_FROM, RUN_ONE, RUN_CAT].sort() });
  t.true(imported.events.some((e) => e.type === 'info' && e.message.startsWith('skipped 2 steps no step to run needs') && e.message.includes(BUILDER_RUN)), imported.stderr);
  t.false(imported.events.some((e) => e.type === 'vertex.log'), 'no RUN executed');
  const imageB = await readImage(b.root, 'app:b');
  t.is(imageB.manifestDigest, imageA.manifestDigest);
  t.deepEqual(imageB.config.rootfs.diff_ids, imageA.config.rootfs.diff_ids);
  // Only the final image's four layers were pulled; the builder stage's layer stayed in the registry.
  t.is(pulledLayers(imported.events), 4);
  t.false(await hasBlob(b.root, builderLayer));
  t.is(blobGets(builderBlob), 0, 'the registry never served the builder layer');
  for (const l of manifest.layers.filter((x) => x.digest !== builderBlob)) t.is(blobGets(l.digest), 1, `layer ${l.digest} was fetched once`);
  for (const l of imageB.manifest.layers) t.true(await hasBlob(b.root, l.digest), `layer ${l.digest} is in store B`);

  // Machine C: a changed file. RUN one and the builder stay cached; the COPY and what follows rebuild,
  // and the COPY --from that now runs pulls the builder's layer it needs.
  await writeFile(join(c.context, 'app.txt'), 'v2\n');
  const changed = await build(c, DF, ['-t', 'app:c', `--cache-from=type=registry,ref=${ref}`], ENV);
  t.is(changed.code, 0, changed.stderr);
  t.deepEqual(steps(changed.events), { started: [COPY_APP, COPY_FROM, RUN_CAT].sort(), cached: [BUILDER_RUN, RUN_ONE].sort() });
  t.true(await hasBlob(c.root, builderLayer));
  t.is(blobGets(builderBlob), 1, 'C fetched the builder layer its COPY --from needed');
  const imageC = await readImage(c.root, 'app:c');
  t.is(imageC.config.rootfs.diff_ids[1], imageA.config.rootfs.diff_ids[1]);
  t.not(imageC.manifestDigest, imageA.manifestDigest);
});

testSerialIf(registryOrBuildMissing, 'build --cache-from: a missing cache is a warning and the build runs every step', async (t) => {
  const a = await fixture(t);
  const reg = await startRegistry(t);
  const r = await build(a, 'FROM busybox\nRUN echo x > /x\n', [`--cache-from=${reg.host}/nothing:here`, '--cache-from=type=local,src=no-such-dir'], ENV);
  t.is(r.code, 0, r.stderr);
  const warnings = r.events.flatMap((e) => (e.type === 'warning' ? [e.message] : []));
  t.true(warnings.some((w) => w.startsWith(`cache ${reg.host}/nothing:here not found`)), warnings.join('\n'));
  t.true(warnings.some((w) => w.startsWith(`cache ${join(a.context, 'no-such-dir')} (tag latest) not found`)), warnings.join('\n'));
  t.deepEqual(steps(r.events).started, ['[2/2] RUN echo x > /x']);
});

testSerialIf(missing, 'build --cache-to/--cache-from type=local: mode=min exports the final image steps into an OCI layout another store builds from', async (t) => {
  const [a, b, d] = [await fixture(t), await fixture(t), await fixture(t)];
  const dir = join(a.dir, 'cache-dir');
  const exported = await build(a, DF, ['-t', 'app:a', `--cache-to=type=local,dest=${dir}`], ENV);
  t.is(exported.code, 0, exported.stderr);
  const imageA = await readImage(a.root, 'app:a');
  const probe = await openStore(join(a.dir, 'probe'));
  const config = await readCacheConfig({ kind: 'local', dir, tag: 'latest' }, probe);
  t.deepEqual(config?.records.map((r) => r.name).sort(), [COPY_APP, COPY_FROM, RUN_ONE, RUN_CAT].sort());
  const names = await readdir(dir);
  for (const n of ['blobs', 'index.json', 'oci-layout']) t.true(names.includes(n), names.join(' '));
  t.false(names.some((n) => n.startsWith('.tsbuild-tmp')), 'no staging directory left');

  // Machine B: the builder stage is not in a min cache, but no step needs it: every final-image step
  // is a hit (the COPY --from's key comes from definitions, not from the builder's files), so NO step runs.
  const imported = await build(b, DF, ['-t', 'app:b', `--cache-from=type=local,src=${dir}`], ENV);
  t.is(imported.code, 0, imported.stderr);
  t.deepEqual(steps(imported.events), { started: [], cached: [COPY_APP, COPY_FROM, RUN_ONE, RUN_CAT].sort() });
  t.false(imported.events.some((e) => e.type === 'vertex.start' && e.name.startsWith('[builder')), 'the builder stage is not even started');
  t.false(imported.events.some((e) => e.type === 'vertex.log'), 'no RUN executed');
  t.is((await readImage(b.root, 'app:b')).manifestDigest, imageA.manifestDigest);
  t.is(pulledLayers(imported.events), 4);

  // A second export of the same build into the same directory changes nothing (deterministic documents).
  const index1 = await readdir(join(dir, 'blobs', 'sha256'));
  const again = await build(b, DF, ['-t', 'app:b', `--cache-to=type=local,dest=${dir}`], ENV);
  t.is(again.code, 0, again.stderr);
  t.deepEqual((await readdir(join(dir, 'blobs', 'sha256'))).sort(), index1.sort());

  // A damaged layer blob fails the build that needs it, naming the cache.
  const runOne = config?.records.find((r) => r.name === RUN_ONE);
  if (runOne === undefined) return t.fail('no RUN one record');
  await writeFile(join(dir, 'blobs', 'sha256', runOne.blob.digest.slice(7)), 'not the layer');
  const damaged = await build(d, DF, [`--cache-from=type=local,src=${dir}`], ENV);
  t.is(damaged.code, 1);
  t.regex(damaged.stderr, new RegExp(`SOLVE_CACHE_BAD_LAYER: cache ${dir} \\(tag latest\\): blob ${runOne.blob.digest} is damaged`));

});

testSerialIf(skopeoOrBuildMissing, 'build --cache-from type=local: reads a cache skopeo copied into another OCI layout', async (t) => {
  const a = await fixture(t);
  const b = await fixture(t);
  const dir = join(a.dir, 'cache-dir');
  const copy = join(a.dir, 'copied');
  const df = 'FROM busybox\nCOPY app.txt /\nRUN cat /app.txt > /out\n';
  const exported = await build(a, df, ['-t', 'app:a', `--cache-to=type=local,dest=${dir},tag=v1`], ENV);
  t.is(exported.code, 0, exported.stderr);
  const { stdout } = await run('skopeo', ['inspect', '--raw', `oci:${dir}:v1`]);
  t.is((JSON.parse(stdout) as { config: { mediaType: string } }).config.mediaType, CACHE_CONFIG_MEDIA_TYPE);
  await run('skopeo', ['copy', '-q', `oci:${dir}:v1`, `oci:${copy}:copied`]);
  const imported = await build(b, df, ['-t', 'app:b', `--cache-from=type=local,src=${copy},tag=copied`], ENV);
  t.is(imported.code, 0, imported.stderr);
  t.deepEqual(steps(imported.events), { started: [], cached: ['[2/3] COPY app.txt /', '[3/3] RUN cat /app.txt > /out'] });
  t.is((await readImage(b.root, 'app:b')).manifestDigest, (await readImage(a.root, 'app:a')).manifestDigest);
});

testSerialIf(missing, 'build --cache-to/--cache-from: RUN cache mount directories travel with the cache and seed a step that runs elsewhere', async (t) => {
  const a = await fixture(t);
  const b = await fixture(t);
  const dir = join(a.dir, 'cache-dir');
  const writer = 'FROM busybox\nRUN --mount=type=cache,id=pkgs,target=/var/cache/pkgs echo stored-on-a > /var/cache/pkgs/data && echo done > /marker\n';
  const exported = await build(a, writer, [`--cache-to=type=local,dest=${dir}`]);
  t.is(exported.code, 0, exported.stderr);
  t.true(exported.events.some((e) => e.type === 'info' && / 1 records, 1 cache mounts, 2 layers/.test(e.message)), exported.stderr);
  // With cache-mounts=false the mount stays home.
  const without = await build(a, writer, [`--cache-to=type=local,dest=${join(a.dir, 'no-mounts')},cache-mounts=false`]);
  t.true(without.events.some((e) => e.type === 'info' && / 1 records, 0 cache mounts, 1 layers/.test(e.message)), without.stderr);

  // Another store: a different RUN (a miss) over the same cache mount id sees A's content.
  const reader = 'FROM busybox\nRUN --mount=type=cache,id=pkgs,target=/var/cache/pkgs cat /var/cache/pkgs/data > /got\n';
  const imported = await build(b, reader, ['-t', 'reader:1', `--cache-from=type=local,src=${dir}`]);
  t.is(imported.code, 0, imported.stderr);
  t.true(imported.events.some((e) => e.type === 'transfer' && e.name === 'Cache mount pkgs imported'), imported.stderr);
  const img = await readImage(b.root, 'reader:1');
  const out = join(b.dir, 'unpacked');
  await unpackImage(img, out);
  t.is(await readUnpacked(out, 'got'), 'stored-on-a\n');
});

testSerialIf(missing, 'build --cache-to: a bad spec fails before building with CLI_BAD_VALUE', async (t) => {
  const a = await fixture(t);
  const r = await build(a, 'FROM busybox\nRUN echo x > /x\n', ['--cache-to=type=gha,url=x']);
  t.is(r.code, 125);
  t.regex(r.stderr, /invalid --cache-to "type=gha,url=x": cache type "gha" is not supported/);
  t.deepEqual(steps(r.events).started, []);
});
