import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MediaType, type BuildEvent, type Descriptor, type Digest } from '../../src/core/index.js';
import { createIndex, createManifest, serializeDocument } from '../../src/image/index.js';
import { applyLayer, decompressFile } from '../../src/layer/index.js';
import { openStore } from '../../src/store/index.js';
import { cli, hasStackTrace } from '../cli/run-cli.js';
import { testSerialIf } from '../helpers/capability.js';
import { registryMissing, skopeoMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';
import { build, buildMissing, makeFixture, readImage, readUnpacked, stepsOf, type BuildFixture, type StoredImage } from './build-helpers.js';

const run = promisify(execFile);
const missing = (await buildMissing()) ?? (await registryMissing()) ?? (await skopeoMissing());

/** Runs a rawjson build of `dockerfile` in the fixture's context against the store at `root`. */
async function buildIn(f: BuildFixture, root: string, dockerfile: string, args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string; events: BuildEvent[] }> {
  await writeFile(join(f.context, 'Dockerfile'), dockerfile);
  const r = await cli(['--root', root, 'build', '--progress=rawjson', ...args, '.'], { cwd: f.context, env: { ...f.env, ...env } });
  const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as BuildEvent);
  return { code: r.code, stderr: r.stderr, events };
}

/** Unpacks every layer of the image into `dest` (pulled layers are gzip-compressed). */
async function unpackLayers(img: StoredImage, dest: string): Promise<void> {
  for (const l of img.manifest.layers) await applyLayer(decompressFile(img.store.blobs.pathOf(l.digest)), dest);
}

function infos(events: readonly BuildEvent[]): string[] {
  return events.flatMap((e) => (e.type === 'info' ? [e.message] : []));
}

testSerialIf(missing, 'tsbuild build: pulls FROM and COPY --from images from the registry when the store does not have them', async (t) => {
  const f = await makeFixture(t);
  const reg = await startRegistry(t);
  const base = `${reg.host}/lib/busybox:1`;
  const p = await cli(['--root', f.root, 'push', 'busybox', base]);
  t.is(p.code, 0, p.stderr);
  const busybox = await readImage(f.root, 'busybox');

  const empty = join(f.dir, 'empty');
  let r = await buildIn(f, empty, `FROM ${base}\nRUN echo built > /built\n`, ['-t', 'app:1']);
  t.is(r.code, 0, r.stderr);
  t.true(infos(r.events).some((m) => m.startsWith(`pulling ${base} (linux/amd64)`)), r.stderr);
  t.true(infos(r.events).some((m) => m.startsWith(`pulled ${base}: digest sha256:`)), r.stderr);
  t.true(r.events.some((e) => e.type === 'transfer' && e.name === 'Pull complete'), r.stderr);
  const app = await readImage(empty, 'app:1');
  t.is(app.config.rootfs.diff_ids[0], busybox.config.rootfs.diff_ids[0]);
  const dest = join(await tempDir(t), 'rootfs');
  await unpackLayers(app, dest);
  t.is(await readUnpacked(dest, 'built'), 'built\n');
  // The base is now in that store under its name: a second build does not pull.
  r = await buildIn(f, empty, `FROM ${base}\nRUN echo built > /built\n`, ['-t', 'app:1']);
  t.is(r.code, 0, r.stderr);
  t.false(infos(r.events).some((m) => m.startsWith('pulling')), r.stderr);

  const other = join(f.dir, 'other');
  r = await buildIn(f, other, `FROM scratch\nCOPY --from=${base} /bin/busybox /bb\n`, ['-t', 'only-bb:1']);
  t.is(r.code, 0, r.stderr);
  t.true(infos(r.events).some((m) => m.startsWith(`pulling ${base}`)), r.stderr);
  const bb = await readImage(other, 'only-bb:1');
  t.is(bb.manifest.layers.length, 1);
  await reg.stop();
});

