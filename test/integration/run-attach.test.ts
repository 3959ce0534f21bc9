import type { ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxMissing } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { busyboxContainerStore } from '../helpers/containers.js';
import { cliAsUser, rootlessBusyboxStore, rootlessMissing, ROOTLESS_USER } from '../helpers/rootless.js';
import { REPO } from '../sandbox/sandbox-helpers.js';
import { buildMissing } from './build-helpers.js';

const missing = (await busyboxMissing()) ?? (await buildMissing());
const scriptMissing = missing ?? (existsSync('/usr/bin/script') ? undefined : 'script (util-linux) is not installed');
const TSX = join(REPO, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
const MAIN = join(REPO, 'src', 'cli', 'main.ts');

const setup = busyboxContainerStore;

/** A CLI child process with piped stdio (as a user's shell pipeline would run it). */
interface Proc {
  stdout(): string;
  stderr(): string;
  /** Resolves once `stream` matches `re` (rejects after `ms`, 60 s by default, or when the process ended without it). */
  waitFor(re: RegExp, stream?: 'stdout' | 'stderr', ms?: number): Promise<void>;
  write(text: string): void;
  kill(sig: NodeJS.Signals): void;
  readonly exited: Promise<number>;
}

function track(t: ExecutionContext, child: ChildProcessWithoutNullStreams): Proc {
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const out = { stdout: '', stderr: '' };
  const waiters: (() => void)[] = [];
  const on = (s: 'stdout' | 'stderr') => (c: Buffer): void => {
    out[s] += c.toString('utf8');
    for (const w of waiters.splice(0)) w();
  };
  child.stdout.on('data', on('stdout'));
  child.stderr.on('data', on('stderr'));
  child.stdin.on('error', () => undefined);
  let ended = false;
  const exited = new Promise<number>((resolve) => child.once('close', (code, sig) => {
    ended = true;
    for (const w of waiters.splice(0)) w();
    resolve(code ?? 128 + (sig === null ? 0 : 9));
  }));
  return {
    stdout: () => out.stdout,
    stderr: () => out.stderr,
    async waitFor(re, stream = 'stdout', ms = 60_000) {
      const deadline = Date.now() + ms;
      while (!re.test(out[stream])) {
        if (Date.now() > deadline || ended) throw new Error(`${stream} never showed ${String(re)}; stdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    },
    write(text) {
      child.stdin.write(text);
    },
    kill(sig) {
      child.kill(sig);
    },
    exited,
  };
}

/** `tsbuild --root ROOT ARGS...` as a child process with pipes. */
function spawnCli(t: ExecutionContext, root: string, ...args: string[]): Proc {
  return track(t, spawn(process.execPath, ['--import', TSX, MAIN, '--root', root, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }));
}

/** Types `echo MARK` through `writer` until `reader` shows it: both are attached (no fixed sleep). */
async function untilBothAttached(writer: Proc, reader: Proc): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (let i = 0; !reader.stdout().includes('mark-both'); i++) {
    if (Date.now() > deadline) throw new Error(`the second client never got output: ${reader.stdout()}${reader.stderr()}`);
    writer.write('echo mark-both\n');
    await reader.waitFor(/mark-both/, 'stdout', 1000).catch(() => undefined);
  }
}

testIf(missing, 'run -di + attach: our input reaches the shell, stdout and stderr stay apart, attach ends with its exit code', async (t) => {
  const { root, r } = await setup(t);
  const started = await r('run', '-di', '--name', 'sh1', 'busybox', 'sh');
  t.is(started.code, 0, started.stderr);
  t.regex(started.stdout, /^[0-9a-f]{64}\n$/);
  // stdin stays open: the shell waits for input instead of reading EOF and exiting.
  t.is((await r('inspect', '--format', '{{.State.Status}}', 'sh1')).stdout.trim(), 'running');
  const a = spawnCli(t, root, 'attach', 'sh1');
  a.write('echo hi; echo oops >&2\n');
  await a.waitFor(/^hi\n$/);
  await a.waitFor(/^oops\n$/, 'stderr');
  a.write('exit 3\n');
  t.is(await a.exited, 3, a.stderr());
  t.is(a.stdout(), 'hi\n');
  t.is((await r('inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'sh1')).stdout.trim(), 'exited 3');
  // The log has the output too, as with any detached container.
  const logs = await r('logs', 'sh1');
  t.is(logs.stdout, 'hi\n');
  t.is(logs.stderr, 'oops\n');
});

testIf(missing, 'attach: two clients both get the live output and the exit code; --no-stdin only watches', async (t) => {
  const { root, r } = await setup(t);
  t.is((await r('run', '-di', '--name', 'shared', 'busybox', 'sh')).code, 0);
  const a = spawnCli(t, root, 'attach', 'shared');
  const b = spawnCli(t, root, 'attach', '--no-stdin', 'shared');
  await untilBothAttached(a, b);
  a.write('echo "sum=$((40+2))"\n');
  await a.waitFor(/sum=42\n/);
  await b.waitFor(/sum=42\n/);
  b.write('echo from-b\n'); // --no-stdin: not sent
  a.write('echo from-a; exit 6\n');
  t.is(await a.exited, 6, a.stderr());
  t.is(await b.exited, 6, b.stderr());
  t.false(b.stdout().includes('from-b'));
  t.regex(b.stdout(), /from-a\n$/);
});

testIf(missing, 'attach: a stopped or created container is a clear error, bad detach keys too', async (t) => {
  const { r } = await setup(t);
  t.is((await r('run', '--name', 'done', 'busybox', 'true')).code, 0);
  const stopped = await r('attach', 'done');
  t.is(stopped.code, 1);
  t.regex(stopped.stderr, /You cannot attach to a stopped container, start it first/);
  t.notRegex(stopped.stderr, /\n\s+at /);
  t.is((await r('run', '-di', '--name', 'up', 'busybox', 'sh')).code, 0);
  const keys = await r('attach', '--detach-keys', 'ctrl-1', 'up');
  t.is(keys.code, 1);
  t.regex(keys.stderr, /invalid detach keys "ctrl-1"/);
  const none = await r('attach', 'nope');
  t.not(none.code, 0);
  t.regex(none.stderr, /nope/);
});

testIf(missing, 'attach --sig-proxy: our SIGINT reaches the container without a tty; --sig-proxy=false leaves it to us', async (t) => {
  const { root, r } = await setup(t);
  const started = await r('run', '-d', '--name', 'trap', 'busybox', 'sh', '-c', 'trap "echo got-int; exit 3" INT; while true; do echo tick; sleep 0.1; done');
  t.is(started.code, 0, started.stderr);
  const quiet = spawnCli(t, root, 'attach', '--sig-proxy=false', 'trap');
  await quiet.waitFor(/tick\n/);
  quiet.kill('SIGINT');
  t.is(await quiet.exited, 0, quiet.stderr());
  t.is((await r('inspect', '--format', '{{.State.Status}}', 'trap')).stdout.trim(), 'running');
  const a = spawnCli(t, root, 'attach', 'trap');
  await a.waitFor(/tick\n/);
  a.kill('SIGINT');
  t.is(await a.exited, 3, a.stderr());
  t.regex(a.stdout(), /got-int\n$/);
});

testIf(missing, 'start -ai: starts the container attached to our stdin and ends with its exit code; start -i alone too', async (t) => {
  const { root, r } = await setup(t);
  t.is((await r('run', '-di', '--name', 'again', 'busybox', 'sh')).code, 0);
  t.is((await r('stop', '-t', '0', 'again')).code, 0);
  const s = spawnCli(t, root, 'start', '-ai', 'again');
  s.write('echo "back=$((2*3))"\n');
  await s.waitFor(/back=6\n/);
  s.write('exit 5\n');
  t.is(await s.exited, 5, s.stderr());
  t.is((await r('inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'again')).stdout.trim(), 'exited 5');
  // Output written before any input is not missed: the monitor waits for us to attach first.
  const hello = await r('run', '-d', '-i', '--name', 'hello', 'busybox', 'sh', '-c', 'echo started; read line; echo "got $line"; exit 2');
  t.is(hello.code, 0, hello.stderr);
  // Input typed before attach connects waits in its stdin pipe.
  const first = spawnCli(t, root, 'attach', 'hello');
  first.write('one\n');
  t.is(await first.exited, 2, first.stderr());
  const second = spawnCli(t, root, 'start', '-i', 'hello');
  await second.waitFor(/^started\n/);
  second.write('two\n');
  t.is(await second.exited, 2, second.stderr());
  t.is(second.stdout(), 'started\ngot two\n');
});

testIf(scriptMissing, 'run -dit + attach on a terminal: raw mode, our size and resizes, detach keys leave it running, a second attach ends with its exit code', async (t) => {
  const { dir, root, r } = await setup(t);
  t.is((await r('run', '-dit', '--name', 'term', 'busybox', 'sh')).code, 0);
  const onTerm = (args: string): Proc => {
    const cmd = `stty cols 77 rows 19; tty > ${join(dir, 'outer-tty.txt')}; ${process.execPath} --import ${TSX} ${MAIN} --root ${root} ${args}; code=$?; stty -a | grep -o -- '-\\?icanon' > ${join(dir, 'after.txt')}; exit $code`;
    return track(t, spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: dir, env: { ...process.env, TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] }));
  };
  const first = onTerm('attach term');
  // Live output only: the prompt was printed before we attached; a new line shows a fresh one.
  const deadline = Date.now() + 120_000;
  while (!/stty size[\s\S]*19 77\r\n/.test(first.stdout())) {
    if (Date.now() > deadline) throw new Error(first.stdout());
    first.write('stty size\r');
    await first.waitFor(/19 77\r\n/, 'stdout', 1000).catch(() => undefined);
  }
  first.write('\x10\x11'); // ctrl-p ctrl-q
  t.is(await first.exited, 0, first.stdout());
  t.regex(await readFile(join(dir, 'after.txt'), 'utf8'), /^icanon$/m, 'our terminal is cooked again');
  t.is((await r('inspect', '--format', '{{.State.Status}}', 'term')).stdout.trim(), 'running');
  const second = onTerm('attach --detach-keys ctrl-x term');
  const deadline2 = Date.now() + 120_000;
  // ctrl-p alone is an ordinary key now.
  while (!/echo "x=\$\(\(6\*7\)\)"[\s\S]*x=42/.test(second.stdout())) {
    if (Date.now() > deadline2) throw new Error(second.stdout());
    second.write('echo "x=$((6*7))"\r');
    await second.waitFor(/x=42/, 'stdout', 1000).catch(() => undefined);
  }
  // Our terminal is resized from outside: node sees SIGWINCH and attach passes the size on.
  execFileSync('stty', ['-F', (await readFile(join(dir, 'outer-tty.txt'), 'utf8')).trim(), 'rows', '31', 'cols', '101']);
  while (!/31 101\r\n/.test(second.stdout())) {
    if (Date.now() > deadline2) throw new Error(second.stdout());
    second.write('stty size\r');
    await second.waitFor(/31 101\r\n/, 'stdout', 1000).catch(() => undefined);
  }
  second.write('exit 4\r');
  t.is(await second.exited, 4, second.stdout());
  t.is((await r('inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'term')).stdout.trim(), 'exited 4');
});

testIf(rootlessMissing() ?? missing, 'run -di + attach rootless: the monitor, its socket and the client run as the user', async (t) => {
  const { home, root } = await rootlessBusyboxStore(t, 'tsbuild-attach-rootless-');
  const started = await cliAsUser(home, root, ['run', '-di', '--name', 'rl', 'busybox', 'sh']);
  t.is(started.code, 0, started.stderr);
  const a = track(t, spawn('runuser', ['-u', ROOTLESS_USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, `TMPDIR=${home}/tmp`, `XDG_RUNTIME_DIR=${home}/run`,
    process.execPath, '--import', TSX, MAIN, '--root', root, 'attach', 'rl'], { cwd: home, stdio: ['pipe', 'pipe', 'pipe'] }));
  a.write('id -u; exit 9\n');
  t.is(await a.exited, 9, a.stderr());
  t.is(a.stdout(), '0\n');
  t.is((await cliAsUser(home, root, ['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'rl'])).stdout.trim(), 'exited 9');
});
