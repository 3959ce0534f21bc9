import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLE_WRAPPER, cacheFileOf, cacheNameFor, cacheVariantFor, defaultCacheDir } from '../../src/cli/code-cache.js';
import { ONE_TIME_WORK_EVENT } from '../../src/cli/one-time-work.js';
import { tempDir } from '../helpers/tmp.js';

// src/cli/code-cache.ts runs the CLI bundle with a V8 code cache written at exit: each case runs a
// small CommonJS "bundle" in a fresh Node process (the cache is written when that process exits).
const CODE_CACHE = fileURLToPath(new URL('../../src/cli/code-cache.ts', import.meta.url));

/** A CommonJS file that uses what the bundle uses: require (also later, as its import() of built-ins), module, __filename. */
function bundleSource(word: string, key = 'k1'): string {
  return [
    `// tsbuild-bundle-key ${key}`,
    "const { basename } = require('node:path');",
    'function twice(x) { return x + x; }',
    `module.exports = { word: ${JSON.stringify(word)} };`,
    `process.stdout.write(basename(__filename) + ' ' + twice(${JSON.stringify(word)}) + ' ' + (typeof exports) + '\\n');`,
    "Promise.resolve().then(() => require('node:os')).then((os) => process.stdout.write('os ' + typeof os.cpus + '\\n'));",
    '',
  ].join('\n');
}

/** The driver run in the child: runs `file` with the cache and prints the cache state on stderr. */
const DRIVER = `import { runBundle } from ${JSON.stringify(CODE_CACHE)};
const [file, key, dir, name] = process.argv.slice(2);
const r = runBundle({ file, key, cacheDir: dir === '-' ? undefined : dir, name });
process.stderr.write('cache ' + r.cache + ' exports ' + JSON.stringify(r.exports) + '\\n');
`;

interface Run { readonly code: number; readonly stdout: string; readonly stderr: string }

async function setup(t: Parameters<typeof tempDir>[0]): Promise<{ dir: string; file: string; cacheDir: string; run: (cacheDir?: string) => Promise<Run> }> {
  const dir = await tempDir(t, 'tsbuild-code-cache-');
  const file = join(dir, 'cli.bundle.cjs');
  await writeFile(file, bundleSource('ab'));
  const driver = join(dir, 'driver.mts');
  await writeFile(driver, DRIVER);
  const cacheDir = join(dir, 'cache');
  const run = (dirArg = cacheDir): Promise<Run> => new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', driver, file, 'k1', dirArg, 'build'], { cwd: fileURLToPath(new URL('../..', import.meta.url)) }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
  return { dir, file, cacheDir, run };
}

const cacheOf = (file: string, cacheDir: string): string => cacheFileOf({ file, key: 'k1', cacheDir, name: 'build' }) as string;
const inode = (file: string): string => { const s = statSync(file); return `${s.ino}:${s.mtimeMs}`; };

test('code cache: a missing cache is written at exit and used by the next start, which does not rewrite it', async (t) => {
  const { file, cacheDir, run } = await setup(t);
  const first = await run();
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout, 'cli.bundle.cjs abab object\nos function\n');
  t.regex(first.stderr, /^cache missing exports \{"word":"ab"\}\n$/);
  const cache = cacheOf(file, cacheDir);
  t.true(statSync(cache).size > 12);
  t.deepEqual(readdirSync(cacheDir), [cache.slice(cacheDir.length + 1)], 'only the cache file, no temporary file left');
  const before = inode(cache);
  const second = await run();
  t.is(second.code, 0, second.stderr);
  t.is(second.stdout, first.stdout);
  t.regex(second.stderr, /^cache used /);
  t.is(inode(cache), before, 'a used cache is not written again');
});

test('code cache: a bundle that holds its module wrapper (as scripts/bundle.mjs writes them) runs the same and uses its cache', async (t) => {
  const { file, cacheDir, run } = await setup(t);
  const [keyLine, ...body] = bundleSource('ab').split('\n');
  await writeFile(file, `${keyLine}\n${BUNDLE_WRAPPER}${body.join('\n')}\n})`);
  const first = await run();
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout, 'cli.bundle.cjs abab object\nos function\n', 'exports, require, module and __filename as with the wrapper added');
  t.regex(first.stderr, /^cache missing exports \{"word":"ab"\}\n$/);
  const second = await run();
  t.is(second.stdout, first.stdout);
  t.regex(second.stderr, /^cache used /);
});

