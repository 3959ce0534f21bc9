import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import { join } from 'node:path';
import { MediaType, parseReference, type Descriptor, type Digest } from '../../src/core/index.js';
import { snapshotUnpacker } from '../../src/cli/pull-unpack.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { compressGzip, packLayer } from '../../src/layer/index.js';
import { HttpRegistryClient, locationOf, pullImage, pushImage, type LayerUnpackHook } from '../../src/registry/index.js';
import { downloadBlob } from '../../src/registry/download.js';
import { NaiveSnapshotter, chainIdOf, chainIdOfStack, openSnapshotter } from '../../src/snapshot/index.js';
import { checkStore, openStore, type Store } from '../../src/store/index.js';
import { cli } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { cliAsUser, rootlessMissing, ROOTLESS_USER } from '../helpers/rootless.js';
import { registryMissing, startProxy, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const missing = await registryMissing();
const noBusybox = missing ?? (await busyboxMissing());
const platform = { os: 'linux', architecture: 'amd64' };

/** A pushed image of three gzip tar layers: `/v` is rewritten by each, `/only-N` added by layer N. */
interface Pushed {
  readonly reg: TestRegistry;
  readonly dir: string;
  readonly ref: string;
  readonly layers: readonly Descriptor[];
  readonly diffIds: readonly Digest[];
}

/** Pushes `team/img:v1`; `badDiffId` replaces the diffID of layer 1 in the config. */
async function pushImageOf3(t: ExecutionContext, badDiffId = false, owner?: number): Promise<Pushed> {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const store = await openStore(join(dir, 'src'));
  let config = createEmptyConfig(platform, '2024-01-01T00:00:00Z');
  const layers: Descriptor[] = [];
  const diffIds: Digest[] = [];
  for (let i = 0; i < 3; i++) {
    const ld = join(dir, `layer-${i}`);
    await mkdir(join(ld, 'sub'), { recursive: true });
    await writeFile(join(ld, 'v'), `layer ${i}\n`);
    await writeFile(join(ld, `only-${i}`), Buffer.alloc(200_000 * (i + 1), i + 1));
    if (owner !== undefined) await chown(join(ld, `only-${i}`), owner, owner);
    const packed = packLayer(ld, { mode: 'tree', sourceDateEpoch: 0 });
    const info = await store.blobs.put(compressGzip(packed.stream, { level: 1 }));
    const { diffId } = await packed.done;
    layers.push({ mediaType: MediaType.ociLayerGzip, digest: info.digest, size: info.size });
    diffIds.push(diffId);
    config = addLayer(config, badDiffId && i === 1 ? chainIdOf(diffId, diffId) : diffId);
  }
  const c = await store.blobs.putBytes(serializeDocument(config));
  const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, layers)));
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  await pushImage(client, store, { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size }, parseReference(`${reg.host}/team/img:v1`));
  return { reg, dir, ref: `${reg.host}/team/img:v1`, layers, diffIds };
}

/** The unpack hook `tsbuild pull` uses, over `store`. */
function hookFor(store: Store): LayerUnpackHook {
  return (layers) => snapshotUnpacker(store, layers, { tools: {} });
}

/** Committed snapshots of the store's snapshotter, by chain ID. */
async function committed(store: Store): Promise<string[]> {
  const { snapshotter } = await openSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp });
  return (await snapshotter.list()).filter((s) => s.kind === 'committed').map((s) => s.name).sort();
}

testIf(missing, 'pull: the CLI unpacks every layer into its committed snapshot while pulling', async (t) => {
  const p = await pushImageOf3(t);
  const root = join(p.dir, 'dst');
  const r = await cli(['--root', root, 'pull', p.ref]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /: Download complete\n/);
  t.regex(r.stdout, /: Pull complete\n/);
  const store = await openStore(root);
  const chains = p.diffIds.map((_, i) => chainIdOfStack(p.diffIds.slice(0, i + 1)) as string).sort();
  t.deepEqual(await committed(store), chains);
  const { snapshotter } = await openSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp });
  const top = chainIdOfStack(p.diffIds) as Digest;
  t.is(await readFile((await snapshotter.lookup(top, '/v')) as string, 'utf8'), 'layer 2\n');
  t.is((await readFile((await snapshotter.lookup(top, '/only-0')) as string)).length, 200_000);
  t.deepEqual((await checkStore(store)).problems, []);
  t.deepEqual(await readdir(store.paths.tmp), []);
  // A repeated pull finds everything and unpacks nothing.
  const again = await cli(['--root', root, 'pull', p.ref]);
  t.regex(again.stdout, /Image is up to date/);
});

