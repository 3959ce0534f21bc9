import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { distMissing, runRecordingBuiltins, testBundle } from '../helpers/bundle.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

// `run --rm IMAGE true` of an unpacked image is mostly start-up: Node built-ins it loads but never
// uses are part of its cost. This runs the CLI's esbuild bundle (what users run), built here from
// the current sources into dist/cli/.
const rootWhy = process.getuid?.() === 0 ? undefined : 'containers from images are run as root here';
const missing = rootWhy ?? distMissing ?? (await busyboxMissing());
const bundle = testBundle('bundle-run-test');
test.after.always(() => bundle.remove());

testIf(missing, 'bundle: run --rm of an unpacked image does not load zlib (layer compression: only when a layer must be unpacked), nor, once the image is prepared, worker_threads, crypto or fs/promises', async (t) => {
  const entry = await bundle.get();
  const dir = await tempDir(t, 'tsbuild-run-builtins-');
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const env = { TSBUILD_CODE_CACHE_DIR: join(dir, 'code-cache'), TSBUILD_RUN_DIR: join(dir, 'run') };
  // --network none: the result does not depend on slirp4netns being installed.
  const { builtins, ...r } = await runRecordingBuiltins(entry, dir, ['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'true'], env);
  t.is(r.code, 0, r.stderr);
  t.true(builtins.includes('child_process'), 'the list is the real one (the launcher is spawned)');
  t.false(builtins.includes('zlib'), 'zlib');
  // It unpacked the image's layers: one-time work, so it wrote no code cache for `run` (cli/one-time-work.ts).
  const runCaches = (): string[] => (existsSync(env.TSBUILD_CODE_CACHE_DIR) ? readdirSync(env.TSBUILD_CODE_CACHE_DIR) : []).filter((f) => f.endsWith('-run.v8'));
  t.deepEqual(runCaches(), []);
  // Again, now that the first run has prepared the image's snapshot (it hashed a stream in a worker
  // thread): the layer writer imports node:worker_threads, which the bundle requires only on its
  // first use (scripts/bundle.mjs).
  const again = await runRecordingBuiltins(entry, dir, ['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'true'], env);
  t.is(again.code, 0, again.stderr);
  t.true(again.builtins.includes('net'), 'the list is the real one (the launcher\'s pipes)');
  t.is(runCaches().length, 1, 'the second run wrote the code cache');
  // Its ids and temporary names come from /dev/urandom (sys/random.ts): node:crypto (~3 ms to load) is not needed.
  // A command that ends at once has no attach server (it listens after FOREGROUND_ATTACH_DELAY_MS): no node:cluster,
  // which a listen loads, and with it child_process.
  // Its few thread-pool file operations go through node:fs's callbacks (sys/fs-pool.ts): no node:fs/promises (~1.2 ms
  // to load, with readline, the fs watchers and Dir), which the bundle requires only on its first use.
  t.deepEqual(again.builtins.filter((m) => m === 'zlib' || m === 'worker_threads' || m === 'crypto' || m === 'cluster' || m === 'fs/promises'), []);
  // A container that prints nothing makes no process.stdout (its creation is ~0.3 ms; a terminal's loads node:tty).
  t.false(again.stdoutMade, 'process.stdout was made');
  // The record is the real one: a container that prints makes it.
  const prints = await runRecordingBuiltins(entry, dir, ['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'echo', 'hi'], env);
  t.is(prints.stdout, 'hi\n');
  t.true(prints.stdoutMade);
});
