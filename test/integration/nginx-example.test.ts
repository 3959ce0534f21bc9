/**
 * The classic example as a slow integration test: a Debian minbase image (debootstrap, cached
 * per machine by test/helpers/debian-image.ts) imported as `debian`, then examples/nginx
 * (`FROM debian`, `RUN apt-get update && apt-get install -y nginx`, `COPY test.html ...`,
 * `ENTRYPOINT nginx -g "daemon off;"`) built with `tsbuild -f Dockerfile -t testnginx:1 .` through
 * the CLI, checked in the image, run (`nginx -t`; answering HTTP on a published port), and built
 * again from the cache. Needs root and the Debian mirror.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BuildEvent } from '../../src/core/index.js';
import { cli, type CliResult } from '../cli/run-cli.js';
import { testSerialIf } from '../helpers/capability.js';
import { processesMentioning, waitForNoProcessMentioning } from '../helpers/containers.js';
import { debianMissing, ensureDebianArchive, importDebianImage } from '../helpers/debian-image.js';
import { ensureLauncher, mountsUnder, notRoot } from '../sandbox/sandbox-helpers.js';
import { activeSnapshots, childProcesses, ownCgroups, readImage, stepsOf, type StoredImage } from './build-helpers.js';

const run = promisify(execFile);

/** The example's directory: the build context, used as is. */
const EXAMPLE = fileURLToPath(new URL('../../examples/nginx/', import.meta.url));
const IMAGE = 'testnginx:1';

/** Why the tests cannot run here; awaited before any declaration (ava wants them declared in one go). */
const missing = notRoot() ?? (await debianMissing());

/** The store and environment shared by the tests of this file (serial; removed after them). */
interface NginxFixture {
  readonly dir: string;
  readonly root: string;
  readonly env: Record<string, string | undefined>;
  /** The first build of the example. */
  readonly first: CliResult & { events: BuildEvent[] };
  readonly image: StoredImage;
}

let fixture: Promise<NginxFixture> | undefined;
let fixtureDir: string | undefined;

/** Runs the CLI with the fixture's store and environment. */
function tsbuild(f: Pick<NginxFixture, 'root' | 'env'>, args: readonly string[], cwd = EXAMPLE): Promise<CliResult> {
  return cli(['--root', f.root, ...args], { cwd, env: f.env });
}

/** `tsbuild -f Dockerfile -t testnginx:1 .` in examples/nginx, with the progress as JSON events. */
async function buildExample(f: Pick<NginxFixture, 'root' | 'env'>): Promise<CliResult & { events: BuildEvent[] }> {
  const r = await tsbuild(f, ['-f', 'Dockerfile', '-t', IMAGE, '--progress=rawjson', '.']);
  const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as BuildEvent);
  return { ...r, events };
}

/** Makes (once) the store with the debian image and the first build of the example. */
function setUp(): Promise<NginxFixture> {
  fixture ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tsbuild-nginx-'));
    fixtureDir = dir;
    const root = join(dir, 'root');
    const runDir = join(dir, 'run');
    await mkdir(runDir);
    const env = { PATH: process.env.PATH, TSBUILD_LAUNCHER: ensureLauncher(), TSBUILD_RUN_DIR: runDir };
    await importDebianImage(root, await ensureDebianArchive());
    const first = await buildExample({ root, env });
    if (first.code !== 0) throw new Error(`the example build failed (${first.code}):\n${first.stderr.slice(-4000)}`);
    return { dir, root, env, first, image: await readImage(root, IMAGE) };
  })();
  return fixture;
}

test.after.always('nginx example: nothing is left behind', async () => {
  if (fixtureDir === undefined) return;
  const dir = fixtureDir;
  const leaks = [...mountsUnder([dir]).map((m) => `mount ${m}`), ...ownCgroups().map((c) => `cgroup ${c}`),
    ...childProcesses().map((p) => `process ${p}`), ...(await activeSnapshots(join(dir, 'root'))).map((s) => `snapshot ${s}`)];
  if (mountsUnder([dir]).length === 0) await rm(dir, { recursive: true, force: true });
  if (leaks.length > 0) throw new Error(`leftovers: ${leaks.join(', ')}`);
});

