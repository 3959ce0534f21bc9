import test from 'ava';
import { mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { testIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { capabilityMask } from '../../src/sandbox/launcher-spec.js';
import { createRunSpec, DEFAULT_CAPABILITIES, type RunSpec, type RunSpecOptions } from '../../src/sandbox/spec.js';
import type { Sandbox } from '../../src/sandbox/sandbox.js';
import { isTsbuildError } from '../../src/core/index.js';
import { assertNoLeftoverMounts, notRoot, REPO, rootSandbox, runCaptured, spawningSandbox } from './sandbox-helpers.js';
import { execFileSync, spawn } from 'node:child_process';

const missing = notRoot() ?? busyboxMissing();

async function setup(t: Parameters<typeof tempDir>[0]): Promise<{ dir: string; rootfs: string; sandbox: Sandbox; state: string; run: (o: Omit<RunSpecOptions, 'root'>, edit?: (s: RunSpec) => RunSpec) => ReturnType<typeof runCaptured> }> {
  const dir = await tempDir(t, 'tsbuild-sbx-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const state = join(dir, 'state');
  const sandbox = rootSandbox(state);
  return { dir, rootfs, sandbox, state, run: (o, edit = (s) => s) => runCaptured(sandbox, edit(createRunSpec({ root: { path: rootfs }, ...o }))) };
}

const hex = (mask: bigint): string => mask.toString(16).padStart(16, '0');
const statusField = (text: string, field: string): string => new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(text)?.[1] ?? '';

testIf(missing, 'sandbox: CapEff and CapBnd equal Docker\'s default set and NoNewPrivs is 1 when running as root', async (t) => {
  const { run, rootfs, dir } = await setup(t);
  const r = await run({ args: ['cat', '/proc/self/status'] });
  t.is(r.exitCode, 0, r.stderr);
  // The same from a launcher spawned by the spawn addon (no zygote): see below.
  const spawned = await runCaptured(spawningSandbox(join(dir, 'state-spawned')), createRunSpec({ root: { path: rootfs }, args: ['cat', '/proc/self/status'] }));
  t.is(spawned.exitCode, 0, spawned.stderr);
  const want = hex(capabilityMask(DEFAULT_CAPABILITIES));
  t.is(statusField(r.stdout, 'CapEff'), want);
  t.is(statusField(r.stdout, 'CapPrm'), want);
  t.is(statusField(r.stdout, 'CapBnd'), want);
  t.is(statusField(r.stdout, 'CapInh'), '0000000000000000');
  t.is(statusField(r.stdout, 'NoNewPrivs'), '1');
  // No signal ignored or blocked, whichever way the launcher was started (posix_spawn, the spawn addon's, leaves
  // glibc's internal 32 and 33 ignored: the launcher undoes that).
  for (const status of [r.stdout, spawned.stdout]) {
    t.is(statusField(status, 'SigIgn'), '0000000000000000');
    t.is(statusField(status, 'SigBlk'), '0000000000000000');
  }
});

testIf(missing, 'sandbox: capAdd and capDrop change the set when given', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['cat', '/proc/self/status'], capAdd: ['NET_ADMIN'], capDrop: ['CHOWN', 'cap_kill'] });
  const want = [...DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_CHOWN' && c !== 'CAP_KILL'), 'CAP_NET_ADMIN'];
  t.is(statusField(r.stdout, 'CapEff'), hex(capabilityMask(want)));
  const none = await run({ args: ['cat', '/proc/self/status'], capDrop: ['ALL'] });
  t.is(statusField(none.stdout, 'CapBnd'), '0000000000000000');
});

testIf(missing, 'sandbox: a non-root user has no effective capabilities and its supplementary groups when given a user', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'id -u; id -g; id -G; grep -E "^(CapEff|CapBnd)" /proc/self/status'], user: { uid: 1000, gid: 1000, additionalGids: [50] } });
  t.is(r.exitCode, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.deepEqual(lines.slice(0, 3), ['1000', '1000', '1000 50']);
  t.is(statusField(r.stdout, 'CapEff'), '0000000000000000');
  t.is(statusField(r.stdout, 'CapBnd'), hex(capabilityMask(DEFAULT_CAPABILITIES)));
});

testIf(missing, 'sandbox: masked paths read empty and /proc/sys is read-only when hardened', async (t) => {
  const { run } = await setup(t);
  const r = await run({
    args: ['sh', '-c', 'wc -c < /proc/keys; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid && echo writable || echo ro; echo x > /proc/sysrq-trigger && echo writable || echo ro'],
  });
  const lines = r.stdout.trim().split('\n').map((l) => l.trim());
  t.deepEqual(lines, ['0', '0', '0', 'ro', 'ro'], r.stderr);
  t.regex(r.stderr, /Read-only file system/);
});

