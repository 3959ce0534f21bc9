import { readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxMissing } from '../helpers/base-image.js';
import { testIf, testSerialIf } from '../helpers/capability.js';
import { cliAsUser, rootlessBusyboxStore, rootlessMissing as userMissing } from '../helpers/rootless.js';
import { build, buildMissing, isRoot, makeFixture, readUnpacked, stepsOf, unpackedImage } from './build-helpers.js';

const missing = await buildMissing();
// CI's second pass runs only a fixed list of build files as the unprivileged user; this one drives that user itself.
const rootlessWhy = isRoot ? (userMissing() ?? (await busyboxMissing())) : 'the root pass drives the unprivileged user';

const field = (text: string, name: string): string => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(text)?.[1] ?? '';
const knownCaps = (): bigint => (1n << BigInt(Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8')) + 1)) - 1n;
/**
 * The CapEff of a privileged step: every capability of the kernel, rootless (a user namespace has
 * them all) or as root those root holds (a VM may drop some for root).
 */
const privilegedCaps = (): string => {
  const held = isRoot ? BigInt(`0x${field(readFileSync('/proc/self/status', 'utf8'), 'CapPrm')}`) : knownCaps();
  return (knownCaps() & held).toString(16).padStart(16, '0');
};
const hasChar = (p: string): boolean => {
  try {
    return statSync(p).isCharacterDevice();
  } catch {
    return false;
  }
};

const STEP = 'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status > /status; (mkdir -p /m && mount -t tmpfs none /m && umount /m && echo mounted || echo refused) > /mount; (test -c /dev/kmsg && echo kmsg || echo no-kmsg) > /kmsg';

testSerialIf(missing, 'tsbuild build: RUN --security=insecure is SOLVE_ENTITLEMENT at its Dockerfile line when --allow security.insecure is not given', async (t) => {
  const f = await makeFixture(t);
  const r = await build(f, ['FROM busybox', `RUN --security=insecure ${STEP}`, ''].join('\n'), ['-t', 'insecure:1', '--progress', 'plain']);
  t.not(r.code, 0);
  t.regex(r.stderr, /Dockerfile:2: SOLVE_ENTITLEMENT: RUN --security=insecure needs the security\.insecure entitlement/);
  t.regex(r.stderr, /--allow security\.insecure/);
  t.false(r.stderr.includes('at '), 'no stack trace');
  const bad = await build(f, 'FROM busybox\n', ['--allow', 'device']);
  t.is(bad.code, 125);
  t.regex(bad.stderr, /CLI_BAD_VALUE: invalid --allow "device"/);
});

testSerialIf(missing, 'tsbuild build: RUN --security=insecure runs privileged and the security mode is part of the cache key when allowed', async (t) => {
  const f = await makeFixture(t);
  const insecure = await build(f, ['FROM busybox', `RUN --security=insecure ${STEP}`, ''].join('\n'), ['-t', 'insecure:1', '--allow', 'security.insecure']);
  t.is(insecure.code, 0, insecure.stderr);
  const dest = await unpackedImage(f, 'insecure:1', 'u1');
  const status = await readUnpacked(dest, 'status');
  t.is(field(status, 'CapEff'), privilegedCaps());
  t.is(field(status, 'NoNewPrivs'), '0');
  t.is(field(status, 'Seccomp'), '0');
  t.is(await readUnpacked(dest, 'mount'), 'mounted\n');
  t.is(await readUnpacked(dest, 'kmsg'), hasChar('/dev/kmsg') ? 'kmsg\n' : 'no-kmsg\n');
  // The same command without --security=insecure is another step: not a cache hit, and sandboxed.
  const plain = await build(f, ['FROM busybox', `RUN ${STEP}`, ''].join('\n'), ['-t', 'plain:1', '--allow', 'security.insecure']);
  t.is(plain.code, 0, plain.stderr);
  t.deepEqual(stepsOf(plain.events).cached, [], 'the sandboxed RUN did not hit the insecure one');
  const dest2 = await unpackedImage(f, 'plain:1', 'u2');
  t.not(field(await readUnpacked(dest2, 'status'), 'CapEff'), privilegedCaps());
  t.is(field(await readUnpacked(dest2, 'status'), 'Seccomp'), '2', 'a sandboxed RUN has docker\'s default seccomp filter');
  t.is(await readUnpacked(dest2, 'mount'), 'refused\n');
  t.is(await readUnpacked(dest2, 'kmsg'), 'no-kmsg\n');
  // Built again with the flag: a hit.
  const again = await build(f, ['FROM busybox', `RUN --security=insecure ${STEP}`, ''].join('\n'), ['-t', 'insecure:2', '--allow', 'security.insecure']);
  t.is(again.code, 0, again.stderr);
  t.is(stepsOf(again.events).cached.length, 1);
});


testIf(rootlessWhy, 'tsbuild build rootless: RUN --security=insecure gets every capability of the user namespace and mounts a tmpfs when allowed', async (t) => {
  const { home, root } = await rootlessBusyboxStore(t, 'tsbuild-insecure-rootless-');
  const context = join(home, 'ctx');
  await mkdir(context);
  await writeFile(join(context, 'Dockerfile'), `FROM busybox\nRUN --security=insecure ${STEP}\n`);
  const denied = await cliAsUser(home, root, ['build', '--progress=plain', '.'], { cwd: context });
  t.not(denied.code, 0);
  t.regex(denied.stderr, /Dockerfile:2: SOLVE_ENTITLEMENT/);
  const out = join(home, 'out');
  const r = await cliAsUser(home, root, ['build', '--progress=plain', '--allow', 'security.insecure', '-o', `type=local,dest=${out}`, '.'], { cwd: context });
  t.is(r.code, 0, r.stderr);
  const status = await readFile(join(out, 'status'), 'utf8');
  t.is(field(status, 'CapEff'), knownCaps().toString(16).padStart(16, '0'));
  t.is(field(status, 'NoNewPrivs'), '0');
  t.is(await readFile(join(out, 'mount'), 'utf8'), 'mounted\n');
  t.is(await readFile(join(out, 'kmsg'), 'utf8'), hasChar('/dev/kmsg') ? 'kmsg\n' : 'no-kmsg\n');
});