test('code cache: a corrupt cache (a flipped byte, a truncated file, garbage) is not used and is replaced', async (t) => {
  const { file, cacheDir, run } = await setup(t);
  t.is((await run()).code, 0);
  const cache = cacheOf(file, cacheDir);
  const good = await readFile(cache);
  const flipped = Buffer.from(good);
  const mid = Math.floor(flipped.length / 2);
  flipped[mid] = (flipped[mid] as number) ^ 0x10;
  // Our header (magic, length) finds a file that is not whole; V8's checksum a changed payload.
  for (const [what, bytes, state] of [['a flipped byte', flipped, 'rejected'], ['a truncated file', good.subarray(0, good.length - 100), 'corrupt'], ['garbage', Buffer.from('not a cache'), 'corrupt'], ['an empty file', Buffer.alloc(0), 'corrupt']] as const) {
    await writeFile(cache, bytes);
    const r = await run();
    t.is(r.code, 0, `${what}: ${r.stderr}`);
    t.is(r.stdout, 'cli.bundle.cjs abab object\nos function\n', what);
    t.regex(r.stderr, new RegExp(`^cache ${state} `), what);
    t.notDeepEqual(await readFile(cache), bytes, `${what}: replaced`);
    t.regex((await run()).stderr, /^cache used /, `${what}: replaced by a good cache`);
  }
});

test('code cache: a cache V8 rejects (made for another source of the same key) falls back to compiling and is replaced', async (t) => {
  const { file, cacheDir, run } = await setup(t);
  t.is((await run()).code, 0);
  const cache = cacheOf(file, cacheDir);
  const old = await readFile(cache);
  // V8 checks the source's length, not its text: the bundle's content hash in the name guards the rest.
  await writeFile(file, bundleSource('changed'));
  const r = await run();
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'cli.bundle.cjs changedchanged object\nos function\n');
  t.regex(r.stderr, /^cache rejected exports \{"word":"changed"\}\n$/);
  t.notDeepEqual(await readFile(cache), old);
  t.regex((await run()).stderr, /^cache used /);
});

test('code cache: an unwritable cache directory or none at all only means no cache', async (t) => {
  const { dir, run } = await setup(t);
  await writeFile(join(dir, 'a-file'), 'x');
  const underFile = join(dir, 'a-file', 'cache');
  const r = await run(underFile);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'cli.bundle.cjs abab object\nos function\n');
  t.regex(r.stderr, /^cache missing /);
  const off = await run('-');
  t.is(off.code, 0, off.stderr);
  t.regex(off.stderr, /^cache off /);
  t.deepEqual(readdirSync(dir).sort(), ['a-file', 'cli.bundle.cjs', 'driver.mts']);
});

test('code cache: the cache file is named by bundle key, Node version, architecture and command', (t) => {
  const f = cacheFileOf({ file: '/x/b.cjs', key: 'abc123', cacheDir: '/c', name: 'build' });
  t.is(f, `/c/abc123-${process.version}-${process.arch}-build.v8`);
  t.not(cacheFileOf({ file: '/x/b.cjs', key: 'abc124', cacheDir: '/c', name: 'build' }), f, 'another bundle never reads this one');
  t.is(cacheFileOf({ file: '/x/b.cjs', key: 'abc123', cacheDir: undefined, name: 'build' }), undefined);
  t.is(cacheFileOf({ file: '/x/b.cjs', key: '../x', cacheDir: '/c', name: 'build' }), undefined);
});

test('code cache: the cache name is the command word after the global options', (t) => {
  const commands = ['build', 'run', 'images'];
  t.is(cacheNameFor(['--root', '/s', 'build', '-t', 'x', '.'], commands), 'build');
  t.is(cacheNameFor(['--root=/s', '-D', 'run', '--rm', 'busybox'], commands), 'run');
  t.is(cacheNameFor(['--version'], commands), 'version');
  t.is(cacheNameFor(['--root', 'images', 'ps'], commands), 'other', 'the value of --root is not the command');
  t.is(cacheNameFor(['.'], commands), 'other');
  t.is(cacheNameFor(['nosuch'], commands), 'other');
  t.is(cacheNameFor([], commands), 'other');
});

test('code cache: a start that fails writes no cache (its functions are those of the error path); the next successful one does', async (t) => {
  const { file, cacheDir, run } = await setup(t);
  await writeFile(file, `${bundleSource('ab')}process.exitCode = 3;\n`);
  const failed = await run();
  t.is(failed.code, 3, failed.stderr);
  t.false(existsSync(cacheOf(file, cacheDir)), 'no cache');
  await writeFile(file, bundleSource('ab'));
  t.is((await run()).code, 0);
  t.regex((await run()).stderr, /^cache used/);
});