testIf(missing, 'sandbox: nofile is Docker\'s 1048576 and /sys is read-only when running', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'ulimit -n; ulimit -Hn; touch /sys/x 2>/dev/null && echo writable || echo ro'] });
  // Without CAP_SYS_RESOURCE (some VMs drop it even for root) the hard limit cannot be raised: clamped.
  const self = readFileSync('/proc/self/status', 'utf8');
  const canRaise = (BigInt(`0x${statusField(self, 'CapEff')}`) >> 24n) & 1n;
  const hostHard = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] as string;
  const want = canRaise === 1n ? '1048576' : String(Math.min(1048576, Number(hostHard)));
  t.deepEqual(r.stdout.trim().split('\n'), [want, want, 'ro']);
});

testIf(missing, 'sandbox: /dev has the standard nodes and links when running', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done; head -c 4 /dev/zero | wc -c; echo ok > /dev/null; readlink /dev/fd; readlink /dev/ptmx; test -c /dev/pts/ptmx && echo pts; test -d /dev/shm -a -d /dev/mqueue && echo shm'] });
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n').map((l) => l.trim()), ['4', '/proc/self/fd', 'pts/ptmx', 'pts', 'shm']);
});

testIf(missing, 'sandbox: a device node made in the container or carried by its root filesystem cannot be opened (nodev) unless privileged', async (t) => {
  const { dir, rootfs, run } = await setup(t);
  const vol = join(dir, 'vol');
  await mkdir(vol);
  // As a hostile image layer unpacked as root would: /dev/zero's numbers at another path.
  execFileSync('mknod', [join(rootfs, 'carried'), 'c', '1', '5']);
  // CAP_MKNOD is in docker's default set: making nodes works, opening them must not (docker's device cgroup; here nodev).
  const script = 'for p in /made /dev/made /tmp/t/made /vol/made; do mknod $p c 1 5 || echo mknod-failed $p; done; '
    + 'for p in /carried /made /dev/made /tmp/t/made /vol/made; do head -c 1 $p >/dev/null 2>&1 && echo opened $p || echo refused $p; done; '
    + 'head -c 3 /dev/zero | wc -c; echo x > /dev/null && echo null-ok';
  const mounts = [
    { destination: '/vol', type: 'bind', source: vol, options: ['rbind', 'rprivate'] },
    { destination: '/tmp/t', type: 'tmpfs', source: 'tmpfs', options: ['mode=755'] },
  ];
  const r = await run({ args: ['sh', '-c', script], mounts });
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n').map((l) => l.trim()), [
    'refused /carried', 'refused /made', 'refused /dev/made', 'refused /tmp/t/made', 'refused /vol/made', '3', 'null-ok',
  ]);
  await rm(join(rootfs, 'made'), { force: true });
  await rm(join(vol, 'made'), { force: true });
  const p = await run({ args: ['sh', '-c', script], mounts, privileged: true });
  t.is(p.exitCode, 0, p.stderr);
  t.deepEqual(p.stdout.trim().split('\n').map((l) => l.trim()), [
    'opened /carried', 'opened /made', 'opened /dev/made', 'opened /tmp/t/made', 'opened /vol/made', '3', 'null-ok',
  ]);
});

testIf(missing, 'sandbox: device nodes on submounts that an rbind volume or a directory root brings along cannot be opened either (nodev on the whole tree) unless privileged', async (t) => {
  const { dir, rootfs, run } = await setup(t);
  const vol = join(dir, 'vol');
  // Host-side submounts that allow devices, each holding /dev/zero's numbers: below a volume and below the root.
  const subs = [join(vol, 'sub'), join(rootfs, 'subm')];
  for (const s of subs) {
    await mkdir(s, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'dev,mode=755', 'tsbuild-test-sub', s]);
    t.teardown(() => execFileSync('umount', ['-l', s]));
    execFileSync('mknod', [join(s, 'zero'), 'c', '1', '5']);
  }
  const script = 'for p in /vol/sub/zero /subm/zero; do head -c 1 $p >/dev/null 2>&1 && echo opened $p || echo refused $p; done';
  const mounts = [{ destination: '/vol', type: 'bind', source: vol, options: ['rbind', 'rprivate'] }];
  const r = await run({ args: ['sh', '-c', script], mounts });
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n'), ['refused /vol/sub/zero', 'refused /subm/zero']);
  const p = await run({ args: ['sh', '-c', script], mounts, privileged: true });
  t.deepEqual(p.stdout.trim().split('\n'), ['opened /vol/sub/zero', 'opened /subm/zero']);
});