/** Paths in a layer blob (`tar -tf`, gzip or not), without a leading `./`. */
async function layerEntries(img: StoredImage, index: number): Promise<string[]> {
  const layer = img.manifest.layers[index];
  if (layer === undefined) throw new Error(`the image has no layer ${index}`);
  const { stdout } = await run('tar', ['-tf', img.store.blobs.pathOf(layer.digest)], { maxBuffer: 256 << 20 });
  return stdout.split('\n').filter((l) => l !== '').map((l) => l.replace(/^\.\//, ''));
}

/** One file of a layer blob as text (`tar -xOf`). */
async function layerFile(img: StoredImage, index: number, path: string): Promise<string> {
  const layer = img.manifest.layers[index];
  if (layer === undefined) throw new Error(`the image has no layer ${index}`);
  const entries = await layerEntries(img, index);
  const name = entries.includes(path) ? path : `./${path}`;
  return (await run('tar', ['-xOf', img.store.blobs.pathOf(layer.digest), name])).stdout;
}

/** True when nothing listens on host port `port` (it can be bound on 0.0.0.0). */
async function portIsFree(port: number): Promise<boolean> {
  const s = createServer();
  const ok = await new Promise<boolean>((res) => {
    s.once('error', () => res(false));
    s.listen({ port, host: '0.0.0.0', exclusive: true }, () => res(true));
  });
  if (ok) await new Promise((res) => s.close(res));
  return ok;
}

/** A free host port: `preferred` when free, else one the kernel picks. */
async function hostPort(preferred: number): Promise<number> {
  if (await portIsFree(preferred)) return preferred;
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const port = (s.address() as { port: number }).port;
  await new Promise((res) => s.close(res));
  return port;
}

/** GET http://127.0.0.1:PORT/PATH (no keep-alive); rejects on a connection error. */
function httpGet(port: number, path: string): Promise<{ status: number; body: string; server: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, server: String(res.headers.server ?? '') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The example serves HTTP: `tsbuild run -d -p PORT:80 testnginx:1` (PORT 8081, or a free one when
 * 8081 is taken), then a GET of / returns Debian's nginx welcome page. (Debian's default site
 * serves /var/www/html; /usr/share/nginx/html, where the example copies test.html, is the document
 * root of the official nginx image only, so /test.html is a 404 here, as with docker build.) The
 * container is force-removed afterwards (also when an assertion fails) and no monitor is left.
 */
async function checkServesHttp(t: ExecutionContext, f: Pick<NginxFixture, 'root' | 'env'>, preferredPort = 8081): Promise<void> {
  const port = await hostPort(preferredPort);
  const started = await tsbuild(f, ['run', '-d', '-p', `${port}:80`, IMAGE]);
  t.is(started.code, 0, started.stderr);
  const id = started.stdout.trim();
  const remove = async (): Promise<void> => {
    await tsbuild(f, ['rm', '-f', id]);
    await waitForNoProcessMentioning(f.root);
  };
  t.teardown(remove);
  let got: { status: number; body: string; server: string } | undefined;
  let lastError = '';
  for (let i = 0; i < 300 && got === undefined; i++) {
    try {
      got = await httpGet(port, '/');
    } catch (err) {
      lastError = (err as Error).message;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  t.is(got?.status, 200, `GET / on port ${port}: ${lastError}`);
  t.regex(got?.body ?? '', /<title>Welcome to nginx!<\/title>/);
  t.regex(got?.server ?? '', /^nginx/);
  const ps = await tsbuild(f, ['ps', '--no-trunc']);
  t.true(ps.stdout.includes(id), ps.stdout);
  await remove();
  t.deepEqual(processesMentioning(f.root), [], 'no monitor, container or port proxy process is left');
}

testSerialIf(missing, 'nginx example: the image has the ENTRYPOINT, the nginx binary and test.html when built from examples/nginx', async (t) => {
  t.timeout(15 * 60_000, 'debootstrap (first run on a machine) and apt-get install nginx');
  const f = await setUp();
  t.is(f.first.code, 0);
  t.true(f.first.stdout.trim() === '' || /sha256:[0-9a-f]{64}/.test(f.first.stdout));
  const { config } = f.image.config;
  t.deepEqual(config?.Entrypoint, ['/bin/sh', '-c', 'nginx -g "daemon off;"']);
  t.true(config?.Env?.some((e) => e.startsWith('PATH=')) ?? false, 'PATH is inherited from the debian image');
  const base = await readImage(f.root, 'debian:bookworm');
  t.is(f.image.manifest.layers.length, base.manifest.layers.length + 2, 'RUN and COPY add one layer each');
  t.deepEqual(f.image.config.rootfs.diff_ids.slice(0, base.manifest.layers.length), base.config.rootfs.diff_ids);
  const runLayer = await layerEntries(f.image, base.manifest.layers.length);
  t.true(runLayer.includes('usr/sbin/nginx'), 'the RUN layer holds the nginx binary');
  t.true(runLayer.some((p) => p.startsWith('etc/nginx/nginx.conf')));
  t.false(runLayer.some((p) => p.startsWith('usr/share/nginx/html/test.html')));
  const copyLayer = await layerEntries(f.image, base.manifest.layers.length + 1);
  t.true(copyLayer.includes('usr/share/nginx/html/test.html'), `COPY layer: ${copyLayer.join(', ')}`);
  t.is(await layerFile(f.image, base.manifest.layers.length + 1, 'usr/share/nginx/html/test.html'), await readFile(join(EXAMPLE, 'test.html'), 'utf8'));
  const { started } = stepsOf(f.first.events);
  t.true(started.some((n) => n.includes('apt-get install -y nginx')), `steps run: ${started.join(' | ')}`);
});

testSerialIf(missing, 'nginx example: nginx -t passes inside the image when run with --entrypoint nginx', async (t) => {
  t.timeout(15 * 60_000);
  const f = await setUp();
  const checked = await tsbuild(f, ['run', '--rm', '--entrypoint', 'nginx', IMAGE, '-t']);
  t.is(checked.code, 0, checked.stderr);
  t.regex(checked.stdout + checked.stderr, /configuration file \/etc\/nginx\/nginx\.conf test is successful/);
  const page = await tsbuild(f, ['run', '--rm', '--entrypoint', 'cat', IMAGE, '/usr/share/nginx/html/test.html']);
  t.is(page.code, 0, page.stderr);
  t.is(page.stdout, await readFile(join(EXAMPLE, 'test.html'), 'utf8'));
});

testSerialIf(missing, 'nginx example: every step is a cache hit when the example is built again unchanged', async (t) => {
  t.timeout(15 * 60_000);
  const f = await setUp();
  const again = await buildExample(f);
  t.is(again.code, 0, again.stderr);
  const { started, cached } = stepsOf(again.events);
  t.false(started.some((n) => n.includes('RUN') || n.includes('COPY')), `steps run again: ${started.join(' | ')}`);
  t.true(cached.some((n) => n.includes('apt-get install -y nginx')), `cached: ${cached.join(' | ')}`);
  t.true(cached.some((n) => n.includes('COPY test.html')), `cached: ${cached.join(' | ')}`);
  const image = await readImage(f.root, IMAGE);
  t.deepEqual(image.manifest.layers, f.image.manifest.layers, 'the same layer blobs');
  t.deepEqual(image.config.config, f.image.config.config);
});

testSerialIf(missing, 'nginx example: nginx answers HTTP on the published port when run with -d -p 8081:80', async (t) => {
  t.timeout(15 * 60_000);
  const f = await setUp();
  await checkServesHttp(t, f);
});