testSerialIf(missing, 'tsbuild build --pull: pulls the base again when its tag moved, and the steps after it re-run', async (t) => {
  const f = await makeFixture(t);
  const reg = await startRegistry(t);
  const base = `${reg.host}/lib/base:1`;
  t.is((await cli(['--root', f.root, 'push', 'busybox', base])).code, 0);
  const consumer = join(f.dir, 'consumer');
  const df = `FROM ${base}\nRUN (cat /marker 2>/dev/null || echo none) > /seen\n`;
  let r = await buildIn(f, consumer, df, ['-t', 'app:1']);
  t.is(r.code, 0, r.stderr);
  const first = await readImage(consumer, 'app:1');

  // Move the tag: a new image built and pushed under the same name from the fixture's store.
  const moved = await build(f, 'FROM busybox\nRUN echo v2 > /marker\n', ['-t', base, '--push']);
  t.is(moved.code, 0, moved.stderr);

  // Without --pull the local copy is used and every step is a cache hit.
  r = await buildIn(f, consumer, df, ['-t', 'app:1']);
  t.is(r.code, 0, r.stderr);
  t.false(infos(r.events).some((m) => m.startsWith('pulling')), r.stderr);
  t.deepEqual(stepsOf(r.events).started.filter((n) => n.includes('RUN')), []);
  t.deepEqual((await readImage(consumer, 'app:1')).config.rootfs.diff_ids, first.config.rootfs.diff_ids);

  r = await buildIn(f, consumer, df, ['-t', 'app:1', '--pull']);
  t.is(r.code, 0, r.stderr);
  t.true(infos(r.events).some((m) => m.startsWith(`pulling ${base}`)), r.stderr);
  t.true(stepsOf(r.events).started.some((n) => n.includes('/seen')), r.stderr);
  const second = await readImage(consumer, 'app:1');
  t.notDeepEqual(second.config.rootfs.diff_ids, first.config.rootfs.diff_ids);
  const dest = join(await tempDir(t), 'rootfs');
  await unpackLayers(second, dest);
  t.is(await readUnpacked(dest, 'seen'), 'v2\n');
  await reg.stop();
});

