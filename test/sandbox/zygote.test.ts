import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { testSerialIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { createRunSpec } from '../../src/sandbox/spec.js';
import type { Sandbox } from '../../src/sandbox/sandbox.js';
import { isTsbuildError } from '../../src/core/index.js';
import { runHandshake } from '../../src/sandbox/launcher-handshake.js';
import { encodeLauncherSpec } from '../../src/sandbox/launcher-spec.js';
import { assertNoLeftoverMounts, ensureLauncher, notRoot, REPO, rootSandbox, runCaptured, spawningSandbox } from './sandbox-helpers.js';

const missing = notRoot() ?? busyboxMissing();

/** Parent pid and command line of `pid`, or undefined once it is gone (a zombie counts as gone). */
function processInfo(pid: number): { ppid: number; cmdline: string; start: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return { ppid: Number(fields[1]), start: fields[19] ?? '', cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim() };
  } catch {
    return undefined;
  }
}

/** Polls until every process of `procs` is gone or is no longer the same process (start time); false after 30 s. */
async function allGone(procs: readonly { pid: number; start: string }[]): Promise<boolean> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (procs.every((p) => processInfo(p.pid)?.start !== p.start)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

async function setup(t: Parameters<typeof tempDir>[0]): Promise<{ rootfs: string; sandbox: Sandbox; state: string }> {
  const dir = await tempDir(t, 'tsbuild-zyg-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const state = join(dir, 'state');
  const sandbox = rootSandbox(state);
  t.teardown(() => sandbox.close());
  return { rootfs, sandbox, state };
}

/** Live child processes of this process named like the launcher (the zygote). */
function zygoteChildren(): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (/^\d+$/.test(p) && processInfo(Number(p))?.ppid === process.pid && processInfo(Number(p))?.cmdline.endsWith('--zygote') === true) out.push(Number(p));
  }
  return out;
}

/** Runs `sleep` and resolves with the launcher's parent: the zygote, or this process when the launcher was spawned. */
async function launcherParent(sandbox: Sandbox, rootfs: string, stdin?: Readable): Promise<{ parent: number; cmdline: string }> {
  const ac = new AbortController();
  let found: { parent: number; cmdline: string } | undefined;
  const out = new PassThrough().resume();
  const run = sandbox.run(createRunSpec({ root: { path: rootfs }, args: ['sleep', '1000'] }), { stdout: out, stderr: out, ...(stdin === undefined ? {} : { stdin }) }, ac.signal, {
    onCreated: async (pid) => {
      const launcher = processInfo(pid)?.ppid ?? 0;
      const parent = processInfo(launcher)?.ppid ?? 0;
      found = { parent, cmdline: processInfo(parent)?.cmdline ?? '' };
      ac.abort(new Error('seen'));
    },
  });
  const err = await run.then(() => undefined, (e: unknown) => e);
  if (!isTsbuildError(err, 'SANDBOX_ABORTED')) throw new Error(`expected SANDBOX_ABORTED, got ${String(err)}`);
  if (found === undefined) throw new Error('the sandbox never started');
  return found;
}

testSerialIf(missing, 'zygote: a run with piped output gets its launcher from the zygote, one with an input stream spawns it', async (t) => {
  const { rootfs, sandbox } = await setup(t);
  const forked = await launcherParent(sandbox, rootfs);
  t.not(forked.parent, process.pid);
  t.regex(forked.cmdline, /tsbuild-launcher --zygote$/);
  t.is(processInfo(forked.parent)?.ppid, process.pid);
  const spawned = await launcherParent(sandbox, rootfs, Readable.from(['input\n']));
  t.is(spawned.parent, process.pid);
  // Without the option every launcher is spawned.
  t.is((await launcherParent(spawningSandbox(join(rootfs, '..', 'state2')), rootfs)).parent, process.pid);
});

testSerialIf(missing, 'zygote: close() ends the zygote before it resolves, and a later run starts a new one', async (t) => {
  const { rootfs, sandbox } = await setup(t);
  const first = await launcherParent(sandbox, rootfs);
  t.deepEqual(zygoteChildren(), [first.parent]);
  await sandbox.close();
  t.deepEqual(zygoteChildren(), []);
  const second = await launcherParent(sandbox, rootfs);
  t.not(second.parent, process.pid);
  t.not(second.parent, first.parent);
  await sandbox.close();
  await sandbox.close();
  t.deepEqual(zygoteChildren(), []);
});

