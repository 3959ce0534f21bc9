import test from 'ava';
import { spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { TsbuildError } from '../../src/core/index.js';
import { encodeJoinSpec, joinProcess, type JoinSpec } from '../../src/sandbox/join.js';
import { sandboxCgroupNameOf } from '../../src/sandbox/process-cgroup.js';
import { createCgroup } from '../../src/sandbox/cgroup.js';
import type { Cgroup } from '../../src/sandbox/cgroup-types.js';
import type { CgroupV1 } from '../../src/sandbox/cgroup-v1.js';
import { v1Unavailable } from './cgroup-helpers.js';
import { testIf } from '../helpers/capability.js';
import { ensureLauncher, notRoot } from './sandbox-helpers.js';

const base: JoinSpec = { targetPid: 42, namespaces: ['net'], args: ['/bin/true'], env: ['A=1'], cwd: '/' };

function tokens(spec: JoinSpec): string[] {
  return encodeJoinSpec(spec).toString('utf8').split('\0').slice(0, -1);
}

test('encodeJoinSpec: keeps the credentials when no user is given', (t) => {
  t.deepEqual(tokens(base), ['join', '42', 'ns', 'net', 'detach', '0', 'nnp', '0', 'terminal', '0', 'cwd', '/', 'env', 'A=1', 'arg', '/bin/true']);
});

test('encodeJoinSpec: encodes user, capabilities, rlimits and detach when given', (t) => {
  const out = tokens({ ...base, namespaces: ['user', 'mnt', 'pid'], detach: true, noNewPrivileges: true, user: { uid: 65534, gid: 65534, additionalGids: [1, 2] }, capabilities: ['CAP_CHOWN', 'CAP_KILL'], rlimits: [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 20 }] });
  t.deepEqual(out.slice(0, 10), ['join', '42', 'ns', 'user', 'ns', 'mnt', 'ns', 'pid', 'detach', '1']);
  t.true(out.join(' ').includes('rlimit 7 10 20 caps 33 user 65534 65534 1,2'));
});

test('encodeJoinSpec: a seccomp filter is judged against the given capabilities, also when the credentials are kept', (t) => {
  const out = tokens({ ...base, seccomp: true, capabilities: ['CAP_CHOWN', 'CAP_KILL'] }).join(' ');
  t.true(out.includes('seccomp default'));
  t.true(out.includes('caps 33'));
  t.false(out.includes('user '));
});

test('encodeJoinSpec: rejects what the launcher cannot do safely when the spec is bad', (t) => {
  const bad = (s: JoinSpec): void => {
    const err = t.throws(() => encodeJoinSpec(s));
    t.true(err instanceof TsbuildError && err.code === 'SANDBOX_BAD_SPEC', String(err));
  };
  bad({ ...base, targetPid: 0 });
  bad({ ...base, cwd: 'relative' });
  bad({ ...base, args: [] });
  bad({ ...base, terminal: true });
  bad({ ...base, namespaces: ['bogus' as 'net'] });
  bad({ ...base, env: ['A=\0'] });
});

test('sandboxCgroupNameOf: finds only cgroups tsbuild made when reading /proc/PID/cgroup', (t) => {
  t.is(sandboxCgroupNameOf('4:memory:/tsbuild/sandbox-ab12.owner-7-99\n3:cpuset:/tsbuild/sandbox-ab12.owner-7-99\n0::/\n'), 'sandbox-ab12.owner-7-99');
  t.is(sandboxCgroupNameOf('0::/user.slice/x/tsbuild/sandbox-ab12.owner-7-99\n'), 'sandbox-ab12.owner-7-99');
  t.is(sandboxCgroupNameOf('4:memory:/user.slice/session-1.scope\n0::/\n'), undefined, 'the host\'s own cgroup is never taken');
  t.is(sandboxCgroupNameOf('4:memory:/tsbuild/not-ours\n'), undefined);
  t.is(sandboxCgroupNameOf('4:memory:/other/sandbox-ab12.owner-7-99\n'), undefined);
});

