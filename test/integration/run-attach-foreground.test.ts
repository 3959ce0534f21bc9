import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { busyboxMissing } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { busyboxContainerStore } from '../helpers/containers.js';
import { REPO } from '../sandbox/sandbox-helpers.js';

const missing = await busyboxMissing();
const TSX = join(REPO, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
const MAIN = join(REPO, 'src', 'cli', 'main.ts');

/** `tsbuild --root ROOT ARGS...` as a child process with pipes: its output so far, a poll for a pattern, its exit code. */
function spawnCli(t: ExecutionContext, root: string, ...args: string[]): { out: { stdout: string; stderr: string }; waitFor: (re: RegExp) => Promise<void>; write: (text: string) => void; end: () => void; exited: Promise<number> } {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, '--root', root, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (c: Buffer) => { out.stdout += c.toString('utf8'); });
  child.stderr.on('data', (c: Buffer) => { out.stderr += c.toString('utf8'); });
  child.stdin.on('error', () => undefined);
  let ended = false;
  const exited = new Promise<number>((resolve) => child.once('close', (code) => {
    ended = true;
    resolve(code ?? 255);
  }));
  const waitFor = async (re: RegExp): Promise<void> => {
    const deadline = Date.now() + 60_000;
    while (!re.test(out.stdout)) {
      if (Date.now() > deadline || ended) throw new Error(`stdout never showed ${String(re)}; stdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { out, waitFor, write: (text) => child.stdin.write(text), end: () => child.stdin.end(), exited };
}

testIf(missing, 'attach: a container run in the foreground sends its live output and its exit code to an attached client', async (t) => {
  const { root, r } = await busyboxContainerStore(t);
  const fg = spawnCli(t, root, 'run', '--name', 'fg', 'busybox', 'sh', '-c', 'i=0; while [ ! -e /stop ]; do echo tick$i; i=$((i+1)); sleep 0.1; done; echo bye; echo oops >&2; exit 4');
  await fg.waitFor(/tick0/);
  const a = spawnCli(t, root, 'attach', '--no-stdin', 'fg');
  await a.waitFor(/tick\d+\n/);
  t.false(a.out.stdout.startsWith('tick0\n'), 'only live output, not the log from the start');
  t.is((await r('exec', 'fg', 'touch', '/stop')).code, 0);
  t.is(await a.exited, 4, a.out.stderr);
  t.regex(a.out.stdout, /bye\n$/);
  t.regex(a.out.stderr, /oops/);
  t.is(await fg.exited, 4, fg.out.stderr);
  t.regex(fg.out.stdout, /bye\n$/);
});

testIf(missing, 'attach: a client\'s input joins ours in a foreground run -i container, whose stdin ends when ours does', async (t) => {
  const { root } = await busyboxContainerStore(t);
  const fg = spawnCli(t, root, 'run', '-i', '--name', 'fgi', 'busybox', 'sh', '-c', 'echo ready; while read l; do echo got:$l; done; echo eof; exit 5');
  await fg.waitFor(/ready\n/);
  const a = spawnCli(t, root, 'attach', 'fgi');
  // The client is attached once a line it sends comes back (no fixed sleep).
  for (let i = 0; !a.out.stdout.includes('got:from-client'); i++) {
    if (i > 600) throw new Error(`the client's input never arrived: ${a.out.stdout}${a.out.stderr}`);
    a.write('from-client\n');
    await new Promise((r) => setTimeout(r, 100));
  }
  fg.write('from-run\n');
  await a.waitFor(/got:from-run\n/);
  await fg.waitFor(/got:from-client\n[^]*got:from-run\n/);
  fg.end();
  t.is(await fg.exited, 5, fg.out.stderr);
  t.is(await a.exited, 5, a.out.stderr);
  t.regex(a.out.stdout, /eof\n$/);
});

testIf(missing, 'run --rm: a container that ends about when its attach server would start (FOREGROUND_ATTACH_DELAY_MS) warns of nothing and leaves nothing', async (t) => {
  const { r } = await busyboxContainerStore(t);
  // Lifetimes around the delay: whichever run the server's start meets, it is before the container's removal or never.
  for (let ms = 20; ms <= 80; ms += 2) {
    const res = await r('run', '--rm', 'busybox', 'sleep', (ms / 1000).toFixed(3));
    t.is(res.code, 0, res.stderr);
    t.is(res.stderr, '', `${ms} ms`);
  }
  t.is((await r('ps', '-aq')).stdout, '');
});
