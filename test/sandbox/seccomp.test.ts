import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { testIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { createRunSpec, type RunSpecOptions } from '../../src/sandbox/spec.js';
import { assertNoLeftoverMounts, notRoot, rootSandbox, runCaptured } from './sandbox-helpers.js';

const missing = notRoot() ?? busyboxMissing() ?? ((): string | undefined => {
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'no C compiler for the probe (apt-get install gcc libc6-dev)';
  }
})();

// A static probe: each line is "NAME ERRNO" (0 = the call succeeded), made with raw system calls so
// that libc's fallbacks do not hide what the filter answered. i386 calls go through int $0x80
// (arch AUDIT_ARCH_I386 from a 64-bit process), each in a child of its own: where the machine has no
// usable i386 entry (some paravirtualised guests fault on int $0x80) the line says "-SIGNAL" instead
// of ending the probe. x32 calls go through the 0x40000000 bit.
const PROBE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static void show(const char *name, long r) { printf("%s %d\n", name, r < 0 ? errno : 0); }
static long i386_call(long nr, long a, long b) { long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory"); return r; }
static void i386_show(const char *name, long nr, long a, long b) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    long r = i386_call(nr, a, b);
    printf("%s %ld\n", name, r < 0 ? -r : 0);
    fflush(stdout);
    _exit(0);
  }
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  if (pid < 0 || WIFSIGNALED(status)) printf("%s %d\n", name, pid < 0 ? -1000 : -WTERMSIG(status));
}
int main(void) {
  show("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0, 0, 0));
  show("unshare-user", syscall(SYS_unshare, CLONE_NEWUSER));
  show("unshare-uts", syscall(SYS_unshare, CLONE_NEWUTS));
  show("clone3", syscall(SYS_clone3, 0, 0));
  long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, 0, 0);
  show("clone-newuser", pid);
  pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, 0, 0);
  show("clone-plain", pid);
  show("io_uring_setup", syscall(425, 1, 0));
  show("x32-getpid", syscall(0x40000000 | SYS_getpid));
  i386_show("i386-keyctl", 288 /* keyctl */, 0, -3);
  i386_show("i386-getpid", 20 /* getpid */, 0, 0);
  return 0;
}
`;

/** What the probe reports run on the host, outside any sandbox (`i386-getpid` 0: this machine makes i386 system calls). */
let hostProbe: Record<string, number> | undefined;

async function setup(t: Parameters<typeof tempDir>[0]): Promise<(o: Omit<RunSpecOptions, 'root'>) => ReturnType<typeof runCaptured>> {
  const dir = await tempDir(t, 'tsbuild-seccomp-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  await writeFile(join(dir, 'probe.c'), PROBE);
  execFileSync('cc', ['-O2', '-static', '-o', join(rootfs, 'probe'), join(dir, 'probe.c')]);
  hostProbe ??= results(execFileSync(join(rootfs, 'probe'), { encoding: 'utf8' }));
  assertNoLeftoverMounts(t, [dir]);
  const sandbox = rootSandbox(join(dir, 'state'));
  return (o) => runCaptured(sandbox, createRunSpec({ root: { path: rootfs }, ...o }));
}

function results(stdout: string): Record<string, number> {
  return Object.fromEntries(stdout.trim().split('\n').map((l) => l.split(' ')).map(([k, v]) => [k as string, Number(v)]));
}

const EPERM = 1;
const ENOSYS = 38;
const statusField = (text: string, field: string): string => new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(text)?.[1] ?? '';

testIf(missing, 'seccomp: the default filter refuses what docker\'s default profile refuses (keyring, namespaces, io_uring, i386 and x32 included) and lets the rest run', async (t) => {
  const run = await setup(t);
  const r = await run({ args: ['/probe'] });
  t.is(r.exitCode, 0, r.stderr);
  const got = results(r.stdout);
  t.is(got.keyctl, EPERM);
  t.is(got['unshare-user'], EPERM);
  t.is(got['unshare-uts'], EPERM);
  t.is(got.clone3, ENOSYS, 'clone3: ENOSYS, so libc falls back to clone, whose flags the filter can see');
  t.is(got['clone-newuser'], EPERM);
  t.is(got['clone-plain'], 0);
  t.is(got.io_uring_setup, EPERM);
  t.is(got['x32-getpid'], ENOSYS);
  if (hostProbe?.['i386-getpid'] === 0) {
    t.is(got['i386-keyctl'], EPERM);
    t.is(got['i386-getpid'], 0);
  } else {
    // No i386 entry on this machine (int $0x80 faults outside the sandbox too): the filter's i386 check is not
    // exercised, and no i386 call gets through it either.
    t.log(`this machine makes no i386 system calls (host probe: i386-getpid ${String(hostProbe?.['i386-getpid'])}): the filter's i386 check was not exercised`);
    t.is(got['i386-keyctl'], hostProbe?.['i386-keyctl']);
    t.true((got['i386-keyctl'] ?? 0) < 0, 'no i386 keyctl ran');
  }
  const status = await run({ args: ['cat', '/proc/self/status'] });
  t.is(statusField(status.stdout, 'Seccomp'), '2');
  const sh = await run({ args: ['sh', '-c', 'unshare -U true'] });
  t.not(sh.exitCode, 0);
  t.regex(sh.stderr, /Operation not permitted/);
});

testIf(missing, 'seccomp: CAP_SYS_ADMIN allows namespaces and mounts (as docker\'s profile), and unconfined or privileged sandboxes have no filter', async (t) => {
  const run = await setup(t);
  const admin = results((await run({ args: ['/probe'], capAdd: ['SYS_ADMIN'] })).stdout);
  t.is(admin['unshare-uts'], 0);
  t.is(admin.keyctl, EPERM, 'the keyring stays closed whatever the capabilities');
  for (const o of [{ seccomp: 'unconfined' as const }, { privileged: true }]) {
    const r = await run({ args: ['/probe'], ...o });
    const got = results(r.stdout);
    t.not(got['unshare-user'], EPERM, JSON.stringify(o));
    t.not(got.clone3, ENOSYS, JSON.stringify(o));
    // The filtered x32 answer (ENOSYS) only shows the filter's x32 check on a kernel with the x32 ABI.
    if ('seccomp' in o) t.log(got['x32-getpid'] === 0 ? 'this kernel runs x32 calls: the filter\'s x32 check was exercised' : 'this kernel has no x32 ABI: the x32 assertion holds without the filter too');
    const status = await run({ args: ['cat', '/proc/self/status'], ...o });
    t.is(statusField(status.stdout, 'Seccomp'), '0', JSON.stringify(o));
  }
});