testIf(missing, 'pull: a layer blob that differs from its digest makes no snapshot even when it unpacks to the right diffID', async (t) => {
  const p = await pushImageOf3(t);
  const bad = p.layers[0] as Descriptor;
  // A changed gzip header MTIME: the same tar inside (diffID right), other bytes (digest wrong).
  const proxy = await startProxy(t, p.reg.url, (x) => x.forward(x.req.method === 'GET' && x.key.endsWith(`/blobs/${bad.digest}`)
    ? { transform: (b) => Buffer.from(b.map((v, i) => (i === 4 ? v ^ 1 : v))) }
    : {}));
  const store = await openStore(join(p.dir, 'dst'));
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  const err = await t.throwsAsync(pullImage(client, store, parseReference(`${proxy.host}/team/img:v1`), { platform, unpack: hookFor(store) }));
  t.is((err as { code?: string }).code, 'REG_DIGEST_MISMATCH');
  t.false(await store.blobs.has(bad.digest));
  t.deepEqual(await store.refs.list(), []);
  t.deepEqual(await committed(store), []);
  t.deepEqual((await checkStore(store)).problems, []);
  t.deepEqual(await readdir(store.paths.tmp), []);
});

testIf(missing, 'pull: a config whose diffID does not match its layer fails with SNAPSHOT_DIGEST_MISMATCH and names nothing', async (t) => {
  const p = await pushImageOf3(t, true);
  const store = await openStore(join(p.dir, 'dst'));
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  const err = await t.throwsAsync(pullImage(client, store, parseReference(p.ref), { platform, unpack: hookFor(store) }));
  t.is((err as { code?: string }).code, 'SNAPSHOT_DIGEST_MISMATCH');
  t.deepEqual(await store.refs.list(), []);
  // Only the verified bottom layer may be committed; nothing above the bad one.
  const chains = await committed(store);
  t.true(chains.length <= 1);
  for (const c of chains) t.is(c, p.diffIds[0] as string);
  t.deepEqual((await checkStore(store)).problems, []);
  t.deepEqual(await readdir(store.paths.tmp), []);
});

testIf(missing, 'pull: layers already stored are unpacked from the store', async (t) => {
  const p = await pushImageOf3(t);
  const store = await openStore(join(p.dir, 'dst'));
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  // The blobs only (as an older tsbuild pulled them), then a pull that unpacks.
  await pullImage(client, store, parseReference(p.ref), { platform });
  await store.refs.remove(() => true);
  t.deepEqual(await committed(store), []);
  const r = await pullImage(client, store, parseReference(p.ref), { platform, unpack: hookFor(store) });
  t.is(r.downloaded, 0);
  t.is((await committed(store)).length, 3);
  t.deepEqual((await checkStore(store)).problems, []);
});

/** Reads `tee` in flowing mode; resolves how it finished: ended (with whether the blob was stored by then) or destroyed (with the error). */
function watchTee(tee: PassThrough, blobPath: string): Promise<{ ended: boolean; storedAtEnd: boolean; error: unknown; bytes: number }> {
  let bytes = 0;
  let ended = false;
  let storedAtEnd = false;
  let error: unknown;
  tee.on('data', (c: Buffer) => { bytes += c.length; });
  tee.on('end', () => {
    ended = true;
    storedAtEnd = existsSync(blobPath);
  });
  tee.on('error', (e) => { error = e; });
  return new Promise((resolve) => tee.on('close', () => resolve({ ended, storedAtEnd, error, bytes })));
}

