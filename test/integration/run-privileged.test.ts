import test from 'ava';
import { readFileSync, statSync } from 'node:fs';
import { busyboxMissing } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { busyboxContainerStore } from '../helpers/containers.js';
import { cliAsUser, rootlessBusyboxStore, rootlessMissing } from '../helpers/rootless.js';

const noBusybox = await busyboxMissing();
const missing = (process.getuid?.() === 0 ? undefined : 'containers as root need root') ?? noBusybox;
const rootlessWhy = rootlessMissing() ?? noBusybox;

const field = (text: string, name: string): string => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(text)?.[1] ?? '';
const knownCaps = (): bigint => (1n << BigInt(Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8')) + 1)) - 1n;
const hex = (n: bigint): string => n.toString(16).padStart(16, '0');
/** Every capability of the kernel this root test process holds: docker's "all" (a VM may drop some for root). */
const heldCapsHex = (): string => hex(knownCaps() & BigInt(`0x${field(readFileSync('/proc/self/status', 'utf8'), 'CapPrm')}`));
const isChar = (path: string): boolean => {
  try {
    return statSync(path).isCharacterDevice();
  } catch {
    return false;
  }
};
/** The host devices the tests look for (this VM has both; a host without them checks the rest). */
const HOST_DEVICES = ['/dev/kmsg', '/dev/loop-control'].filter(isChar);

const SCRIPT = [
  'grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status',
  'mkdir -p /m && mount -t tmpfs none /m 2>/dev/null && echo mounted',
  ...HOST_DEVICES.map((d) => `test -c ${d} && echo ${d}`),
  'grep " /sys " /proc/mounts | cut -d" " -f4 | cut -d, -f1',
  'grep -q " /proc/keys " /proc/mounts || echo keys-unmasked',
].join('; ');
const lines = (out: string): string[] => out.split('\n').filter((l) => l !== '' && !l.includes(':'));

testIf(missing, 'run --privileged: every capability, no_new_privs off, a tmpfs mount, the host\'s devices and a writable /sys when given', async (t) => {
  const { r } = await busyboxContainerStore(t);
  const priv = await r('run', '--rm', '--privileged', 'busybox', 'sh', '-c', SCRIPT);
  t.is(priv.code, 0, priv.stderr);
  t.is(field(priv.stdout, 'CapEff'), heldCapsHex());
  t.is(field(priv.stdout, 'CapBnd'), heldCapsHex());
  t.is(field(priv.stdout, 'NoNewPrivs'), '0');
  t.is(field(priv.stdout, 'Seccomp'), '0');
  t.deepEqual(lines(priv.stdout), ['mounted', ...HOST_DEVICES, 'rw', 'keys-unmasked']);
  // Without it: docker's default set, no mount, no host device, /sys read-only, /proc/keys masked.
  const plain = await r('run', '--rm', 'busybox', 'sh', '-c', SCRIPT);
  t.not(field(plain.stdout, 'CapEff'), heldCapsHex());
  t.is(field(plain.stdout, 'NoNewPrivs'), '1');
  t.deepEqual(lines(plain.stdout), ['ro']);
});

testIf(missing, 'run --privileged: --cap-drop is ignored and --security-opt no-new-privileges still applies, as docker, when combined', async (t) => {
  const { r } = await busyboxContainerStore(t);
  const res = await r('run', '--rm', '--privileged', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--read-only', 'busybox', 'sh', '-c', 'grep -E "^(CapEff|NoNewPrivs):" /proc/self/status; touch /x 2>/dev/null || echo read-only');
  t.is(res.code, 0, res.stderr);
  t.is(field(res.stdout, 'CapEff'), heldCapsHex());
  t.is(field(res.stdout, 'NoNewPrivs'), '1');
  t.true(res.stdout.includes('read-only'));
});

testIf(missing, 'inspect: HostConfig.Privileged is true only for a container run with --privileged', async (t) => {
  const { r } = await busyboxContainerStore(t);
  t.is((await r('run', '--name', 'p', '--privileged', 'busybox', 'true')).code, 0);
  t.is((await r('run', '--name', 'q', 'busybox', 'true')).code, 0);
  t.is((await r('inspect', '--format', '{{.HostConfig.Privileged}}', 'p')).stdout.trim(), 'true');
  t.is((await r('inspect', '--format', '{{.HostConfig.Privileged}}', 'q')).stdout.trim(), 'false');
});

testIf(missing, 'exec --privileged: the command gets every capability in a container that is not privileged, and a privileged container\'s exec does too', async (t) => {
  const { r } = await busyboxContainerStore(t);
  t.is((await r('run', '-d', '--name', 'box', 'busybox', 'sleep', '600')).code, 0);
  const status = ['grep', '-E', '^(CapEff|NoNewPrivs):', '/proc/self/status'];
  const priv = await r('exec', '--privileged', 'box', ...status);
  t.is(priv.code, 0, priv.stderr);
  t.is(field(priv.stdout, 'CapEff'), heldCapsHex());
  t.is(field(priv.stdout, 'NoNewPrivs'), '1', 'the container\'s no_new_privs stays');
  const plain = await r('exec', 'box', ...status);
  t.not(field(plain.stdout, 'CapEff'), heldCapsHex());
  t.is((await r('exec', '--privileged', 'box', 'sh', '-c', 'mkdir -p /m && mount -t tmpfs none /m && echo mounted')).stdout, 'mounted\n');
  t.is((await r('run', '-d', '--name', 'pbox', '--privileged', 'busybox', 'sleep', '600')).code, 0);
  const inPriv = await r('exec', 'pbox', ...status);
  t.is(field(inPriv.stdout, 'CapEff'), heldCapsHex());
  t.is(field(inPriv.stdout, 'NoNewPrivs'), '0');
});

testIf(rootlessWhy, 'run --privileged rootless: every capability in the user namespace, a tmpfs mount and bound host devices when given', async (t) => {
  const { home, root } = await rootlessBusyboxStore(t, 'tsbuild-priv-rootless-');
  const priv = await cliAsUser(home, root, ['run', '--rm', '--privileged', 'busybox', 'sh', '-c', `${SCRIPT}; head -c 0 /dev/null && echo null-ok`]);
  t.is(priv.code, 0, priv.stderr);
  t.is(field(priv.stdout, 'CapEff'), hex(knownCaps()), 'a user namespace gives every capability');
  t.is(field(priv.stdout, 'NoNewPrivs'), '0');
  // Host devices are bind mounts in a user namespace; kmsg and loop-control are root's 0600/0644 nodes, bound all the same.
  t.deepEqual(lines(priv.stdout), ['mounted', ...HOST_DEVICES, 'rw', 'keys-unmasked', 'null-ok']);
  const plain = await cliAsUser(home, root, ['run', '--rm', 'busybox', 'sh', '-c', SCRIPT]);
  t.is(field(plain.stdout, 'NoNewPrivs'), '1');
  t.deepEqual(lines(plain.stdout), ['ro']);
});

testIf(rootlessWhy, 'exec --privileged rootless: the command gets every capability of the user namespace when given', async (t) => {
  const { home, root } = await rootlessBusyboxStore(t, 'tsbuild-priv-exec-rootless-');
  t.is((await cliAsUser(home, root, ['run', '-d', '--name', 'box', 'busybox', 'sleep', '600'])).code, 0);
  const priv = await cliAsUser(home, root, ['exec', '--privileged', 'box', 'grep', '^CapEff:', '/proc/self/status']);
  t.is(priv.code, 0, priv.stderr);
  t.is(field(priv.stdout, 'CapEff'), hex(knownCaps()));
  const plain = await cliAsUser(home, root, ['exec', 'box', 'grep', '^CapEff:', '/proc/self/status']);
  t.not(field(plain.stdout, 'CapEff'), hex(knownCaps()));
});