testIf(missing, 'sandbox: env, working directory and default PATH apply when given', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'pwd; echo $FOO; echo $PATH'], env: ['FOO=bar baz'], cwd: '/work/dir' });
  t.deepEqual(r.stdout.trim().split('\n'), ['/work/dir', 'bar baz', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
});

testIf(missing, 'sandbox: bind mounts are writable or read-only as asked when given volumes', async (t) => {
  const { dir, run } = await setup(t);
  const rw = join(dir, 'rw');
  const ro = join(dir, 'ro');
  await mkdir(rw);
  await mkdir(ro);
  await writeFile(join(ro, 'file'), 'data\n');
  const r = await run({
    args: ['sh', '-c', 'echo hello > /rw/out; cat /ro/file; echo no > /ro/file && echo writable || echo ro'],
    mounts: [
      { destination: '/rw', type: 'bind', source: rw, options: ['rbind', 'rprivate'] },
      { destination: '/ro', type: 'bind', source: ro, options: ['rbind', 'ro', 'rprivate'] },
    ],
  });
  t.deepEqual(r.stdout.trim().split('\n'), ['data', 'ro']);
  t.is(await readFile(join(rw, 'out'), 'utf8'), 'hello\n');
  t.is(await readFile(join(ro, 'file'), 'utf8'), 'data\n');
});

testIf(missing, 'sandbox: the exit code propagates and stdin is piped when given', async (t) => {
  const { run } = await setup(t);
  t.is((await run({ args: ['sh', '-c', 'exit 3'] })).exitCode, 3);
  const { sandbox, rootfs } = await setup(t);
  const r = await runCaptured(sandbox, createRunSpec({ root: { path: rootfs }, args: ['cat'] }), undefined, Readable.from(['piped input\n']));
  t.is(r.stdout, 'piped input\n');
});

testIf(missing, 'sandbox: a signal death is reported as 128+n when the process is not PID 1', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'kill -KILL $$'] }, (s) => ({ ...s, linux: { ...s.linux, namespaces: s.linux.namespaces.filter((n) => n.type !== 'pid') } }));
  t.is(r.exitCode, 137);
  t.is(r.signal, 'SIGKILL');
});

testIf(missing, 'sandbox: an abort kills the whole pid namespace when the signal fires', async (t) => {
  const { sandbox, rootfs } = await setup(t);
  const controller = new AbortController();
  const out = new PassThrough();
  out.on('data', (c: Buffer) => {
    if (c.toString().includes('ready')) controller.abort(new Error('test timeout'));
  });
  const marker = `${process.pid}${Date.now() % 1000}`;
  const spec = createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', `sleep ${marker} & sleep ${marker} & echo ready; wait`] });
  const err = await t.throwsAsync(sandbox.run(spec, { stdout: out }, controller.signal));
  t.true(isTsbuildError(err, 'SANDBOX_ABORTED'), String(err));
  const alive = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker);
    } catch {
      return false;
    }
  });
  t.deepEqual(alive, []);
});

testIf(missing, 'sandbox: a missing command fails with exit 127 naming the path when it does not exist', async (t) => {
  const { run } = await setup(t);
  const abs = await t.throwsAsync(run({ args: ['/bin/nope', 'x'] }));
  t.true(isTsbuildError(abs, 'SANDBOX_COMMAND_NOT_FOUND'));
  t.is((abs as unknown as { exitCode: number }).exitCode, 127);
  t.regex(abs?.message ?? '', /\/bin\/nope/);
  const bare = await t.throwsAsync(run({ args: ['nope-cmd'] }));
  t.true(isTsbuildError(bare, 'SANDBOX_COMMAND_NOT_FOUND'));
  t.regex(bare?.message ?? '', /nope-cmd.*PATH=/);
});

testIf(missing, 'sandbox: bad input gives SANDBOX_* errors when the rootfs, capability or paths are invalid', async (t) => {
  const { dir, sandbox, rootfs } = await setup(t);
  const noRoot = await t.throwsAsync(sandbox.run(createRunSpec({ root: { path: join(dir, 'absent') }, args: ['true'] })));
  t.true(isTsbuildError(noRoot, 'SANDBOX_ROOTFS_NOT_FOUND'));
  t.regex(noRoot?.message ?? '', /absent/);
  t.true(isTsbuildError(t.throws(() => createRunSpec({ root: { path: rootfs }, args: ['true'], capAdd: ['NOT_A_CAP'] })), 'SANDBOX_BAD_CAPABILITY'));
  t.true(isTsbuildError(t.throws(() => createRunSpec({ root: { path: rootfs }, args: ['true'], cwd: 'rel' })), 'SANDBOX_BAD_SPEC'));
  t.true(isTsbuildError(t.throws(() => createRunSpec({ root: { path: rootfs }, args: [] })), 'SANDBOX_BAD_SPEC'));
  const badOverlay = createRunSpec({ root: { overlay: { lowerdirs: [`${rootfs},x`], upperdir: dir, workdir: dir } }, args: ['true'] });
  const e = await t.throwsAsync(sandbox.run(badOverlay));
  t.true(isTsbuildError(e, 'SANDBOX_ROOTFS_NOT_FOUND') || isTsbuildError(e, 'SANDBOX_BAD_SPEC'));
  const bindMissing = createRunSpec({ root: { path: rootfs }, args: ['true'], mounts: [{ destination: '/x', type: 'bind', source: join(dir, 'nope'), options: ['rbind'] }] });
  const b = await t.throwsAsync(sandbox.run(bindMissing));
  t.true(isTsbuildError(b, 'SANDBOX_SETUP'));
  t.regex(b?.message ?? '', /bind-source.*nope.*ENOENT/);
});