testSerialIf(missing, 'tsbuild build --push: the built image reaches the registry under every -t name, gzip-compressed, and pulls back identical', async (t) => {
  const f = await makeFixture(t, { 'hello.txt': 'hello\n' });
  const reg = await startRegistry(t);
  const a = `${reg.host}/app/hello:1`;
  const b = `${reg.host}/app/hello:latest`;
  const r = await build(f, 'FROM busybox\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copy\n', ['-t', a, '-t', b, '--push', '--metadata-file', 'meta.json']);
  t.is(r.code, 0, r.stderr);
  t.true(r.events.some((e) => e.type === 'info' && e.message.startsWith(`pushing ${a}: digest sha256:`)), r.stderr);
  t.true(r.events.some((e) => e.type === 'info' && e.message.startsWith(`pushing ${b}: digest sha256:`)), r.stderr);
  const built = await readImage(f.root, a);
  // Another, empty store pulls both names: same config (the image ID) and the same files.
  const other = join(await tempDir(t), 'other');
  for (const name of [a, b]) {
    const p = await cli(['--root', other, 'pull', '-q', name]);
    t.is(p.code, 0, p.stderr);
  }
  const pulled = await readImage(other, a);
  t.is(pulled.manifest.config.digest, built.manifest.config.digest);
  t.deepEqual(pulled.config.rootfs.diff_ids, built.config.rootfs.diff_ids);
  t.true(pulled.manifest.layers.every((l) => l.mediaType === MediaType.ociLayerGzip));
  const info = await cli(['--root', other, 'inspect', '-f', '{{.Id}}', b]);
  t.is(info.stdout.trim(), built.manifest.config.digest);
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${a}`]);
  const remote = JSON.parse(stdout) as { Layers: string[]; Digest: string };
  t.is(remote.Layers.length, built.manifest.layers.length);
  // --metadata-file names the digest the registry has (the pushed manifest points at gzip layers).
  const meta = JSON.parse(await readFile(join(f.context, 'meta.json'), 'utf8')) as Record<string, unknown>;
  t.is(meta['containerimage.digest'], remote.Digest);
  t.not(remote.Digest, built.manifestDigest);
  t.is(meta['containerimage.config.digest'], built.manifest.config.digest);
  t.is(meta['image.name'], `${a},${b}`);
  await reg.stop();
});

testSerialIf(missing, 'tsbuild build --push: fails with REG_UNAUTHORIZED (no stack trace, image kept locally) without credentials, and pushes after login', async (t) => {
  const f = await makeFixture(t);
  const reg = await startRegistry(t, { auth: 'basic', users: { alice: { password: 'secret-pw-1' } } });
  const env = { DOCKER_CONFIG: join(f.dir, 'docker'), HOME: f.dir };
  const tls = ['--tls-ca', reg.caFile as string];
  const name = `${reg.host}/team/app:1`;
  let r = await build(f, 'FROM busybox\nRUN echo x > /x\n', ['-t', name, '--push', ...tls], env);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`^REG_UNAUTHORIZED: pushing ${name}: `, 'm'));
  t.false(hasStackTrace(r.stderr), r.stderr);
  t.truthy(await readImage(f.root, name));
  // A base image on that registry cannot be pulled anonymously either.
  r = await build(f, `FROM ${reg.host}/team/base:1\n`, ['-t', 'x:1', ...tls], env);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`^REG_UNAUTHORIZED: pulling base image ${reg.host}/team/base:1: `, 'm'));

  const login = await cli(['login', ...tls, '-u', 'alice', '--password-stdin', reg.host], { env: { ...f.env, ...env }, stdin: 'secret-pw-1\n' });
  t.is(login.code, 0, login.stderr);
  r = await build(f, 'FROM busybox\nRUN echo x > /x\n', ['-t', name, '--push', ...tls], env);
  t.is(r.code, 0, r.stderr);
  t.false(r.stderr.includes('secret-pw-1'));
  await reg.stop();
});

testSerialIf(missing, 'tsbuild build --platform: picks the platform\'s manifest from a multi-platform base in the registry', async (t) => {
  const f = await makeFixture(t);
  const reg = await startRegistry(t);
  // A two-platform index (amd64: busybox, arm64: the same layer with an arm64 config) pushed by skopeo.
  const layout = join(f.dir, 'layout');
  await mkdir(layout);
  const store = await openStore(f.root);
  const busybox = await readImage(f.root, 'busybox');
  const armCfg = await store.blobs.putBytes(serializeDocument({ ...busybox.config, architecture: 'arm64' }));
  const arm = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: armCfg.digest, size: armCfg.size }, busybox.manifest.layers)));
  const amdSize = (await store.blobs.stat(busybox.manifestDigest))?.size as number;
  const index = createIndex([
    { mediaType: MediaType.ociManifest, digest: busybox.manifestDigest, size: amdSize, platform: { os: 'linux', architecture: 'amd64' } } as Descriptor,
    { mediaType: MediaType.ociManifest, digest: arm.digest, size: arm.size, platform: { os: 'linux', architecture: 'arm64' } } as Descriptor,
  ]);
  const idx = await store.blobs.putBytes(serializeDocument(index));
  await store.refs.set('multi', { mediaType: MediaType.ociIndex, digest: idx.digest, size: idx.size });
  await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${f.root}:multi`, `docker://${reg.host}/multi/box:v1`]);

  const empty = join(f.dir, 'empty');
  const r = await buildIn(f, empty, `FROM ${reg.host}/multi/box:v1\nRUN uname -m > /arch\n`, ['-t', 'app:1', '--platform', 'linux/amd64']);
  t.is(r.code, 0, r.stderr);
  t.true(infos(r.events).some((m) => m.startsWith('linux/amd64: sha256:')), r.stderr);
  const app = await readImage(empty, 'app:1');
  t.is(app.config.architecture, 'amd64');
  const base = await cli(['--root', empty, 'inspect', '-f', '{{.Architecture}} {{.Id}}', `${reg.host}/multi/box:v1`]);
  t.is(base.stdout, `amd64 ${busybox.manifest.config.digest}\n`);
  await reg.stop();
});