/** Runs `unshare FLAGS sleep 100`; resolves with its pid once it has entered its namespaces. */
async function startUnshared(t: import('ava').ExecutionContext, flags: string[]): Promise<number> {
  const p = spawn('unshare', [...flags, 'sleep', '100'], { stdio: 'ignore' });
  t.teardown(() => { p.kill('SIGKILL'); });
  const pid = p.pid as number;
  for (let i = 0; i < 200; i++) {
    try {
      if (readlinkSync(`/proc/${pid}/exe`).endsWith('/sleep')) return pid;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('unshare did not start');
}

testIf(notRoot(), 'joinProcess: a host command sees only the target\'s network when joining its net namespace alone', async (t) => {
  const launcher = ensureLauncher();
  const pid = await startUnshared(t, ['--net']);
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => { text += c.toString(); });
  const r = await joinProcess(launcher, { targetPid: pid, namespaces: ['net'], args: ['/bin/cat', '/proc/self/net/dev'], env: [], cwd: '/' }, { stdout: out, stderr: 'inherit' });
  t.is(r.exitCode, 0);
  t.false(r.detached);
  const interfaces = text.split('\n').slice(2).filter((l) => l.includes(':')).map((l) => l.split(':')[0]?.trim());
  t.deepEqual(interfaces, ['lo']);
  // The exit code and signals come back.
  t.is((await joinProcess(launcher, { targetPid: pid, namespaces: ['net', 'uts'], args: ['/bin/sh', '-c', 'exit 9'], env: [], cwd: '/' })).exitCode, 9);
  t.is((await joinProcess(launcher, { targetPid: pid, namespaces: ['net'], args: ['/bin/sh', '-c', 'kill -TERM $$'], env: [], cwd: '/' })).exitCode, 143);
});

testIf(notRoot(), 'joinProcess: a clear error when the target process is gone or the command is missing', async (t) => {
  const launcher = ensureLauncher();
  const err = await t.throwsAsync(joinProcess(launcher, { ...base, targetPid: 2 ** 22 + 12345 }));
  t.is((err as TsbuildError).code, 'SANDBOX_JOIN');
  const pid = await startUnshared(t, ['--uts']);
  const missing = await t.throwsAsync(joinProcess(launcher, { targetPid: pid, namespaces: ['uts'], args: ['no-such-command-here'], env: ['PATH=/nonexistent'], cwd: '/' }));
  t.is((missing as TsbuildError).code, 'SANDBOX_COMMAND_NOT_FOUND');
  t.is((missing as TsbuildError).exitCode, 127);
});

testIf(notRoot() ?? v1Unavailable(), 'joinProcess: on cgroup v1 the joining process moves itself into the container\'s cgroup (its tasks files, opened before the namespaces are entered), never attached by us', async (t) => {
  const launcher = ensureLauncher();
  const pid = await startUnshared(t, ['--net', '--mount']);
  const made = await createCgroup(`sandbox-joinself-${process.pid}`, {}, { rootless: false });
  if (made === undefined) throw new Error('no cgroup could be made');
  t.teardown(() => made.destroy());
  // Attaching from here would fail the test: only the process's own join may put it there.
  const cgroup: Cgroup = new Proxy(made, { get: (c, k) => (k === 'addProcess' ? () => Promise.reject(new Error('attached by the caller')) : Reflect.get(c, k, c) as unknown) });
  t.deepEqual(tokens({ ...base, cgroup }).filter((_, i, all) => all[i - 1] === 'cgroup'), made.selfJoinFiles);
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => { text += c.toString(); });
  const r = await joinProcess(launcher, { targetPid: pid, namespaces: ['net', 'mnt'], args: ['/bin/cat', '/proc/self/cgroup'], env: [], cwd: '/', cgroup }, { stdout: out, stderr: 'inherit' });
  t.is(r.exitCode, 0);
  const memory = (made as CgroupV1).directories.get('memory') ?? '';
  t.true(text.split('\n').some((l) => l.includes(':memory:') && memory.endsWith(l.split(':')[2] ?? '\0')), text);
});
