import test from 'ava';
import { createHash, constants } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BUNDLE_WRAPPER } from '../../src/cli/code-cache.js';
import { makeBusyboxImage } from '../helpers/base-image.js';
import { DIST_CLI, distMissing, REPO, runNode, runRecordingBuiltins, testBundle } from '../helpers/bundle.js';
import { testIf } from '../helpers/capability.js';
import { busyboxMissing } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { mountsUnder } from '../sandbox/sandbox-helpers.js';

// The other CLI tests run src/ through tsx; these run what users run: the esbuild bundle of the CLI
// (scripts/bundle.mjs: an entry that runs one CommonJS file with a V8 code cache, each command's
// implementation initialized when it runs), built here from the current sources next to dist/cli/main.js.
// Each run gets its own code cache directory (TSBUILD_CODE_CACHE_DIR).
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const built = testBundle('bundle-test');
const bundleOnce = (): Promise<string> => built.get();
test.after.always(() => built.remove());

testIf(distMissing, 'bundle: the bundled CLI prints the version and lists an empty store when run with node', async (t) => {
  const bundle = await bundleOnce();
  const root = await tempDir(t, 'tsbuild-bundle-');
  const env = { TSBUILD_CODE_CACHE_DIR: join(root, 'code-cache') };
  // What a start reads: an entry (CommonJS, or the same as an ES module) and one CommonJS file (the
  // whole CLI or a command module's), no chunks.
  const base = basename(bundle, '.js');
  const cjsEntry = join(DIST_CLI, `${base}.cjs`);
  const files = (await readdir(DIST_CLI)).filter((n) => n.startsWith(`${base}.`)).sort();
  t.deepEqual(files.filter((n) => !/^[^.]+\.bundle\.[\w-]+\.cjs$/.test(n)), [`${base}.bundle.cjs`, `${base}.cjs`, `${base}.js`]);
  t.true(files.includes(`${base}.bundle.run.cjs`) && files.includes(`${base}.bundle.containers.cjs`), files.join(', '));
  for (const name of files.filter((n) => n.includes('.bundle.'))) {
    // ASCII only: the entry reads it as latin1.
    const text = readFileSync(join(DIST_CLI, name), 'latin1');
    t.false(/[^\0-\x7f]/.test(text), `${name} is ASCII`);
    // Each start reads it all: no whitespace or comments (esbuild's `// src/x.ts` before each module),
    // but short lines (Node prints the line of an uncaught error).
    t.false(/^\/\/ src\//m.test(text), `${name} is minified`);
    t.true(Math.max(...text.split('\n').map((l) => l.length)) < 1000, `${name} has short lines`);
  }
  for (const entry of [bundle, cjsEntry]) {
    for (let i = 0; i < 2; i++) {
      // Without a code cache, then with the one the first run wrote.
      const images = await runNode([entry, '--root', join(root, 'store'), 'images'], { env });
      t.is(images.code, 0, images.stderr);
      t.regex(images.stdout, /^REPOSITORY\s+TAG\s+IMAGE ID/);
    }
  }
  t.is((await readdir(join(root, 'code-cache'))).filter((n) => n.endsWith('-images.v8')).length, 1);
  const help = await runNode([bundle, 'build', '--help'], { env });
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /Usage: {2}tsbuild build \[OPTIONS\] PATH/);
  const bad = await runNode([bundle, 'no-such-command'], { env });
  t.not(bad.code, 0);
  t.regex(bad.stderr, /no-such-command/);
});