/** A 64-byte ELF header for an aarch64 executable: on an x86_64 host without binfmt_misc, execve fails with ENOEXEC. */
function aarch64ElfHeader(): Buffer {
  const b = Buffer.alloc(64);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2; // 64-bit
  b[5] = 1; // little-endian
  b[6] = 1; // ELF version
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(183, 18); // EM_AARCH64
  b.writeUInt32LE(1, 20);
  b.writeUInt16LE(64, 52); // e_ehsize
  return b;
}

/**
 * Pushes a two-platform index to `reg` as multi/box:v1: amd64 is busybox; arm64 is busybox plus a
 * layer whose /bin/sh is an aarch64 executable and an /arm-marker file. Returns the reference and the arm64 config.
 */
async function pushTwoPlatformBase(f: BuildFixture, reg: { readonly host: string }): Promise<{ base: string; armConfig: { readonly rootfs: { readonly diff_ids: readonly Digest[] } } }> {
  const store = await openStore(f.root);
  const busybox = await readImage(f.root, 'busybox');
  const armDir = join(f.dir, 'arm');
  await mkdir(join(armDir, 'bin'), { recursive: true });
  await writeFile(join(armDir, 'bin', 'sh'), aarch64ElfHeader(), { mode: 0o755 });
  await writeFile(join(armDir, 'arm-marker'), 'arm64 base\n');
  const tarFile = join(f.dir, 'arm.tar');
  await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', armDir, '-cf', tarFile, 'bin', 'arm-marker']);
  const armLayer = await store.blobs.putBytes(await readFile(tarFile));
  const armConfig = { ...busybox.config, architecture: 'arm64', rootfs: { type: 'layers' as const, diff_ids: [...busybox.config.rootfs.diff_ids, armLayer.digest] } };
  const armCfg = await store.blobs.putBytes(serializeDocument(armConfig));
  const arm = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: armCfg.digest, size: armCfg.size },
    [...busybox.manifest.layers, { mediaType: MediaType.ociLayer, digest: armLayer.digest, size: armLayer.size }])));
  const amdSize = (await store.blobs.stat(busybox.manifestDigest))?.size as number;
  const index = createIndex([
    { mediaType: MediaType.ociManifest, digest: busybox.manifestDigest, size: amdSize, platform: { os: 'linux', architecture: 'amd64' } } as Descriptor,
    { mediaType: MediaType.ociManifest, digest: arm.digest, size: arm.size, platform: { os: 'linux', architecture: 'arm64' } } as Descriptor,
  ]);
  const idx = await store.blobs.putBytes(serializeDocument(index));
  await store.refs.set('multi', { mediaType: MediaType.ociIndex, digest: idx.digest, size: idx.size });
  const base = `${reg.host}/multi/box:v1`;
  await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${f.root}:multi`, `docker://${base}`]);

  return { base, armConfig };
}

