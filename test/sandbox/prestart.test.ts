import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { isTsbuildError } from '../../src/core/index.js';
import { runHandshake } from '../../src/sandbox/launcher-handshake.js';
import { startLauncher, type StartedLauncher } from '../../src/sandbox/launcher-process.js';
import { encodeLauncherSpec } from '../../src/sandbox/launcher-spec.js';
import { createRunSpec, type RunSpec } from '../../src/sandbox/spec.js';
import { Sandbox } from '../../src/sandbox/sandbox.js';
import { createCgroup } from '../../src/sandbox/cgroup.js';
import type { CgroupV1 } from '../../src/sandbox/cgroup-v1.js';
import { v1Unavailable } from './cgroup-helpers.js';
import { testSerialIf } from '../helpers/capability.js';
import { cgroupsOwnedBy, childrenNamed } from '../helpers/containers.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { hasEnded, slirpArgs } from '../../src/runner/network-slirp.js';
import { assertNoLeftoverMounts, ensureLauncher, notRoot, spawningSandbox } from './sandbox-helpers.js';

// Sandbox.prestart: the launcher is spawned before its spec and joins the sandbox's cgroup itself
// (launcher.c --cgroup). Serial: the assertions look at this process's children and cgroups.

const missing = notRoot() ?? busyboxMissing();

function captured(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => {
    text += c.toString('utf8');
  });
  return { stream, text: () => text };
}

/** Live children of this process running the launcher. */
function launcherChildren(): number[] {
  return childrenNamed(process.pid, 'tsbuild-launche');
}

/** Drives `launcher` (started with stdout/stderr piped) through the handshake of `spec`, its output to `out`, released with its spec. */
function handshakeOf(launcher: StartedLauncher, spec: RunSpec, rootfs: string, out: PassThrough): ReturnType<typeof runHandshake> {
  return runHandshake({
    launcherPath: ensureLauncher(),
    input: encodeLauncherSpec(spec, { rootfs }),
    stdio: { stdout: out, stderr: out },
    launcher: launcher.attach({ stdout: out, stderr: out }),
    releaseAtStart: true,
    onPid: async () => undefined,
  });
}