test('code cache: run has a cache per kind of run (foreground, detached, with a terminal): each holds what its path compiled', (t) => {
  t.is(cacheVariantFor(['run', '--rm', 'busybox', 'true'], 'run'), '');
  t.is(cacheVariantFor(['--root', '/s', 'run', '-d', '--name', 'x', 'busybox'], 'run'), '-d');
  t.is(cacheVariantFor(['run', '--detach', 'busybox'], 'run'), '-d');
  t.is(cacheVariantFor(['run', '-it', 'busybox', 'sh'], 'run'), '-it');
  t.is(cacheVariantFor(['run', '-dit', '-p', '80:80', 'busybox'], 'run'), '-d-it');
  t.is(cacheVariantFor(['run', '--tty', '--rm', 'busybox'], 'run'), '-it');
  t.is(cacheVariantFor(['run', '-e', 'A=-d', '-p', '8080:80', 'busybox'], 'run'), '', 'values are no flags');
  t.is(cacheVariantFor(['run', '--rm', 'busybox', '--', '-d'], 'run'), '');
  t.is(cacheVariantFor(['ps', '-a'], 'ps'), '', 'other commands have one cache');
  t.is(cacheVariantFor(['exec', '-it', 'c', 'sh'], 'exec'), '');
});

test('code cache: a cache whose payload was changed is rejected by its checksum, never run (V8 would run the changed code)', async (t) => {
  const { file, cacheDir, run } = await setup(t);
  // A string constant of the bundle is stored as is in the cache: changing it there changes what the cached code prints.
  await writeFile(file, bundleSource('marker-abcdef'));
  t.is((await run()).code, 0);
  const cache = cacheOf(file, cacheDir);
  const bytes = await readFile(cache);
  const at = bytes.indexOf('marker-abcdef');
  t.true(at > 0, 'the cache holds the string');
  bytes[at + 'marker-abcde'.length] = 'g'.charCodeAt(0);
  await writeFile(cache, bytes);
  const r = await run();
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'cli.bundle.cjs marker-abcdefmarker-abcdef object\nos function\n');
  t.regex(r.stderr, /^cache rejected exports \{"word":"marker-abcdef"\}\n$/);
  t.regex((await run()).stderr, /^cache used /, 'replaced by a good cache');
});

test('code cache: a cache directory that does not exist yet is created', async (t) => {
  const { file, dir, run } = await setup(t);
  const deep = join(dir, 'a', 'b');
  await mkdir(join(dir, 'a'));
  t.is((await run(deep)).code, 0);
  t.true(statSync(cacheOf(file, deep)).isFile());
});

test('code cache: by default next to the bundle, else (a directory the user cannot write) in the user cache directory', async (t) => {
  const { dir } = await setup(t);
  t.is(defaultCacheDir(dir, { HOME: '/home/u' }), join(dir, '.code-cache'));
  // A bundle directory that cannot be written (here: below a regular file; for a user, a root-owned install).
  await writeFile(join(dir, 'a-file'), 'x');
  const notWritable = join(dir, 'a-file', 'cli');
  t.is(defaultCacheDir(notWritable, { HOME: '/home/u' }), '/home/u/.cache/tsbuild/code-cache');
  t.is(defaultCacheDir(notWritable, { HOME: '/home/u', XDG_CACHE_HOME: '/xdg' }), '/xdg/tsbuild/code-cache');
  t.is(defaultCacheDir(notWritable, { XDG_CACHE_HOME: 'relative' }), undefined);
  t.is(defaultCacheDir(notWritable, {}), undefined);
});

test('code cache: a bundle whose first line names another key (a concurrent build replaced it) runs without a cache and writes none', async (t) => {
  const { file, cacheDir, run } = await setup(t);
  t.is((await run()).code, 0);
  const cache = cacheOf(file, cacheDir);
  const before = inode(cache);
  // Same length as the bundle of key k1: V8 alone would take k1's cache for it.
  await writeFile(file, bundleSource('ab', 'k2'));
  const r = await run();
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'cli.bundle.cjs abab object\nos function\n');
  t.regex(r.stderr, /^cache other-bundle /);
  t.is(inode(cache), before);
  t.deepEqual(readdirSync(cacheDir), [cache.slice(cacheDir.length + 1)]);
});

test('code cache: a start that did one-time work (ONE_TIME_WORK_EVENT) writes no cache; the next start does', async (t) => {
  const { file, cacheDir, run } = await setup(t);
  // The bundle says it did one-time work (as `run` does when it unpacks its image's layers).
  await writeFile(file, `${bundleSource('ab')}process.emit(${JSON.stringify(ONE_TIME_WORK_EVENT)});\n`);
  const first = await run();
  t.is(first.code, 0, first.stderr);
  t.regex(first.stderr, /^cache missing /);
  t.false(existsSync(cacheOf(file, cacheDir)), 'no cache after one-time work');
  await writeFile(file, `${bundleSource('ab')}// no one-time work this time\n`);
  const second = await run();
  t.regex(second.stderr, /^cache missing /);
  t.true(existsSync(cacheOf(file, cacheDir)));
  t.regex((await run()).stderr, /^cache used /);
});