testSerialIf(missing, 'tsbuild build --platform: cross builds take the build stage at $BUILDPLATFORM and the final stage at the target platform', async (t) => {
  const f = await makeFixture(t);
  const reg = await startRegistry(t);
  const { base, armConfig } = await pushTwoPlatformBase(f, reg);
  const empty = join(f.dir, 'empty');
  const cross = `FROM --platform=$BUILDPLATFORM ${base} AS build\nARG BUILDPLATFORM TARGETPLATFORM\nRUN echo "on $BUILDPLATFORM for $TARGETPLATFORM" > /out\n`
    + `FROM ${base}\nCOPY --from=build /out /out\n`;
  let r = await buildIn(f, empty, cross, ['-t', 'app:arm', '--platform', 'linux/arm64']);
  t.is(r.code, 0, r.stderr);
  t.true(infos(r.events).some((m) => m === `pulling ${base} (linux/amd64)`), r.stderr);
  t.true(infos(r.events).some((m) => m === `pulling ${base} (linux/arm64)`), r.stderr);
  const app = await readImage(empty, 'app:arm');
  t.is(app.config.architecture, 'arm64');
  t.deepEqual(app.config.rootfs.diff_ids.slice(0, -1), armConfig.rootfs.diff_ids);
  const dest = join(await tempDir(t), 'rootfs');
  await unpackLayers(app, dest);
  t.is(await readUnpacked(dest, 'out'), 'on linux/amd64 for linux/arm64\n');
  t.is(await readUnpacked(dest, 'arm-marker'), 'arm64 base\n');

  // Built again: every step cached, and both platforms of the base come from the store (the tag is
  // moved between the pulled index's platforms without the registry).
  r = await buildIn(f, empty, cross, ['-t', 'app:arm', '--platform', 'linux/arm64']);
  t.is(r.code, 0, r.stderr);
  t.is((await readImage(empty, 'app:arm')).config.rootfs.diff_ids.at(-1), app.config.rootfs.diff_ids.at(-1));
  t.deepEqual(infos(r.events).filter((m) => m.startsWith('pulling')), [], r.stderr);
  t.deepEqual(stepsOf(r.events).started.filter((n) => n.includes('RUN')), [], r.stderr);

  // FROM --platform without the flag: that stage (and so the image) is for arm64.
  r = await buildIn(f, empty, `FROM --platform=linux/arm64 ${base}\nLABEL a=1\n`, ['-t', 'app:from']);
  t.is(r.code, 0, r.stderr);
  t.is((await readImage(empty, 'app:from')).config.architecture, 'arm64');

  // RUN in the arm64 stage: this host cannot execute it; the error says why, without a stack trace.
  r = await buildIn(f, empty, `FROM ${base}\nRUN true\n`, ['-t', 'app:run', '--platform', 'linux/arm64']);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /Dockerfile:2: SANDBOX_COMMAND_NOT_EXECUTABLE: .*exec format error/);
  t.regex(r.stderr, /hint: .*another platform.*binfmt_misc/);
  t.false(hasStackTrace(r.stderr), r.stderr);

  // A local image of another platform that its registry does not have: a clear mismatch error.
  const local = `${reg.host}/only/local:1`;
  t.is((await cli(['--root', empty, 'tag', 'busybox', local], { env: f.env })).code, 1, 'the empty store has no busybox');
  t.is((await cli(['--root', f.root, 'tag', 'busybox', local], { env: f.env })).code, 0);
  r = await buildIn(f, f.root, `FROM ${local}\nLABEL a=1\n`, ['-t', 'app:mismatch', '--platform', 'linux/arm64']);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`IMAGE_PLATFORM_MISMATCH: base image ${local} is for linux/amd64, the build needs linux/arm64`));
  t.regex(r.stderr, /hint: pull that platform first: tsbuild pull --platform linux\/arm64 /);
  t.false(hasStackTrace(r.stderr), r.stderr);

  await reg.stop();
});