testIf(missing, 'sandbox: an overlay root with a missing layer directory is SANDBOX_ROOTFS_NOT_FOUND naming it when the mount fails', async (t) => {
  const { sandbox, rootfs, dir } = await setup(t);
  for (const d of ['upper', 'work']) await mkdir(join(dir, d));
  const spec = createRunSpec({ root: { overlay: { lowerdirs: [rootfs, join(dir, 'gone-layer')], upperdir: join(dir, 'upper'), workdir: join(dir, 'work') } }, args: ['true'] });
  const e = await t.throwsAsync(sandbox.run(spec));
  t.true(isTsbuildError(e, 'SANDBOX_ROOTFS_NOT_FOUND'), String(e));
  t.regex(e?.message ?? '', /gone-layer/);
});

testIf(missing, 'sandbox: state of a dead owner is removed by a run (its sweep, once the command is released), which leaves none of its own', async (t) => {
  const { sandbox, rootfs, state } = await setup(t);
  const stale = join(state, 'deadbeef0000');
  await mkdir(join(stale, 'files'), { recursive: true });
  await writeFile(join(stale, 'owner'), '999999999 1\n');
  await utimes(stale, new Date(0), new Date(0));
  const r = await runCaptured(sandbox, createRunSpec({ root: { path: rootfs }, args: ['true'] }));
  t.is(r.exitCode, 0);
  t.false(existsSync(stale));
  t.deepEqual(readdirSync(state).filter((n) => !n.startsWith('.')), [], 'only the shared parts (.init-layer, .rootfs, .files) stay');
});

/** Pids whose command line contains `marker`. */
function pidsWith(marker: string): string[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker);
    } catch {
      return false;
    }
  });
}

async function waitFor(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

testIf(missing, 'sandbox: a SIGKILLed tsbuild takes its container down and its state is cleaned on the next start when killed', async (t) => {
  const { rootfs, dir } = await setup(t);
  const runDir = join(dir, 'run');
  const marker = `4${process.pid}${Date.now() % 10000}`;
  const cli = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), 'run', '--rootfs', rootfs, '--', 'sh', '-c', `sleep ${marker} & sleep ${marker}`], {
    cwd: REPO, env: { ...process.env, TSBUILD_RUN_DIR: runDir }, stdio: 'ignore',
  });
  t.teardown(() => { for (const p of pidsWith(marker)) process.kill(Number(p), 'SIGKILL'); });
  await waitFor(() => pidsWith(marker).filter((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('sleep')).length === 2, 'the container to start');
  t.deepEqual(readdirSync(join(runDir, 'sandbox')).filter((n) => !n.startsWith('.')), [], 'nothing per sandbox on the host while it runs');
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(runDir), 'its mounts live in its own namespace only');
  cli.kill('SIGKILL');
  await waitFor(() => pidsWith(marker).length === 0, 'every container process to die');
  t.pass('no process of the container survived');
  const sandbox = rootSandbox(join(runDir, 'sandbox'));
  await runCaptured(sandbox, createRunSpec({ root: { path: rootfs }, args: ['true'] }));
  t.deepEqual(readdirSync(join(runDir, 'sandbox')).filter((n) => !n.startsWith('.')), [], 'no state is left');
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(runDir), 'no mount is left');
});

testIf(missing, 'sandbox: the process gets a pty of the container\'s devpts as its controlling terminal when terminal is set', async (t) => {
  const { sandbox, rootfs } = await setup(t);
  const spec = createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', 'tty; test -t 0 && test -t 1 && echo all-tty; exit 6'], terminal: true });
  const r = await runCaptured(sandbox, spec);
  t.is(r.exitCode, 6);
  const lines = r.stdout.split(/\r?\n/).map((l) => l.trim());
  t.is(lines[0], '/dev/pts/0');
  t.is(lines[1], 'all-tty');
});