testSerialIf(missing, 'launcher --cgroup: a cgroup it cannot join fails the start at step join-cgroup, before anything is cloned (also when the launcher ended before the handshake read it)', async (t) => {
  const dir = await tempDir(t, 'tsbuild-pre-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  const out = captured();
  const launcher = startLauncher(ensureLauncher(), ['ignore', 'pipe', 'pipe'], false, ['--cgroup', join(dir, 'no-such-cgroup', 'cgroup.procs')]);
  const echo = createRunSpec({ root: { path: rootfs }, args: ['echo', 'ran'] });
  const r = await handshakeOf(launcher, echo, rootfs, out.stream);
  t.is(r.pid, undefined, 'no child was cloned');
  t.like(r.lines.find((l) => l.error !== undefined)?.error, { step: 'join-cgroup', errno: 2 });
  t.is(await r.exited, 125);
  t.is(out.text(), '');
  // A prestarted launcher may end before anything reads it (Node then drains a child's stdio): the
  // handshake still gets its error line and its end.
  const early = startLauncher(ensureLauncher(), ['ignore', 'pipe', 'pipe'], false, ['--cgroup', join(dir, 'no-such-cgroup', 'cgroup.procs')]);
  t.is(await early.exited, 125);
  const late = await handshakeOf(early, echo, rootfs, out.stream);
  t.like(late.lines.find((l) => l.error !== undefined)?.error, { step: 'join-cgroup', errno: 2 });
});

testSerialIf(missing, 'Sandbox.prestart: one run takes it (its output and exit code), a second is refused, dispose then does nothing', async (t) => {
  const dir = await tempDir(t, 'tsbuild-pre-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const sandbox = spawningSandbox(join(dir, 'state'));
  const out = captured();
  const stdio = { stdout: out.stream, stderr: out.stream };
  const pre = await sandbox.prestart({ memory: { limit: 64 * 1024 * 1024 } }, stdio);
  const spec = createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || echo no cgroupfs; exit 3'], resources: { memory: { limit: 64 * 1024 * 1024 } } });
  const result = await sandbox.run(spec, stdio, undefined, {}, pre);
  t.is(result.exitCode, 3);
  t.true(out.text().length > 0, 'the command ran');
  const again = await sandbox.run(spec, stdio, undefined, {}, pre).then(() => undefined, (err: unknown) => err);
  t.true(isTsbuildError(again, 'INTERNAL'), String(again));
  await pre.dispose();
  t.deepEqual(launcherChildren(), []);
  t.deepEqual(cgroupsOwnedBy(process.pid), [], 'the run removed its cgroup');
});

testSerialIf(missing, 'Sandbox.prestart: dispose of an unused start ends its launcher and removes its cgroup', async (t) => {
  const dir = await tempDir(t, 'tsbuild-pre-');
  const sandbox = spawningSandbox(join(dir, 'state'));
  const pre = await sandbox.prestart({}, { stdout: new PassThrough(), stderr: new PassThrough() });
  t.is(launcherChildren().length, 1, 'the launcher waits for its spec');
  t.true(cgroupsOwnedBy(process.pid).length > 0, 'with its cgroup made');
  await pre.dispose();
  await pre.dispose();
  t.deepEqual(launcherChildren(), []);
  t.deepEqual(cgroupsOwnedBy(process.pid), []);
});

testSerialIf(missing, 'launcher --netns: the child is born in the network namespace the launcher made first; a spec that would share the host\'s is refused', async (t) => {
  const dir = await tempDir(t, 'tsbuild-pre-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const host = readlinkSync('/proc/self/ns/net');
  const run = async (network: 'none' | 'host'): Promise<{ made: string | undefined; out: string; error: string | undefined }> => {
    const out = captured();
    const launcher = startLauncher(ensureLauncher(), ['ignore', 'pipe', 'pipe'], false, ['--netns']);
    t.is(await launcher.expectLine(/^netns$/), 'netns', 'the launcher reports its namespace before it reads its spec');
    const made = launcher.pid === undefined ? undefined : readlinkSync(`/proc/${launcher.pid}/ns/net`);
    const r = await handshakeOf(launcher, createRunSpec({ root: { path: rootfs }, args: ['readlink', '/proc/self/ns/net'], network }), rootfs, out.stream);
    const err = r.lines.find((l) => l.error !== undefined)?.error;
    return { made, out: out.text(), error: err === undefined ? undefined : `${err.step} ${err.errno}` };
  };
  const own = await run('none');
  t.not(own.made, host, 'a new namespace');
  t.is(own.out.trim(), own.made ?? 'no launcher pid', 'the container\'s process is in it');
  t.is(own.error, undefined);
  const shared = await run('host');
  t.is(shared.error, 'parse-spec 22', 'refused: the early namespace never stands in for the host\'s');
  t.is(shared.out, '');
});

testSerialIf(missing, 'a launcher without the spawn addon beside it is started with node:child_process: the same run, output and exit code', async (t) => {
  const dir = await tempDir(t, 'tsbuild-pre-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const alone = join(dir, 'bin', 'tsbuild-launcher');
  mkdirSync(join(dir, 'bin'));
  copyFileSync(ensureLauncher(), alone);
  chmodSync(alone, 0o755);
  t.false(existsSync(join(dir, 'bin', 'tsbuild-spawn.node')));
  const sandbox = new Sandbox({ launcherPath: alone, stateDir: join(dir, 'state'), host: { uid: 0, gid: 0, user: 'root' }, ownerPid: process.pid });
  const out = captured();
  const stdio = { stdout: out.stream, stderr: out.stream };
  const pre = await sandbox.prestart({}, stdio);
  const r = await sandbox.run(createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', 'echo spawned; exit 4'], resources: {} }), stdio, undefined, {}, pre);
  t.is(r.exitCode, 4);
  t.is(out.text(), 'spawned\n');
  await pre.dispose();
  t.deepEqual(launcherChildren(), []);
});

testSerialIf(missing ?? v1Unavailable(), 'launcher: on cgroup v1 the sandbox\'s process joins its cgroup itself through tasks (the spec\'s cgroup files): in it with nobody attaching it, the launcher never in it', async (t) => {
  const dir = await tempDir(t, 'tsbuild-pre-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const cgroup = await createCgroup(`sandbox-selfjoin-${process.pid}`, {}, { rootless: false });
  if (cgroup === undefined) throw new Error('no cgroup could be made');
  t.teardown(() => cgroup.destroy());
  const files = cgroup.selfJoinFiles ?? [];
  t.true(files.length > 0 && files.every((f) => f.endsWith('/tasks')));
  const pidsDir = (cgroup as CgroupV1).directories.get('pids') ?? '';
  const out = captured();
  const launcher = startLauncher(ensureLauncher(), ['ignore', 'pipe', 'pipe']);
  // Released with its spec (releaseAtStart): this process never attaches anything.
  const r = runHandshake({
    launcherPath: ensureLauncher(),
    input: encodeLauncherSpec(createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', 'echo started; sleep 0.4'] }), { rootfs, joinCgroups: files }),
    stdio: { stdout: out.stream, stderr: out.stream },
    launcher: launcher.attach({ stdout: out.stream, stderr: out.stream }),
    releaseAtStart: true,
    onPid: async () => undefined,
  });
  while (!out.text().includes('started')) await new Promise((resolve) => setTimeout(resolve, 10));
  const members = readFileSync(join(pidsDir, 'cgroup.procs'), 'latin1').trim().split('\n').filter((l) => l !== '').map(Number);
  t.true(members.length >= 1, 'the container\'s process (the shell, or the sleep it exec\'d)');
  t.false(members.includes(launcher.pid ?? -1), 'the launcher stays out');
  const result = await r;
  t.is(result.lines.find((l) => l.error !== undefined), undefined);
  t.like(result.lines.find((l) => l.exitCode !== undefined), { exitCode: 0 });
});

const slirpPath = existsSync('/usr/bin/slirp4netns') ? '/usr/bin/slirp4netns' : undefined;

testSerialIf(missing ?? (slirpPath === undefined ? 'slirp4netns is not installed' : undefined), 'Sandbox.prestart with slirp4netns: the launcher starts it in the host\'s network namespace for the sandbox\'s own, clones the child once tap0 is up, and it ends with its child or its launcher', async (t) => {
  const dir = await tempDir(t, 'tsbuild-pre-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const sandbox = spawningSandbox(join(dir, 'state'));
  const slirp4netns = { file: slirpPath as string, argv0: `slirp4netns[${dir}]`, args: slirpArgs({ fd: 5 }, {}, false) };
  const host = readlinkSync('/proc/self/ns/net');
  const out = captured();
  const stdio = { stdout: out.stream, stderr: out.stream };
  // A run: the command sees tap0 configured from its first instruction.
  const pre = await sandbox.prestart({}, stdio, { slirp4netns });
  // Never a launcher left waiting for its spec when an assertion fails (a run that took it makes this a no-op).
  t.teardown(() => pre.dispose());
  const pid = await pre.slirpPid;
  t.true(pid !== undefined && pid > 0);
  let seen: { cmdline: string; ns: string } | undefined;
  const r = await sandbox.run(createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', 'ip -4 addr show tap0 | grep -o "inet [0-9./]*"; readlink /proc/self/ns/net'], resources: {}, network: 'none' }), stdio, undefined, {
    // Once the child exists slirp4netns is ready, so it runs its own program (the launcher reports its pid right after the fork).
    onCreated: async () => {
      seen = { cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8'), ns: readlinkSync(`/proc/${pid}/ns/net`) };
    },
  }, pre);
  t.true(seen?.cmdline.startsWith(`slirp4netns[${dir}]\0--configure`), seen?.cmdline);
  t.is(seen?.ns, host, 'slirp4netns runs in the host\'s network namespace');
  t.is(r.exitCode, 0, out.text());
  const [inet, ns] = out.text().trim().split('\n');
  t.is(inet, 'inet 10.0.2.100/24');
  t.not(ns, host);
  // The launcher closed its exit fd when the child ended: it ends by itself.
  await waitUntil(() => hasEnded(pid as number));
  // A start no run takes: disposing of it kills the launcher, and slirp4netns with it.
  const unused = await sandbox.prestart({}, stdio, { slirp4netns });
  t.teardown(() => unused.dispose());
  const second = await unused.slirpPid;
  t.true(second !== undefined && !hasEnded(second));
  await unused.dispose();
  await waitUntil(() => hasEnded(second as number));
  t.deepEqual(launcherChildren(), []);
});

testSerialIf(missing ?? (slirpPath === undefined ? 'slirp4netns is not installed' : undefined), 'Sandbox.prestart with slirp4netns: one that fails fails the run with its message (SANDBOX_NETWORK) and nothing runs, also when the child is released with its spec', async (t) => {
  const dir = await tempDir(t, 'tsbuild-pre-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const sandbox = spawningSandbox(join(dir, 'state'));
  // A real slirp4netns refusing an option it validates at its start.
  const slirp4netns = { file: slirpPath as string, argv0: 'slirp4netns[test]', args: slirpArgs({ fd: 5 }, { outboundAddr: 'nosuchif0' }, false) };
  const out = captured();
  const stdio = { stdout: out.stream, stderr: out.stream };
  const pre = await sandbox.prestart({}, stdio, { slirp4netns });
  t.teardown(() => pre.dispose());
  const err = await t.throwsAsync(sandbox.run(createRunSpec({ root: { path: rootfs }, args: ['echo', 'never'], resources: {}, network: 'none' }), stdio, undefined, {}, pre));
  t.true(isTsbuildError(err, 'SANDBOX_NETWORK'), String(err));
  t.regex((err as Error).message, /^cannot start slirp4netns for the container's network: it exited \(code 1\): outbound-addr has to be valid ipv4 address or i.?terface name\.$/);
  t.is(out.text(), '');
  t.deepEqual(launcherChildren(), []);
});

async function waitUntil(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}