testSerialIf(missing, 'tsbuild build --platform a,b: an image index with one manifest per platform, pushed, pulled and run as such', async (t) => {
  const f = await makeFixture(t);
  const reg = await startRegistry(t);
  const { base } = await pushTwoPlatformBase(f, reg);
  const empty = join(f.dir, 'empty');
  const cross = `FROM --platform=$BUILDPLATFORM ${base} AS build\nARG BUILDPLATFORM TARGETPLATFORM\nRUN echo "on $BUILDPLATFORM for $TARGETPLATFORM" > /out\n`
    + `FROM ${base}\nCOPY --from=build /out /out\n`;
  const pushed = `${reg.host}/app/multi:1`;
  let r = await buildIn(f, empty, cross, ['--platform', 'linux/amd64,linux/arm64,linux/amd64', '--push', '-t', pushed]);
  t.is(r.code, 0, r.stderr);
  t.true(infos(r.events).includes('building for linux/amd64') && infos(r.events).includes('building for linux/arm64'), r.stderr);
  const multi = await openStore(empty);
  const entry = (await multi.refs.list()).find((e) => e.name === pushed);
  t.is(entry?.descriptor.mediaType, MediaType.ociIndex);
  const doc = (await multi.blobs.readJson<{ manifests: Descriptor[] }>(entry?.descriptor.digest as Digest)).value;
  t.deepEqual(doc.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`), ['linux/amd64', 'linux/arm64']);
  // The platform manifests are reachable from the index: no untagged <none> entries for them.
  t.false((await multi.refs.list()).some((e) => e.name === undefined && doc.manifests.some((m) => m.digest === e.descriptor.digest)));
  // A fully cached rebuild leaves index.json as it was (not even rewritten).
  const indexFile = join(empty, 'index.json');
  const before = await stat(indexFile);
  r = await buildIn(f, empty, cross, ['--platform', 'linux/amd64,linux/arm64', '-t', pushed]);
  t.is(r.code, 0, r.stderr);
  t.is((await stat(indexFile)).mtimeMs, before.mtimeMs);
  const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${pushed}`]);
  t.deepEqual((JSON.parse(raw.stdout) as { manifests: Descriptor[] }).manifests.map((m) => m.platform?.architecture), ['amd64', 'arm64']);
  for (const [arch, text] of [['amd64', 'on linux/amd64 for linux/amd64\n'], ['arm64', 'on linux/amd64 for linux/arm64\n']] as const) {
    const other = join(f.dir, `pulled-${arch}`);
    const p = await cli(['--root', other, 'pull', '--platform', `linux/${arch}`, pushed], { env: f.env });
    t.is(p.code, 0, p.stderr);
    const img = await readImage(other, pushed);
    t.is(img.config.architecture, arch);
    const out = join(await tempDir(t), `rootfs-${arch}`);
    await unpackLayers(img, out);
    t.is(await readUnpacked(out, 'out'), text);
  }
  // images and inspect show the index by its digest, with the host platform's details (as docker does).
  const listed = await cli(['--root', empty, 'images', '--no-trunc', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'], { env: f.env });
  t.is(listed.stdout.split('\n').filter((l) => l.startsWith(`${pushed} `)).join(), `${pushed} ${entry?.descriptor.digest}`);
  const ins = await cli(['--root', empty, 'inspect', '-f', '{{.Id}} {{.Architecture}}', pushed], { env: f.env });
  t.is(ins.stdout, `${entry?.descriptor.digest} amd64\n`, ins.stderr);
  // The host's platform runs from the index.
  const ran = await cli(['--root', empty, 'run', '--rm', pushed, 'cat', '/out'], { env: f.env });
  t.is(ran.code, 0, ran.stderr);
  t.is(ran.stdout, 'on linux/amd64 for linux/amd64\n');

  // An OCI archive output holds the index (all steps cached now); skopeo reads each platform from it.
  r = await buildIn(f, empty, cross, ['--platform', 'linux/amd64,linux/arm64', '--output', `type=oci,dest=${join(f.dir, 'multi.tar')}`]);
  t.is(r.code, 0, r.stderr);
  const fromArchive = await run('skopeo', ['inspect', '--override-arch', 'arm64', `oci-archive:${join(f.dir, 'multi.tar')}`]);
  t.is((JSON.parse(fromArchive.stdout) as { Architecture: string }).Architecture, 'arm64');

  // What a multi-platform build cannot write yet: said before anything runs.
  r = await buildIn(f, empty, `FROM ${base}\n`, ['--platform', 'linux/amd64,linux/arm64', '--output', 'type=local,dest=out']);
  t.is(r.code, 125, r.stderr);
  t.regex(r.stderr, /CLI_NOT_SUPPORTED: --output type=local of a build for several platforms/);
  r = await buildIn(f, empty, `FROM ${base}\n`, ['--platform', 'linux/amd64,linux/arm64', '--output', 'type=docker,dest=x.tar']);
  t.is(r.code, 125, r.stderr);
  t.regex(r.stderr, /CLI_BAD_VALUE: --output type=docker holds single-platform images/);
  await reg.stop();
});

test('tsbuild build --push: fails before building when no -t name is given', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\n');
  const r = await cli(['--root', join(dir, 'root'), 'build', '--push', dir]);
  t.is(r.code, 125);
  t.regex(r.stderr, /CLI_MISSING_ARGUMENT: --push needs a name to push to/);
});