testIf(missing, 'pull: a download\'s tee ends only once the blob is verified and stored, and is destroyed when the digest is wrong', async (t) => {
  const p = await pushImageOf3(t);
  const layer = p.layers[0] as Descriptor;
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  const good = await openStore(join(p.dir, 'good'));
  const tee = new PassThrough();
  const watched = watchTee(tee, good.blobs.pathOf(layer.digest));
  t.true(await downloadBlob(client, good.blobs, locationOf(parseReference(p.ref)), layer, { tee }));
  const ok = await watched;
  t.true(ok.ended);
  t.true(ok.storedAtEnd);
  t.is(ok.bytes, layer.size);
  const proxy = await startProxy(t, p.reg.url, (x) => x.forward(x.key.endsWith(`/blobs/${layer.digest}`) ? { transform: (b) => Buffer.from(b.map((v, i) => (i === 4 ? v ^ 1 : v))) } : {}));
  const bad = await openStore(join(p.dir, 'bad'));
  const tee2 = new PassThrough();
  const watched2 = watchTee(tee2, bad.blobs.pathOf(layer.digest));
  const err = await t.throwsAsync(downloadBlob(client, bad.blobs, locationOf(parseReference(`${proxy.host}/team/img:v1`)), layer, { tee: tee2 }));
  t.is((err as { code?: string }).code, 'REG_DIGEST_MISMATCH');
  const failed = await watched2;
  t.false(failed.ended);
  t.is((failed.error as { code?: string }).code, 'REG_DIGEST_MISMATCH');
});

/** The paths of entries named `name` under `dir` (recursive). */
async function findNamed(dir: string, name: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.name === name) out.push(p);
    if (e.isDirectory() && !e.isSymbolicLink()) out.push(...(await findNamed(p, name)));
  }
  return out;
}

testIf(missing ?? rootlessMissing(), 'pull rootless: an unprivileged user\'s pull unpacks in a user namespace over its sub-ids', async (t) => {
  const p = await pushImageOf3(t, false, 1000);
  await chmod(p.dir, 0o755);
  const home = join(p.dir, 'home');
  for (const d of [home, join(home, 'tmp'), join(home, 'run')]) await mkdir(d, { recursive: true });
  execFileSync('chown', ['-R', `${ROOTLESS_USER}:${ROOTLESS_USER}`, home]);
  const root = join(home, 'store');
  const r = await cliAsUser(home, root, ['pull', p.ref]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /: Pull complete\n/);
  const subuidStart = Number(/^tsbuild-test:(\d+):/m.exec(await readFile('/etc/subuid', 'utf8'))?.[1]);
  const files = await findNamed(join(root, 'snapshots'), 'only-1');
  t.is(files.length, 1);
  // uid 1000 in the image is the 1000th id of the user's sub-id range, as a rootless build stores it.
  t.is((await lstat(files[0] as string)).uid, subuidStart + 999);
});

testIf(noBusybox, 'run --pull: the image\'s layers are unpacked while they download, as by pull', async (t) => {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  await makeBusyboxImage(dir, join(dir, 'src'));
  const remote = `${reg.host}/tools/busybox:1`;
  let r = await cli(['--root', join(dir, 'src'), 'push', 'busybox', remote]);
  t.is(r.code, 0, r.stderr);
  r = await cli(['--root', join(dir, 'dst'), 'run', '--rm', '--pull', 'missing', remote, 'echo', 'pulled']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'pulled\n');
  t.regex(r.stderr, /: Download complete\n[^]*: Pull complete\n/);
});

testIf(missing, 'pull: with the naive snapshotter the layers above the first are unpacked from the store on top of their parents', async (t) => {
  const p = await pushImageOf3(t);
  const store = await openStore(join(p.dir, 'dst'));
  const naive = new NaiveSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp });
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  await pullImage(client, store, parseReference(p.ref), { platform, unpack: (layers) => snapshotUnpacker(store, layers, { tools: {}, snapshotter: naive }) });
  const top = chainIdOfStack(p.diffIds) as Digest;
  t.is((await naive.stat(top))?.kind, 'committed');
  // A naive snapshot holds the whole tree: every layer's file and the top layer's /v.
  for (const i of [0, 1, 2]) t.is((await readFile((await naive.lookup(top, `/only-${i}`)) as string)).length, 200_000 * (i + 1));
  t.is(await readFile((await naive.lookup(top, '/v')) as string, 'utf8'), 'layer 2\n');
  t.deepEqual((await checkStore(store)).problems, []);
  t.deepEqual(await readdir(store.paths.tmp), []);
});
