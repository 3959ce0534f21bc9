import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { isTsbuildError } from '../../src/core/index.js';
import { runWithOciRuntime } from '../../src/sandbox/oci-runtime.js';
import type { OciRunResult } from '../../src/sandbox/oci-runtime.js';
import type { SandboxStdio } from '../../src/sandbox/sandbox.js';
import { createRunSpec, type RunSpecOptions } from '../../src/sandbox/spec.js';
import { testSerialIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { CGROUP_ROOTS, ownedCgroupDirs } from './cgroup-helpers.js';
import { mountsUnder } from './sandbox-helpers.js';

function runcMissing(): string | undefined {
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'runc is not installed (apt-get install runc)';
  }
}
const missing = (process.getuid?.() === 0 ? undefined : 'runc tests need root') ?? busyboxMissing() ?? runcMissing();

interface Setup {
  dir: string;
  rootfs: string;
  state: string;
  run(o: Omit<RunSpecOptions, 'root'> & { root?: RunSpecOptions['root'] }, stdin?: SandboxStdio['stdin'], signal?: AbortSignal): Promise<OciRunResult & { stdout: string; stderr: string }>;
}

/** A busybox rootfs; asserts at teardown that no mount, cgroup, runc state or container process is left. */
async function setup(t: Parameters<typeof tempDir>[0]): Promise<Setup> {
  const dir = await tempDir(t, 'tsbuild-oci-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  const state = join(dir, 'state');
  t.teardown(() => {
    const left = [...mountsUnder([dir]), ...ownedCgroupDirs(CGROUP_ROOTS), ...(existsSync(state) ? readdirSync(state) : [])];
    if (left.length > 0) throw new Error(`left behind: ${left.join(', ')}`);
  });
  return {
    dir, rootfs, state,
    async run(o, stdin, signal) {
      const out = new PassThrough();
      const err = new PassThrough();
      let stdout = '';
      let stderr = '';
      out.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
      err.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
      const spec = createRunSpec({ root: { path: rootfs }, ...o });
      const r = await runWithOciRuntime('runc', spec, { stdout: out, stderr: err, ...(stdin === undefined ? {} : { stdin }) }, signal, { stateDir: state, ownerPid: process.pid, rootless: false });
      return { ...r, stdout, stderr };
    },
  };
}

testSerialIf(missing, 'runWithOciRuntime: exit code, stdout, hostname and init files pass through when runc runs the spec', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'hostname; tail -n1 /etc/hosts; echo oops >&2; exit 7'], hostname: 'oci-probe' });
  t.is(r.exitCode, 7);
  t.is(r.signal, undefined);
  t.deepEqual(r.stdout.split('\n'), ['oci-probe', '127.0.1.1\toci-probe', '']);
  t.regex(r.stderr, /oops/);
});

testSerialIf(missing, 'runWithOciRuntime: stdin is forwarded when given a stream', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'tr a-z A-Z'] }, Readable.from(['hello\n']));
  t.is(r.exitCode, 0);
  t.is(r.stdout, 'HELLO\n');
});

testSerialIf(missing, 'runWithOciRuntime: SANDBOX_COMMAND_NOT_FOUND with exit 127 when the command is not in the rootfs', async (t) => {
  const { run } = await setup(t);
  const err = await t.throwsAsync(run({ args: ['no-such-command'] }));
  t.true(isTsbuildError(err, 'SANDBOX_COMMAND_NOT_FOUND'));
  t.is((err as { exitCode?: number }).exitCode, 127);
});

testSerialIf(missing, 'runWithOciRuntime: SANDBOX_ROOTFS_NOT_FOUND when the rootfs does not exist', async (t) => {
  const { run, dir } = await setup(t);
  const err = await t.throwsAsync(run({ args: ['true'], root: { path: join(dir, 'missing') } }));
  t.true(isTsbuildError(err, 'SANDBOX_ROOTFS_NOT_FOUND'));
});

testSerialIf(missing, 'runWithOciRuntime: SANDBOX_RUNTIME_NOT_FOUND when the runtime does not exist', async (t) => {
  const { rootfs, state } = await setup(t);
  const spec = createRunSpec({ root: { path: rootfs }, args: ['true'] });
  const err = await t.throwsAsync(runWithOciRuntime('/nonexistent/runc', spec, {}, undefined, { stateDir: state, ownerPid: process.pid, rootless: false }));
  t.true(isTsbuildError(err, 'SANDBOX_RUNTIME_NOT_FOUND'));
});

testSerialIf(missing, 'runWithOciRuntime: the container and its state are gone when the signal aborts it', async (t) => {
  const { run } = await setup(t);
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(new Error('test timeout')), 500);
  const err = await t.throwsAsync(run({ args: ['sh', '-c', 'sleep 1000 & sleep 1000'] }, undefined, ac.signal));
  t.true(isTsbuildError(err, 'SANDBOX_ABORTED'));
  t.true(Date.now() - started < 30_000);
  t.is(execFileSync('sh', ['-c', 'pgrep -f "^sleep 1000$" || true'], { encoding: 'utf8' }).trim(), '');
});

testSerialIf(missing, 'runWithOciRuntime: an overlay root is writable and invisible on the host when the root is an overlay', async (t) => {
  const { run, dir, rootfs } = await setup(t);
  const upper = join(dir, 'upper');
  const work = join(dir, 'work');
  await mkdir(upper);
  await mkdir(work);
  const r = await run({ args: ['sh', '-c', 'echo layered > /made-here; cat /made-here'], root: { overlay: { lowerdirs: [rootfs], upperdir: upper, workdir: work } } });
  t.is(r.exitCode, 0, r.stderr);
  t.is(r.stdout, 'layered\n');
  t.is(readFileSync(join(upper, 'made-here'), 'utf8'), 'layered\n');
  t.false(existsSync(join(rootfs, 'made-here')));
});

testSerialIf(undefined, 'runWithOciRuntime: not supported yet when rootless', async (t) => {
  const spec = createRunSpec({ root: { path: '/' }, args: ['true'] });
  const err = await t.throwsAsync(runWithOciRuntime('runc', spec, {}, undefined, { stateDir: '/nonexistent', ownerPid: process.pid, rootless: true }));
  t.true(isTsbuildError(err, 'CLI_NOT_SUPPORTED'));
});

testSerialIf(missing, 'runWithOciRuntime: an OOM kill is reported with the limit when the container exceeds its memory', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'x=a; while true; do x=$x$x; done'], resources: { memory: { limit: 16 * 1024 * 1024, swap: 16 * 1024 * 1024 } } });
  t.is(r.exitCode, 137);
  t.true(r.oomKilled);
  t.is(r.reason, 'killed: out of memory, limit 16 MiB');
  t.true((r.usage?.memoryPeakBytes ?? 0) > 15 * 1024 * 1024);
});

testSerialIf(missing, 'runWithOciRuntime: cgroup accounting is returned and oomKilled is false when the process exits normally', async (t) => {
  const { run } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'], resources: { pids: { limit: 20 } } });
  t.is(r.exitCode, 0, r.stderr);
  t.false(r.oomKilled);
  t.is(r.reason, undefined);
  t.true((r.usage?.cpuUsageNs ?? 0) > 1_000_000);
});
