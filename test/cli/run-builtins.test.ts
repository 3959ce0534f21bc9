import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

// `run --rm IMAGE true` of an unpacked image is mostly start-up: Node built-ins it loads but never
// uses are part of its cost. This runs the CLI's esbuild bundle (what users run), built here from
// the current sources into dist/cli/.
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DIST_CLI = join(REPO, 'dist', 'cli');
const rootWhy = process.getuid?.() === 0 ? undefined : 'containers from images are run as root here';
const missing = rootWhy ?? (existsSync(join(DIST_CLI, 'app.js')) ? undefined : 'dist/ is not built (run npm run build)') ?? (await busyboxMissing());

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
    const file = join(DIST_CLI, `bundle-run-test-${randomBytes(4).toString('hex')}.js`);
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

testIf(missing, 'bundle: run --rm of an unpacked image does not load zlib (layer compression: only when a layer must be unpacked)', async (t) => {
  const bundle = await bundleOnce();
  const dir = await tempDir(t, 'tsbuild-run-builtins-');
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const env = { TSBUILD_CODE_CACHE_DIR: join(dir, 'code-cache'), TSBUILD_RUN_DIR: join(dir, 'run') };
  const loaded = join(dir, 'loaded.json');
  const preload = join(dir, 'record-builtins.cjs');
  await writeFile(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(loaded)}, JSON.stringify(process.moduleLoadList)));\n`);
  // --network none: the result does not depend on slirp4netns being installed.
  const r = await node(['-r', preload, bundle, '--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'true'], env);
  t.is(r.code, 0, r.stderr);
  const builtins = (JSON.parse(readFileSync(loaded, 'utf8')) as string[]).filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
  t.true(builtins.includes('child_process'), 'the list is the real one (the launcher is spawned)');
  t.false(builtins.includes('zlib'), 'zlib');
});
