import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import test from 'ava';
import { MediaType, sha256Of, type Descriptor } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { openStore } from '../../src/store/index.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

// A no-op push or pull is mostly Node's start-up: what the command loads beyond it is its cost. These
// run the CLI's esbuild bundle (what users run), built here from the current sources into dist/cli/.
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DIST_CLI = join(REPO, 'dist', 'cli');
const missing = (existsSync(join(DIST_CLI, 'app.js')) ? undefined : 'dist/ is not built (run npm run build)') ?? (await registryMissing());

interface Result { readonly code: number; readonly stdout: string; readonly stderr: string }

function node(args: readonly string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: REPO, env: { ...process.env, ...env }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

let bundled: Promise<string> | undefined;
/** Bundles the current sources once for this file into dist/cli/ (removed when the file's tests end). */
function bundleOnce(): Promise<string> {
  bundled ??= (async () => {
    const file = join(DIST_CLI, `bundle-noop-test-${randomBytes(4).toString('hex')}.js`);
    const r = await node([join(REPO, 'scripts', 'bundle.mjs'), '--outfile', file]);
    if (r.code !== 0) throw new Error(`scripts/bundle.mjs failed:\n${r.stderr}${r.stdout}`);
    return file;
  })();
  return bundled;
}

test.after.always(async () => {
  const file = bundled === undefined ? undefined : await bundled.catch(() => undefined);
  if (file === undefined) return;
  const base = basename(file, '.js');
  for (const name of await readdir(DIST_CLI)) if (name === `${base}.js` || name === `${base}.cjs` || name.startsWith(`${base}.bundle.`)) await rm(join(DIST_CLI, name), { force: true });
});

/** Runs the bundle with `args`; resolves to its result and the Node built-ins it loaded. */
async function runRecorded(bundle: string, dir: string, args: readonly string[], env: Record<string, string>): Promise<Result & { builtins: string[] }> {
  const loaded = join(dir, `loaded-${randomBytes(4).toString('hex')}.json`);
  const preload = join(dir, 'record-builtins.cjs');
  await writeFile(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(loaded)}, JSON.stringify(process.moduleLoadList)));\n`);
  const r = await node(['-r', preload, bundle, ...args], env);
  const list = existsSync(loaded) ? (JSON.parse(readFileSync(loaded, 'utf8')) as string[]) : [];
  return { ...r, builtins: list.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length)) };
}

testIf(missing, 'bundle: a no-op push and a no-op pull load neither child_process (credential helpers) nor zlib or worker_threads (compression, unpack, hash threads)', async (t) => {
  const reg = await startRegistry(t);
  const bundle = await bundleOnce();
  const dir = await tempDir(t, 'tsbuild-noop-');
  const env = { TSBUILD_CODE_CACHE_DIR: join(dir, 'code-cache'), DOCKER_CONFIG: join(dir, 'docker'), HOME: dir };
  const src = await openStore(join(dir, 'src'));
  // An empty tar (its end-of-archive blocks): the first pull unpacks it.
  const tar = Buffer.alloc(1024);
  const l = await src.blobs.putBytes(gzipSync(tar));
  const layer: Descriptor = { mediaType: MediaType.ociLayerGzip, digest: l.digest, size: l.size };
  const c = await src.blobs.putBytes(serializeDocument(addLayer(createEmptyConfig({ os: 'linux', architecture: 'amd64' }, '2024-01-01T00:00:00Z'), sha256Of(tar))));
  const m = await src.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, [layer])));
  await src.refs.set('docker.io/library/img:latest', { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size });
  const dest = `${reg.host}/team/img:v1`;
  const pushArgs = ['--root', join(dir, 'src'), 'push', '-q', 'img', dest];
  const first = await node([bundle, ...pushArgs], env);
  t.is(first.code, 0, first.stderr);
  const pullArgs = ['--root', join(dir, 'dst'), 'pull', '-q', '--platform', 'linux/amd64', dest];
  // The first pull downloads, so it unpacks: only the second is a no-op.
  const pulled = await node([bundle, ...pullArgs], env);
  t.is(pulled.code, 0, pulled.stderr);
  for (const args of [pushArgs, pullArgs]) {
    const r = await runRecorded(bundle, dir, args, env);
    t.is(r.code, 0, r.stderr);
    t.true(r.builtins.includes('http'), `${args[2]}: the record lists what was loaded`);
    t.deepEqual(r.builtins.filter((b) => ['child_process', 'zlib', 'worker_threads', 'https', 'tls'].includes(b)), [], `a no-op ${args[2]} loads none of them`);
  }
});