testIf(distMissing, 'bundle: a command runs from the bundle of its command module (only what it reaches), help and other command lines from the whole CLI', async (t) => {
  const bundle = await bundleOnce();
  const base = basename(bundle, '.js');
  const cjsEntry = join(DIST_CLI, `${base}.cjs`);
  const root = await tempDir(t, 'tsbuild-bundle-');
  const codeCache = join(root, 'code-cache');
  const env = { TSBUILD_CODE_CACHE_DIR: codeCache, TSBUILD_RUN_DIR: join(root, 'run') };
  const keyOf = (name: string): string => /^\/\/ tsbuild-bundle-key (\w+)\n/.exec(readFileSync(join(DIST_CLI, name), 'latin1'))?.[1] ?? '?';
  const size = (name: string): number => statSync(join(DIST_CLI, name)).size;
  t.true(size(`${base}.bundle.images.cjs`) * 4 < size(`${base}.bundle.cjs`), 'images reaches a fraction of the CLI');
  t.true(size(`${base}.bundle.run.cjs`) < size(`${base}.bundle.cjs`));
  // Each file holds its module wrapper after the key line: main.js compiles the text it read without a copy.
  for (const name of [`${base}.bundle.cjs`, `${base}.bundle.run.cjs`]) {
    const text = readFileSync(join(DIST_CLI, name), 'latin1');
    t.true(text.startsWith(`// tsbuild-bundle-key ${keyOf(name)}\n${BUNDLE_WRAPPER}"use strict";`) && text.endsWith('\n})'), name);
  }
  // Which bundle ran: the code cache a start writes is named by the bundle's key and the command.
  for (const [argv, cache, file, caches] of [
    [['-h', 'ps'], 'other', `${base}.bundle.cjs`, 1],
    [['--root', join(root, 'store'), 'images'], 'images', `${base}.bundle.images.cjs`, 2],
    [['-D', '--root', join(root, 'store'), 'ps'], 'ps', `${base}.bundle.containers.cjs`, 3],
    [['--root', join(root, 'store'), 'help'], 'other', `${base}.bundle.cjs`, 3],
  ] as const) {
    const r = await runNode([cjsEntry, ...argv], { env });
    t.is(r.code, 0, r.stderr);
    t.true(existsSync(join(codeCache, `${keyOf(file)}-${process.version}-${process.arch}-${cache}.v8`)), `${argv.join(' ')}: ${file}`);
    t.is((await readdir(codeCache)).length, caches, argv.join(' '));
  }
  // Every command module's bundle runs (a command's help, without a code cache).
  const byFile = new Map<string, string>();
  for (const m of readFileSync(cjsEntry, 'utf8').matchAll(/"?([\w-]+)"?: \["([\w.-]+)", "\w+"\]/g)) if (!byFile.has(m[2] as string)) byFile.set(m[2] as string, m[1] as string);
  t.true(byFile.size > 20 && byFile.has(`${base}.bundle.containers.cjs`), [...byFile.keys()].join(', '));
  for (const command of byFile.values()) {
    const r = await runNode([cjsEntry, command, '--help'], { env: { TSBUILD_CODE_CACHE_DIR: '' } });
    t.is(r.code, 0, `${command}: ${r.stderr}`);
    t.true(r.stdout.startsWith(`Usage:  tsbuild ${command}`), `${command}: ${r.stdout.slice(0, 80)}`);
  }
});

