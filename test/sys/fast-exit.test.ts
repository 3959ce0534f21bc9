import test from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';
import { buildSync } from 'esbuild';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnNative } from '../../src/sys/index.js';
import { ensureLauncher } from '../sandbox/sandbox-helpers.js';
import { tempDir } from '../helpers/tmp.js';

// src/sys/fast-exit.ts: a command ends with _exit (the spawn addon) instead of Node's teardown, after the 'exit'
// listeners, with the O_NONBLOCK flags of fds 0-2 given back. Each case runs a small driver in a fresh Node with
// --trace-exit: Node's own exit prints "Exited the environment", an _exit prints nothing. Its stdout is a FIFO
// this process holds open too (the same file description, as a shell's pipe): its flags after the child's exit
// are what the next user of the pipe gets.
const FAST_EXIT = fileURLToPath(new URL('../../src/sys/fast-exit.ts', import.meta.url));
const SPAWN_NATIVE = fileURLToPath(new URL('../../src/sys/spawn-native.ts', import.meta.url));

const DRIVER = `import { exitProcess, watchStdioFlags } from ${JSON.stringify(FAST_EXIT)};
import { spawnNative } from ${JSON.stringify(SPAWN_NATIVE)};
const [addon, mode] = process.argv.slice(2);
const stdio = watchStdioFlags(process);
// A stream made before the addon is loaded: its fd's flag at the start is unknown.
if (mode === 'early-stream') process.stdout.write('early\\n');
// Loads the addon (a child with a pipe: its end keeps this process alive until the child is reaped).
if (mode !== 'no-addon') spawnNative(addon, '/bin/true', [], ['ignore', 'pipe-out', 'ignore']);
// A pipe's stream, made first: Node sets O_NONBLOCK on the FIFO's file description. (Node touches
// process.stderr when a socket closes: the child's pipe, later.)
process.stdout.write('out\\n');
// A listener sees the code, may change it, and may make a stream (stderr, a pipe too).
process.on('exit', (code) => {
  process.stderr.write('exit listener ' + code + '\\n');
  process.exitCode = code + 1;
});
process.exitCode = 2;
process.once('beforeExit', () => exitProcess(stdio, mode !== 'slow'));
`;

/** The driver as one CommonJS file (esbuild, from the current sources): a plain Node runs it, no loader of ours touches its stdio. */
function bundleDriver(dir: string): string {
  const out = join(dir, 'driver.cjs');
  buildSync({
    stdin: { contents: DRIVER, loader: 'ts', resolveDir: dir, sourcefile: 'driver.ts' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    outfile: out,
    logLevel: 'silent',
    banner: { js: 'const __driverUrl = require("node:url").pathToFileURL(__filename).href;' },
    define: { 'import.meta.url': '__driverUrl' },
  });
  return out;
}

interface Ended { readonly code: number | null; readonly stderr: string; readonly out: string; readonly nonblocking: boolean }

/** Runs the driver in `mode` with its stdout on a FIFO (opened non-blocking first when `nonblockingFifo`; its stderr too when `stderrToFifo`: `2>&1`). */
async function runDriver(t: Parameters<typeof tempDir>[0], mode: string, { nonblockingFifo = false, stderrToFifo = false } = {}): Promise<Ended> {
  const dir = await tempDir(t, 'tsbuild-fast-exit-');
  const driver = bundleDriver(dir);
  const fifo = join(dir, 'out');
  execFileSync('mkfifo', [fifo]);
  const fd = openSync(fifo, constants.O_RDWR | (nonblockingFifo ? constants.O_NONBLOCK : 0));
  t.teardown(() => closeSync(fd));
  const addon = join(ensureLauncher(), '..', 'tsbuild-spawn.node');
  // Started through the spawn addon: Node's spawn clears O_NONBLOCK on a child's fds 0-2 (libuv), which would
  // change the FIFO's flag before the driver runs.
  const child = spawnNative(addon, process.execPath, ['--trace-exit', driver, addon, mode], ['ignore', fd, stderrToFifo ? fd : 'pipe-out']);
  if (child === undefined) throw new Error(`the spawn addon ${addon} could not be loaded (npm run build builds it)`);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  const code = await new Promise<number | null>((resolve) => child.once('close', (c: number | null) => resolve(c)));
  const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
  if (flags === null) throw new Error('no flags in fdinfo');
  // What the child wrote, read without blocking on an empty FIFO (a second, non-blocking description of it).
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const buf = Buffer.alloc(256);
  let got = 0;
  try {
    got = readSync(reader, buf, 0, buf.length, null);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
  } finally {
    closeSync(reader);
  }
  const out = buf.toString('utf8', 0, got);
  return { code, stderr, out, nonblocking: (parseInt(flags[1]!, 8) & constants.O_NONBLOCK) !== 0 };
}

const NODE_EXIT = /Exited the environment with code/;

test('exitProcess: _exit after the exit listeners (once, with the code they set), the pipe blocking again', async (t) => {
  const r = await runDriver(t, 'fast');
  t.is(r.code, 3, r.stderr);
  t.is(r.out, 'out\n');
  t.is(r.stderr.match(/exit listener/g)?.length, 1, r.stderr);
  t.regex(r.stderr, /exit listener 2\n/);
  t.notRegex(r.stderr, NODE_EXIT, 'Node\'s exit did not run');
  t.false(r.nonblocking, 'the FIFO\'s file description is blocking, as before the child');
});

test('exitProcess: a file description that was non-blocking at the start stays so', async (t) => {
  const r = await runDriver(t, 'fast', { nonblockingFifo: true });
  t.is(r.code, 3, r.stderr);
  t.notRegex(r.stderr, NODE_EXIT);
  t.true(r.nonblocking);
});

test('exitProcess: fds 1 and 2 on one file description (2>&1), stdout made first: blocking again', async (t) => {
  // The flags of all three fds are read before Node's first stream: read at stderr's own first use, fd 2's
  // would be the non-blocking flag stdout's stream had set on the shared description, and given back last.
  const r = await runDriver(t, 'fast', { stderrToFifo: true });
  t.is(r.code, 3, r.out);
  t.is(r.out, 'out\nexit listener 2\n');
  t.false(r.nonblocking);
});

test('exitProcess: Node\'s exit when not fast, when a stream was made before the addon was loaded, or without the addon', async (t) => {
  for (const mode of ['slow', 'early-stream', 'no-addon']) {
    const r = await runDriver(t, mode);
    t.is(r.code, 3, `${mode}: ${r.stderr}`);
    t.regex(r.stderr, NODE_EXIT, mode);
    t.is(r.stderr.match(/exit listener/g)?.length, 1, `${mode}: the listeners ran once`);
    t.false(r.nonblocking, `${mode}: Node restored the flag`);
    t.is(r.out, mode === 'early-stream' ? 'early\nout\n' : 'out\n', mode);
  }
});
