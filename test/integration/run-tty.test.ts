import type { ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxMissing } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { busyboxContainerStore, processesMentioning } from '../helpers/containers.js';
import { REPO } from '../sandbox/sandbox-helpers.js';
import { buildMissing } from './build-helpers.js';

const missing = (await busyboxMissing()) ?? (await buildMissing()) ?? (existsSync('/usr/bin/script') ? undefined : 'script (util-linux) is not installed');
const TSX = join(REPO, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
const MAIN = join(REPO, 'src', 'cli', 'main.ts');

const setup = busyboxContainerStore;

/** A `tsbuild` run on a real pseudo-terminal (util-linux script), driven through script's stdin. */
interface Terminal {
  /** Everything the terminal showed so far. */
  output(): string;
  /** Resolves once the output matches `re` (rejects after 60 s with the output so far). */
  waitFor(re: RegExp): Promise<void>;
  /** Types `text` (as keys: end lines with \r). */
  type(text: string): void;
  /** The terminal's own device (/dev/pts/N), for resizing it from outside. */
  device(): Promise<string>;
  /** script's exit code (the command's, with -e). */
  readonly exited: Promise<number>;
}

/**
 * Runs `tsbuild --root ROOT ARGS` under script on a 77x19 terminal; after tsbuild ends the shell
 * writes the terminal's `icanon`/`echo` flags to `after.txt` (raw mode restored?) and exits with tsbuild's code.
 */
function onTerminal(t: ExecutionContext, dir: string, root: string, args: string): Terminal {
  const ttyFile = join(dir, 'outer-tty.txt');
  const cmd = `stty cols 77 rows 19; tty > ${ttyFile}; ${process.execPath} --import ${TSX} ${MAIN} --root ${root} ${args}; code=$?; stty -a | grep -o -- '-\\?icanon\\|-\\?echo ' > ${join(dir, 'after.txt')}; exit $code`;
  const child = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: dir, env: { ...process.env, TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  const waiters: (() => void)[] = [];
  const onData = (c: Buffer): void => {
    out += c.toString('utf8');
    for (const w of waiters.splice(0)) w();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number>((resolve) => child.once('exit', (code, sig) => resolve(code ?? 128 + (sig === null ? 0 : 9))));
  return {
    output: () => out,
    async waitFor(re) {
      const deadline = Date.now() + 60_000;
      while (!re.test(out)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the terminal never showed ${String(re)}; it showed:\n${out}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    },
    type(text) {
      child.stdin.write(text);
    },
    async device() {
      return (await readFile(ttyFile, 'utf8')).trim();
    },
    exited,
  };
}

testIf(missing, 'run -it: an interactive shell on a pty of the container, sized as ours, resized with ours, its exit code ours, the terminal restored after', async (t) => {
  const { dir, root, r } = await setup(t);
  const term = onTerminal(t, dir, root, 'run -it --name shell busybox sh');
  await term.waitFor(/\/ # /);
  // busybox's line editor asks for the cursor position (ESC[6n) and waits for the answer a terminal would give.
  if (term.output().includes('\x1b[6n')) term.type('\x1b[6;5R');
  term.type('tty; stty size; echo "sum=$((40+2))"; echo to-stderr >&2\r');
  await term.waitFor(/sum=42\r\n[\s\S]*to-stderr\r\n/);
  t.regex(term.output(), /\/dev\/pts\/\d+\r\n19 77\r\n/, 'the container has its own pty with our size');
  // Our terminal is resized from outside: the kernel signals SIGWINCH and the launcher passes the size on.
  execFileSync('stty', ['-F', await term.device(), 'rows', '31', 'cols', '101']);
  term.type('stty size; exit 3\r');
  t.is(await term.exited, 3, term.output());
  t.regex(term.output(), /31 101\r\n/, 'the new size reached the container');
  const after = await readFile(join(dir, 'after.txt'), 'utf8');
  t.regex(after, /^icanon$/m, 'canonical mode is back');
  t.regex(after, /^echo $/m, 'echo is back');
  // The log holds what the pty showed, all of it as stdout (as docker's json-file log of a tty).
  const logs = await r('logs', 'shell');
  t.is(logs.code, 0, logs.stderr);
  t.regex(logs.stdout, /sum=42\r\n/);
  t.regex(logs.stdout, /to-stderr\r\n/);
  t.is(logs.stderr, '');
  const state = await r('inspect', '--format', '{{.State.Status}} {{.State.ExitCode}} {{.Config.Tty}}', 'shell');
  t.is(state.stdout.trim(), 'exited 3 true');
});

testIf(missing, 'run -t: without -i the command still runs on a pty of our size and keeps waiting for input; --rm removes the container', async (t) => {
  const { dir, root, r } = await setup(t);
  // `cat` would end at once (0) on an EOF (^D) of the pty; stdin stays open and silent, so timeout kills it (143).
  const term = onTerminal(t, dir, root, `run -t --rm busybox sh -c 'tty; stty size; timeout 1 cat; echo "cat=$?"; exit 7'`);
  t.is(await term.exited, 7, term.output());
  // Our terminal stays cooked (no -i): the pty's \r\n becomes \r\r\n on it, as with docker.
  t.regex(term.output(), /\/dev\/pts\/\d+\r+\n19 77\r+\n/);
  t.regex(term.output(), /cat=143\r+\n/, 'cat was killed: its stdin stayed open and silent');
  t.is((await r('ps', '-aq')).stdout, '', '--rm removed the container');
});

testIf(missing, 'run -dt: the detached container keeps its shell on a pty owned by the monitor, its output in the log as stdout', async (t) => {
  const { r } = await setup(t);
  const started = await r('run', '-dt', '--name', 'bg', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exec sh');
  t.is(started.code, 0, started.stderr);
  let logs = await r('logs', 'bg');
  for (let i = 0; i < 200 && !/err\r\n/.test(logs.stdout); i++) {
    await new Promise((res) => setTimeout(res, 50));
    logs = await r('logs', 'bg');
  }
  t.true(logs.stdout.startsWith('out\r\nerr\r\n'), logs.stdout);
  t.is(logs.stderr, '');
  // The interactive shell did not read EOF: it still runs, on the pty.
  await new Promise((res) => setTimeout(res, 300));
  const fd0 = await r('exec', 'bg', 'readlink', '/proc/1/fd/0');
  t.is(fd0.code, 0, fd0.stderr);
  t.regex(fd0.stdout, /^\/dev\/pts\/\d+\n$/);
  t.is((await r('inspect', '--format', '{{.State.Status}}', 'bg')).stdout.trim(), 'running');
  // The monitor of `start` runs it on a pty again.
  t.is((await r('stop', '-t', '0', 'bg')).code, 0);
  t.is((await r('start', 'bg')).code, 0);
  const again = await r('exec', 'bg', 'readlink', '/proc/1/fd/0');
  t.regex(again.stdout, /^\/dev\/pts\/\d+\n$/, again.stderr);
  t.is((await r('rm', '-f', 'bg')).code, 0);
});

testIf(missing, 'run -it: a clear error and no container when our stdin is not a terminal, while -t alone runs', async (t) => {
  const { r } = await setup(t);
  const res = await r('run', '-it', 'busybox', 'sh');
  t.is(res.code, 1);
  t.regex(res.stderr, /the input device is not a TTY/);
  t.is((await r('ps', '-aq')).stdout, '');
  // -t alone needs no terminal on our side: the pty's output (stderr too) arrives as stdout.
  const piped = await r('run', '-t', '--rm', 'busybox', 'sh', '-c', 'tty; echo to-stderr >&2; exit 5');
  t.is(piped.code, 5, piped.stderr);
  t.regex(piped.stdout, /^\/dev\/pts\/\d+\r\nto-stderr\r\n$/);
  t.is(piped.stderr, '');
});

testIf(missing, 'run -it: our terminal leaves raw mode and the container is gone when tsbuild is stopped by SIGTERM', async (t) => {
  const { dir, root, r } = await setup(t);
  const term = onTerminal(t, dir, root, 'run -it --rm --name killed busybox sh');
  await term.waitFor(/\/ # /);
  if (term.output().includes('\x1b[6n')) term.type('\x1b[6;5R');
  term.type('echo "ready=$((6*7))"\r');
  await term.waitFor(/ready=42/);
  const tsbuild = processesMentioning(root).filter((pid) => {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv[0] === process.execPath && argv.includes(MAIN);
  });
  t.is(tsbuild.length, 1, 'one tsbuild process');
  process.kill(tsbuild[0] as number, 'SIGTERM');
  t.not(await term.exited, 0, term.output());
  const after = await readFile(join(dir, 'after.txt'), 'utf8');
  t.regex(after, /^icanon$/m, 'canonical mode is back');
  t.regex(after, /^echo $/m, 'echo is back');
  t.is((await r('ps', '-aq')).stdout, '', '--rm removed the container');
});