testIf(distMissing, 'bundle: images and ps load neither node:crypto, node:worker_threads nor node:child_process (a built-in is required on its first use; the code cache is checked by V8, not by SHA-1)', async (t) => {
  const bundle = await bundleOnce();
  const cjsEntry = join(DIST_CLI, `${basename(bundle, '.js')}.cjs`);
  const root = await tempDir(t, 'tsbuild-bundle-');
  const env = { TSBUILD_CODE_CACHE_DIR: join(root, 'code-cache'), TSBUILD_RUN_DIR: join(root, 'run') };
  // A store to list (making one draws random names: node:crypto).
  t.is((await runNode([cjsEntry, '--root', join(root, 'store'), 'images'], { env: { ...env, TSBUILD_CODE_CACHE_DIR: '' } })).code, 0);
  for (const command of ['images', 'ps']) {
    // The first run writes the command's code cache, the second reads and checks it.
    for (const cache of ['written', 'used']) {
      const { builtins, ...r } = await runRecordingBuiltins(cjsEntry, root, ['--root', join(root, 'store'), command], env);
      t.is(r.code, 0, r.stderr);
      t.is(r.stderr, '');
      t.true(builtins.includes('vm'), `${command}, cache ${cache}: the list is the real one (the bundle was compiled)`);
      t.deepEqual(builtins.filter((m) => m === 'crypto' || m === 'worker_threads' || m === 'child_process'), [], `${command}, cache ${cache}`);
    }
  }
  t.is((await readdir(join(root, 'code-cache'))).length, 2, 'one cache per command, written once');
  // The stand-in behaves as the built-in: calls, `in`, keys.
  const text = readFileSync(join(DIST_CLI, `${basename(bundle, '.js')}.bundle.cjs`), 'latin1');
  const line = text.split('\n').find((l) => l.startsWith('function __tsbuildBuiltin('));
  t.not(line, undefined, 'the bundle defines the stand-in');
  const standIn = new Function('require', `${line as string}\nreturn __tsbuildBuiltin;`)(createRequire(import.meta.url)) as (id: string) => typeof import('node:crypto');
  const crypto = standIn('node:crypto');
  t.is(crypto.createHash('sha256').update('x').digest('hex'), createHash('sha256').update('x').digest('hex'));
  t.true('randomBytes' in crypto);
  t.true(Object.keys(crypto).includes('createHash'));
  t.is(crypto.constants, constants);
  t.true(/\bimport_node_crypto\w*\s*=\s*__tsbuildBuiltin\("node:crypto"\)/.test(text), 'the bundle requires node:crypto through it');
  t.false(/\bimport_node_crypto\w*\s*=\s*require\(/.test(text), 'everywhere');
});

const runMissing = distMissing ?? (process.getuid?.() === 0 ? undefined : 'building and running through the bundle needs root (CI runs as root)') ?? busyboxMissing();

testIf(runMissing, 'bundle: a build, its fully cached rebuild and run --rm (exit code and output included) work when run through the bundle', async (t) => {
  const bundle = await bundleOnce();
  const dir = await tempDir(t, 'tsbuild-bundle-');
  t.teardown(() => {
    const left = mountsUnder([dir]);
    if (left.length > 0) throw new Error(`leftover mounts: ${left.join(', ')}`);
  });
  const store = join(dir, 'store');
  await makeBusyboxImage(dir, store);
  const ctx = join(dir, 'ctx');
  await mkdir(ctx);
  await writeFile(join(ctx, 'hello.txt'), 'hello\n');
  await writeFile(join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo built > /built\nCOPY hello.txt /hello.txt\n');
  const codeCache = join(dir, 'code-cache');
  const env = { TSBUILD_RUN_DIR: join(dir, 'run'), TSBUILD_CODE_CACHE_DIR: codeCache };
  const first = await runNode([bundle, '--root', store, 'build', '-t', 'bundled', '.'], { cwd: ctx, env });
  t.is(first.code, 0, first.stderr);
  // The first build wrote the build command's code cache; the cached rebuild uses it (and does not rewrite it).
  const [buildCache, ...others] = (await readdir(codeCache)).filter((n) => n.endsWith('-build.v8'));
  t.true(buildCache !== undefined && others.length === 0);
  const cacheStat = statSync(join(codeCache, buildCache as string));
  // The cached rebuild records the Node built-ins it loaded: none of the step machinery's.
  const loaded = join(dir, 'loaded.json');
  const preload = join(dir, 'record-builtins.mjs');
  await writeFile(preload, `import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(${JSON.stringify(loaded)}, JSON.stringify(process.moduleLoadList)));\n`);
  const again = await runNode(['--import', preload, bundle, '--root', store, 'build', '-t', 'bundled', '.'], { cwd: ctx, env });
  t.is(again.code, 0, again.stderr);
  t.is((again.stderr + again.stdout).match(/CACHED/g)?.length, 2, again.stderr);
  const cacheAfter = statSync(join(codeCache, buildCache as string));
  t.deepEqual([cacheAfter.ino, cacheAfter.mtimeMs], [cacheStat.ino, cacheStat.mtimeMs], 'the code cache was used, not written again');
  const builtins = (JSON.parse(readFileSync(loaded, 'utf8')) as string[]).filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
  t.true(builtins.includes('crypto'), 'the record lists what was loaded');
  // Sandbox (child_process), registry client (http, https, tls), layer packing (zlib), hash threads
  // (worker_threads). Not net: Node loads it for piped stdio.
  t.deepEqual(builtins.filter((m) => ['child_process', 'http', 'https', 'tls', 'zlib', 'worker_threads'].includes(m)), [],
    'a fully cached build loads no module of the step machinery, the registry client or the hash threads');
  const run = await runNode([bundle, '--root', store, 'run', '--rm', 'bundled', 'cat', '/hello.txt', '/built'], { cwd: ctx, env });
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, 'hello\nbuilt\n');
  // The CLI exits as soon as its loop is empty (main.ts, 'beforeExit'): the container's exit code and all of its output still come out.
  const failing = await runNode([bundle, '--root', store, 'run', '--rm', 'bundled', 'sh', '-c', 'echo out; echo err >&2; exit 3'], { cwd: ctx, env });
  t.is(failing.code, 3, failing.stderr);
  t.is(failing.stdout, 'out\n');
  t.is(failing.stderr, 'err\n');
});

/** Why dist/cli/main.js is not the bundle (a bare `tsc` run leaves tsc's main.js), or undefined. */
function bundleMissing(): string | undefined {
  if (distMissing !== undefined) return distMissing;
  const main = join(DIST_CLI, 'main.js');
  return existsSync(main) && readFileSync(main, 'utf8').startsWith('// tsbuild CLI bundle') ? undefined : 'dist/cli/main.js is not the bundle (run npm run build)';
}

testIf(bundleMissing(), 'bundle: bin/tsbuild.js starts the bundle npm run build wrote when run with node', async (t) => {
  const v = await runNode([join(REPO, 'bin', 'tsbuild.js'), '--version']);
  t.is(v.code, 0, v.stderr);
  t.is(v.stdout.trim(), `tsbuild version ${VERSION}`);
});

testIf(distMissing, 'bundle: a re-export from an index.ts (registry/compress.ts: export { ... } from \'../store/index.js\') initializes only the defining files, not the whole module', async (t) => {
  const bundle = await bundleOnce();
  const text = readFileSync(join(DIST_CLI, `${basename(bundle, '.js')}.bundle.cjs`), 'latin1');
  // esbuild's lazy initializers (whitespace minified): `var init_x=__esm({"src/path.ts"(){init_a();init_b();...}});`
  const pathOf = new Map([...text.matchAll(/var (init_\w+)\s*=\s*__esm\(\{\s*"([^"]+)"\(\)/g)].map((m) => [m[1] as string, m[2] as string]));
  const body = /"src\/registry\/compress\.ts"\(\)\s*\{([^}]*)\}/.exec(text)?.[1];
  t.not(body, undefined, 'the bundle has an initializer of src/registry/compress.ts');
  const inits = [...(body ?? '').matchAll(/(init_\w+)\(\)/g)].map((m) => pathOf.get(m[1] as string));
  t.true(inits.length > 0);
  t.deepEqual(inits.filter((p) => p === undefined || p.endsWith('/index.ts')), [], inits.join(', '));
  t.true(inits.includes('src/store/layer-gzip.ts'), inits.join(', '));
});

testIf(distMissing, 'bundle: --version alone is answered by the entry without reading the bundle (no node:vm, no code cache)', async (t) => {
  const bundle = await bundleOnce();
  const root = await tempDir(t, 'tsbuild-bundle-');
  const env = { TSBUILD_CODE_CACHE_DIR: join(root, 'code-cache') };
  const loaded = join(root, 'loaded.json');
  const preload = join(root, 'record-builtins.cjs');
  await writeFile(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(loaded)}, JSON.stringify(process.moduleLoadList)));\n`);
  for (const entry of [bundle, join(DIST_CLI, `${basename(bundle, '.js')}.cjs`)]) {
    for (const flag of ['--version', '-v']) {
      const v = await runNode(['-r', preload, entry, flag], { env });
      t.is(v.code, 0, v.stderr);
      t.is(v.stderr, '');
      t.is(v.stdout, `tsbuild version ${VERSION}\n`);
      t.false((JSON.parse(readFileSync(loaded, 'utf8')) as string[]).includes('NativeModule vm'), `${basename(entry)} ${flag} compiled no bundle`);
    }
  }
  t.false(existsSync(join(root, 'code-cache')), 'no code cache was written');
  // With anything else on the line the CLI answers, as before.
  const withRoot = await runNode([bundle, '--root', join(root, 'store'), '--version'], { env });
  t.is(withRoot.code, 0, withRoot.stderr);
  t.is(withRoot.stdout, `tsbuild version ${VERSION}\n`);
  const bad = await runNode([bundle, '--root', '', '--version'], { env });
  t.is(bad.code, 125);
  t.regex(bad.stderr, /CLI_MISSING_VALUE/);
});

testIf(bundleMissing(), 'bundle: bin/tsbuild.js is a CommonJS module that requires the CommonJS entry (no ES module graph at start-up)', async (t) => {
  const root = await tempDir(t, 'tsbuild-bundle-');
  const out = join(root, 'main-module.json');
  const preload = join(root, 'record-main.cjs');
  // process.mainModule is the CommonJS main module: undefined when the entry is an ES module.
  await writeFile(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify({ main: process.mainModule?.filename ?? null, cjs: Object.keys(require.cache) })));\n`);
  const r = await runNode(['-r', preload, join(REPO, 'bin', 'tsbuild.js'), '--root', join(root, 'store'), 'images']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^REPOSITORY\s+TAG\s+IMAGE ID/);
  const seen = JSON.parse(readFileSync(out, 'utf8')) as { main: string | null; cjs: string[] };
  t.is(seen.main, join(REPO, 'bin', 'tsbuild.js'));
  t.true(seen.cjs.includes(join(DIST_CLI, 'main.cjs')), seen.cjs.join(', '));
});
