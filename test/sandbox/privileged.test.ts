import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { testIf, testSerialIf } from '../helpers/capability.js';
import { runWithOciRuntime } from '../../src/sandbox/oci-runtime.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { listHostDevices } from '../../src/sandbox/host-devices.js';
import { encodeLauncherSpec } from '../../src/sandbox/launcher-spec.js';
import { ALL_CAPABILITIES, createRunSpec, DEFAULT_MASKED_PATHS, toOciConfig, type RunSpecOptions } from '../../src/sandbox/spec.js';
import { isTsbuildError } from '../../src/core/index.js';
import { assertNoLeftoverMounts, notRoot, rootSandbox, runCaptured } from './sandbox-helpers.js';

const missing = notRoot() ?? busyboxMissing();
const runcMissing = missing ?? ((): string | undefined => {
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'runc is not installed (apt-get install runc)';
  }
})();

async function setup(t: Parameters<typeof tempDir>[0]): Promise<(o: Omit<RunSpecOptions, 'root'>) => ReturnType<typeof runCaptured>> {
  const dir = await tempDir(t, 'tsbuild-priv-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const sandbox = rootSandbox(join(dir, 'state'));
  return (o) => runCaptured(sandbox, createRunSpec({ root: { path: rootfs }, ...o }));
}

const statusField = (text: string, field: string): string => new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(text)?.[1] ?? '';
/**
 * Every capability bit the running kernel knows (0..cap_last_cap) that this (root) process holds, as
 * /proc/PID/status prints it: docker's "all", except that a root without some (a VM dropping
 * CAP_SYS_RESOURCE) cannot give them.
 */
const allCapsHex = (): string => {
  const known = (1n << BigInt(Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8')) + 1)) - 1n;
  const held = BigInt(`0x${statusField(readFileSync('/proc/self/status', 'utf8'), 'CapPrm')}`);
  return (known & held).toString(16).padStart(16, '0');
};

test('spec: privileged gives every capability, no masked or read-only paths, a writable /sys and no no_new_privs when asked', (t) => {
  const s = createRunSpec({ args: ['true'], root: { path: '/r' }, privileged: true, capDrop: ['ALL'], devices: [{ path: '/dev/kmsg', type: 'c', major: 1, minor: 11, fileMode: 0o644, uid: 0, gid: 0 }] });
  t.deepEqual(s.process.capabilities, ALL_CAPABILITIES);
  t.false(s.process.noNewPrivileges);
  t.deepEqual(s.linux.maskedPaths, []);
  t.deepEqual(s.linux.readonlyPaths, []);
  t.false(s.mounts.find((m) => m.destination === '/sys')?.options.includes('ro'));
  t.true(s.linux.allowAllDevices);
  const oci = toOciConfig(s) as { linux: { devices: unknown[]; resources: { devices: { allow: boolean }[] } } };
  t.true(oci.linux.resources.devices[0]?.allow);
  t.is(oci.linux.devices.length, 1);
  t.true(encodeLauncherSpec(s, { rootfs: '/r' }).toString().includes(['device', '/dev/kmsg', 'c', '1', '11', '420', '0', '0', ''].join('\0')));
  t.true(encodeLauncherSpec(s, { rootfs: '/r' }).toString().includes('capsheld\x001\0'));
  // An explicit --security-opt no-new-privileges still applies.
  t.true(createRunSpec({ args: ['true'], root: { path: '/r' }, privileged: true, noNewPrivileges: true }).process.noNewPrivileges);
  const plain = createRunSpec({ args: ['true'], root: { path: '/r' } });
  t.deepEqual(plain.linux.maskedPaths, DEFAULT_MASKED_PATHS);
  t.true(plain.mounts.find((m) => m.destination === '/sys')?.options.includes('ro'));
  t.is(plain.linux.allowAllDevices, undefined);
});

test('spec: a device outside /dev or with a bad type is refused when given', (t) => {
  for (const path of ['/etc/passwd', '/dev/../etc/x', '/dev/', 'dev/null']) {
    const err = t.throws(() => createRunSpec({ args: ['true'], root: { path: '/r' }, devices: [{ path, type: 'c', major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 }] }));
    t.true(isTsbuildError(err, 'SANDBOX_BAD_SPEC'), path);
  }
});

test('listHostDevices: lists the host\'s character devices without pts, ptmx and console when reading /dev', (t) => {
  const devices = listHostDevices();
  const devNull = devices.find((d) => d.path === '/dev/null');
  t.deepEqual(devNull && { type: devNull.type, major: devNull.major, minor: devNull.minor }, { type: 'c', major: 1, minor: 3 });
  t.false(devices.some((d) => d.path.startsWith('/dev/pts/') || d.path === '/dev/ptmx' || d.path === '/dev/console' || d.path.startsWith('/dev/shm/')));
});

testIf(missing, 'sandbox: a privileged process has every capability, no_new_privs off and no seccomp when privileged', async (t) => {
  const run = await setup(t);
  const r = await run({ args: ['cat', '/proc/self/status'], privileged: true, devices: listHostDevices() });
  t.is(r.exitCode, 0, r.stderr);
  for (const f of ['CapEff', 'CapPrm', 'CapBnd']) t.is(statusField(r.stdout, f), allCapsHex(), f);
  t.is(statusField(r.stdout, 'CapInh'), '0000000000000000');
  t.is(statusField(r.stdout, 'CapAmb'), '0000000000000000');
  t.is(statusField(r.stdout, 'NoNewPrivs'), '0');
  t.is(statusField(r.stdout, 'Seccomp'), '0');
});

testIf(missing, 'sandbox: a privileged process can mount a tmpfs, reads /proc/keys and /sys is read-write when privileged', async (t) => {
  const run = await setup(t);
  const script = 'mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted; grep -c . /proc/keys >/dev/null && echo keys; grep " /sys " /proc/self/mounts | cut -d" " -f4 | cut -d, -f1; grep -c " /proc/sys " /proc/self/mounts';
  const priv = await run({ args: ['sh', '-c', script], privileged: true });
  t.deepEqual(priv.stdout.trim().split('\n'), ['mounted', 'keys', 'rw', '0'], priv.stderr);
  const plain = await run({ args: ['sh', '-c', script] });
  t.deepEqual(plain.stdout.trim().split('\n'), ['ro', '1'], plain.stderr);
});

testIf(missing, 'sandbox: the host\'s devices are in /dev when privileged with the host devices', async (t) => {
  const run = await setup(t);
  const host = listHostDevices().filter((d) => ['/dev/loop-control', '/dev/kmsg', '/dev/null'].includes(d.path));
  t.true(host.length >= 2, 'this host has /dev/kmsg or /dev/loop-control');
  const script = host.map((d) => `stat -c "%n %F %t:%T" ${d.path}`).join('; ');
  const priv = await run({ args: ['sh', '-c', script], privileged: true, devices: listHostDevices() });
  t.is(priv.exitCode, 0, priv.stderr);
  t.deepEqual(priv.stdout.trim().split('\n'), host.map((d) => `${d.path} character special file ${d.major.toString(16)}:${d.minor.toString(16)}`));
  const plain = await run({ args: ['sh', '-c', 'test -e /dev/kmsg || test -e /dev/loop-control || echo absent'] });
  t.is(plain.stdout.trim(), 'absent');
});

testSerialIf(runcMissing, 'sandbox: a privileged spec gives the same capabilities, mounts and devices with runc as with the launcher (oracle)', async (t) => {
  const dir = await tempDir(t, 'tsbuild-priv-oci-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const script = 'grep -E "^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):" /proc/self/status; mkdir -p /m && mount -t tmpfs none /m && echo mounted; grep " /sys " /proc/mounts | cut -d" " -f4 | cut -d, -f1; grep -c " /proc/keys " /proc/mounts; stat -c "%n %t:%T" /dev/kmsg /dev/loop-control 2>&1';
  const spec = createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', script], privileged: true, devices: listHostDevices() });
  const ours = await runCaptured(rootSandbox(join(dir, 'state')), spec);
  const out = new PassThrough();
  let runcOut = '';
  out.setEncoding('utf8').on('data', (c: string) => { runcOut += c; });
  const theirs = await runWithOciRuntime('runc', spec, { stdout: out, stderr: new PassThrough().resume() }, undefined, { stateDir: join(dir, 'oci-state'), ownerPid: process.pid, rootless: false });
  t.is(ours.exitCode, theirs.exitCode, ours.stderr);
  t.is(ours.stdout, runcOut);
  t.is(statusField(ours.stdout, 'CapEff'), allCapsHex());
});