testSerialIf(missing, 'zygote: concurrent runs each get their own output, exit code and fresh namespaces', async (t) => {
  const { rootfs, sandbox } = await setup(t);
  const runs = await Promise.all(Array.from({ length: 8 }, (_, i) => runCaptured(sandbox, createRunSpec({
    root: { path: rootfs },
    args: ['sh', '-c', `echo out${i}; echo err${i} >&2; readlink /proc/self/ns/mnt; echo $$; exit ${i}`],
  }))));
  const host = readlinkSync('/proc/self/ns/mnt');
  for (const [i, r] of runs.entries()) {
    const [out, ns, pid] = r.stdout.trim().split('\n');
    t.is(out, `out${i}`);
    t.is(r.stderr, `err${i}\n`);
    t.is(r.exitCode, i);
    t.is(pid, '1');
    t.regex(ns ?? '', /^mnt:\[\d+\]$/);
    t.not(ns, host);
  }
});

testSerialIf(missing, 'zygote: a SIGKILLed tsbuild takes its zygote, the launcher and the sandboxed command with it', async (t) => {
  t.timeout(120_000);
  const { rootfs, state } = await setup(t);
  const child = spawn(process.execPath, ['--import', join(REPO, 'node_modules/tsx/dist/loader.mjs'), join(REPO, 'test/sandbox/zygote-child.ts'), rootfs, state], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const sandboxed = await new Promise<number>((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (c: Buffer) => {
      text += c.toString('utf8');
      if (text.includes('\n')) resolve(Number(text.trim()));
    });
    child.once('exit', (code) => reject(new Error(`the child exited ${String(code)} before its sandbox started`)));
  });
  // The child was just created: wait until it runs the command.
  const deadline = Date.now() + 30_000;
  while (processInfo(sandboxed)?.cmdline !== 'sleep 1000' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const command = processInfo(sandboxed);
  const launcher = processInfo(command?.ppid ?? 0);
  const zygote = processInfo(launcher?.ppid ?? 0);
  t.is(command?.cmdline, 'sleep 1000');
  t.regex(zygote?.cmdline ?? '', /tsbuild-launcher --zygote$/);
  t.is(zygote?.ppid, child.pid);
  const procs = [
    { pid: sandboxed, start: command?.start ?? '' },
    { pid: command?.ppid ?? 0, start: launcher?.start ?? '' },
    { pid: launcher?.ppid ?? 0, start: zygote?.start ?? '' },
  ];
  child.kill('SIGKILL');
  t.true(await allGone(procs), 'a process of the killed tsbuild is left');
});

testSerialIf(missing, 'launcher handshake: a run released with its spec starts its command without waiting for this process', async (t) => {
  const { rootfs } = await setup(t);
  const spec = createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', 'echo started'] });
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => {
    text += c.toString('utf8');
  });
  let deadline: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    runHandshake({
      launcherPath: ensureLauncher(),
      input: encodeLauncherSpec(spec, { rootfs }),
      stdio: { stdout: out, stderr: out },
      releaseAtStart: true,
      // Never answers: only the release written with the spec lets the command start.
      onPid: () => new Promise<void>(() => undefined),
    }),
    new Promise<undefined>((resolve) => {
      deadline = setTimeout(() => resolve(undefined), 30_000);
    }),
  ]);
  clearTimeout(deadline);
  t.not(ended, undefined, 'the command waited for a release');
  t.deepEqual(ended?.lines.filter((l) => l.exitCode !== undefined), [{ exitCode: 0 }]);
  t.is(text, 'started\n');
});

testSerialIf(missing, 'zygote: after the zygote is gone, runs spawn their launchers', async (t) => {
  const { rootfs, sandbox } = await setup(t);
  const before = await launcherParent(sandbox, rootfs);
  t.not(before.parent, process.pid);
  process.kill(before.parent, 'SIGKILL');
  const deadline = Date.now() + 30_000;
  while (processInfo(before.parent) !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const r = await runCaptured(sandbox, createRunSpec({ root: { path: rootfs }, args: ['echo', 'still works'] }));
  t.is(r.stdout, 'still works\n');
  t.is((await launcherParent(sandbox, rootfs)).parent, process.pid);
});

testSerialIf(missing, 'launcher handshake: a signal aborted before the handshake listens (while the launcher was started) still kills the run', async (t) => {
  const { rootfs } = await setup(t);
  const spec = createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', 'echo ran'] });
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => {
    text += c.toString('utf8');
  });
  const r = await runHandshake({
    launcherPath: ensureLauncher(),
    input: encodeLauncherSpec(spec, { rootfs }),
    stdio: { stdout: out, stderr: out },
    releaseAtStart: true,
    signal: AbortSignal.abort(new Error('stop')),
    onPid: async () => undefined,
  });
  t.true(r.aborted);
  t.false(text.includes('ran'), text);
});
