import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTsbuildError } from '../../src/core/index.js';
import { cleanupStaleCgroups, createCgroup } from '../../src/sandbox/cgroup.js';
import { detectCgroupMode, readProcessIdentity } from '../../src/sandbox/cgroup-detect.js';
import type { Cgroup } from '../../src/sandbox/cgroup-types.js';
import type { CgroupV1 } from '../../src/sandbox/cgroup-v1.js';
import { testSerialIf } from '../helpers/capability.js';
import { CGROUP_ROOTS, ownedCgroupDirs, spawnWorkload, v1Unavailable, waitFor } from './cgroup-helpers.js';

const MiB = 1024 * 1024;
const skip = v1Unavailable();
let counter = 0;

function uniqueName(): string {
  counter += 1;
  return `test-${counter}`;
}

function dirsOf(cg: Cgroup): Map<string, string> {
  return new Map((cg as CgroupV1).directories);
}

function read(dir: string, file: string): string {
  return readFileSync(join(dir, file), 'utf8').trim();
}

/** Creates a v1 cgroup that is destroyed at teardown, then checked gone. */
async function makeCgroup(t: ExecutionContext, limits: Parameters<typeof createCgroup>[1], warnings: string[] = []): Promise<{ cg: Cgroup; dirs: Map<string, string> }> {
  const cg = await createCgroup(uniqueName(), limits, { rootless: false, onWarning: (m) => warnings.push(m) });
  if (cg === undefined) throw new Error('no cgroup');
  const dirs = dirsOf(cg);
  t.teardown(async () => {
    await cg.destroy();
  });
  return { cg, dirs };
}

test.after.always('cgroup: no cgroup of this test process is left when all tests ended', (t) => {
  t.deepEqual(ownedCgroupDirs(CGROUP_ROOTS), []);
});

test('detectCgroupMode: reports the layout when run on this machine', async (t) => {
  const mode = await detectCgroupMode();
  const expected = existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : existsSync('/sys/fs/cgroup/unified/cgroup.controllers') ? 'hybrid' : 'v1';
  t.is(mode, expected);
});

test('createCgroup: returns undefined with one warning naming why when rootless on cgroup v1', async (t) => {
  const warnings: string[] = [];
  const cg = await createCgroup('rootless', { memory: 64 * MiB, pidsLimit: 10 }, { rootless: true, mode: 'hybrid', onWarning: (m) => warnings.push(m) });
  t.is(cg, undefined);
  t.is(warnings.length, 1);
  t.regex(warnings[0] ?? '', /without resource limits: cgroups hybrid cannot be delegated to an unprivileged user/);
  t.deepEqual(ownedCgroupDirs(CGROUP_ROOTS), []);
});

test('createCgroup: SANDBOX_BAD_LIMIT before touching cgroupfs when a limit is invalid', async (t) => {
  const err = await t.throwsAsync(createCgroup('bad', { memory: 1000 }, { rootless: false }));
  t.true(isTsbuildError(err, 'SANDBOX_BAD_LIMIT'));
});

testSerialIf(skip, 'cgroup v1: every limit is written and reads back when all are set', async (t) => {
  const { dirs } = await makeCgroup(t, { memory: 64 * MiB, memorySwap: 128 * MiB, memoryReservation: 32 * MiB, oomKillDisable: true, cpus: 0.5, cpuShares: 512, cpusetCpus: '0', pidsLimit: 20 });
  const memory = dirs.get('memory') as string;
  t.is(read(memory, 'memory.limit_in_bytes'), String(64 * MiB));
  if (existsSync(join(memory, 'memory.memsw.limit_in_bytes'))) t.is(read(memory, 'memory.memsw.limit_in_bytes'), String(128 * MiB));
  t.is(read(memory, 'memory.soft_limit_in_bytes'), String(32 * MiB));
  t.regex(read(memory, 'memory.oom_control'), /^oom_kill_disable 1$/m);
  t.is(read(dirs.get('cpu') as string, 'cpu.cfs_quota_us'), '50000');
  t.is(read(dirs.get('cpu') as string, 'cpu.cfs_period_us'), '100000');
  t.is(read(dirs.get('cpu') as string, 'cpu.shares'), '512');
  t.is(read(dirs.get('cpuset') as string, 'cpuset.cpus'), '0');
  t.is(read(dirs.get('cpuset') as string, 'cpuset.mems'), read('/sys/fs/cgroup/cpuset', 'cpuset.mems'));
  t.is(read(dirs.get('pids') as string, 'pids.max'), '20');
  for (const [controller, dir] of dirs) t.true(dir.startsWith(`/sys/fs/cgroup/${controller}/tsbuild/test-`), dir);
});

testSerialIf(skip, 'cgroup v1: the cpu and cpuset hierarchies are joined only for their limits when created', async (t) => {
  const plain = dirsOf((await makeCgroup(t, { pidsLimit: 20 })).cg);
  for (const c of ['memory', 'cpuacct', 'pids', 'freezer']) t.true(plain.has(c), c);
  const cpuDir = plain.get('cpu');
  // cpu may share cpuacct's directory (co-mounted): then it is there because cpuacct is.
  t.true(cpuDir === undefined || cpuDir === plain.get('cpuacct'), `cpu: ${String(cpuDir)}`);
  t.false(plain.has('cpuset'));
  const limited = dirsOf((await makeCgroup(t, { cpus: 0.5, cpusetCpus: '0' })).cg);
  t.true(limited.has('cpu'));
  t.true(limited.has('cpuset'));
});

testSerialIf(skip, 'cgroup v1: SANDBOX_BAD_LIMIT and nothing left behind when the cpuset names a missing CPU', async (t) => {
  const err = await t.throwsAsync(createCgroup(uniqueName(), { cpusetCpus: '0-4095' }, { rootless: false }));
  t.true(isTsbuildError(err, 'SANDBOX_BAD_LIMIT'));
  t.regex(err?.message ?? '', /requested CPUs are not available/);
  t.deepEqual(ownedCgroupDirs(CGROUP_ROOTS), []);
});

testSerialIf(skip, 'cgroup v1: a process is accounted and its dirs removed when added and destroyed', async (t) => {
  const { cg, dirs } = await makeCgroup(t, { memory: 64 * MiB });
  const w = spawnWorkload(t, 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; x=$(head -c 4000000 /dev/zero | tr "\\0" a); exit 3');
  await cg.addProcess(w.pid);
  for (const dir of new Set(dirs.values())) t.true(read(dir, 'cgroup.procs').split('\n').includes(String(w.pid)), dir);
  w.go();
  t.is((await w.exited).code, 3);
  const usage = await cg.usage();
  t.true(usage.cpuUsageNs > 1_000_000, `cpu ${usage.cpuUsageNs}`);
  t.true(usage.memoryPeakBytes > 4_000_000, `peak ${usage.memoryPeakBytes}`);
  t.false(usage.oomKilled);
  await cg.destroy();
  for (const dir of dirs.values()) t.false(existsSync(dir), dir);
  await cg.destroy();
});

testSerialIf(skip, 'cgroup v1: a memory hog is OOM-killed and reported when over the limit', async (t) => {
  const { cg } = await makeCgroup(t, { memory: 16 * MiB, memorySwap: 16 * MiB });
  const w = spawnWorkload(t, 'x=$(tr "\\0" a < /dev/zero); echo never');
  await cg.addProcess(w.pid);
  w.go();
  const exit = await w.exited;
  t.is(exit.signal, 'SIGKILL');
  const usage = await cg.usage();
  t.true(usage.oomKilled);
  t.true(usage.memoryPeakBytes >= 15 * MiB && usage.memoryPeakBytes <= 16 * MiB, `peak ${usage.memoryPeakBytes}`);
});

testSerialIf(skip, 'cgroup v1: a fork bomb is capped by pids.max and fully killed when destroyed', async (t) => {
  const { cg, dirs } = await makeCgroup(t, { pidsLimit: 16, cpus: 1 });
  const pids = dirs.get('pids') as string;
  const refused = (): number => Number(/max (\d+)/.exec(read(pids, 'pids.events'))?.[1] ?? 0);
  const w = spawnWorkload(t, 'f() { f & f; }; f');
  await cg.addProcess(w.pid);
  w.go();
  t.true(await waitFor(() => refused() > 0), 'the bomb hits the limit: forks are refused');
  for (let i = 0; i < 10; i++) {
    t.true(Number(read(pids, 'pids.current')) <= 16);
    await sleep(30);
  }
  // The host stays responsive: a fresh process outside the cgroup starts and exits.
  const probe = spawn('/bin/true');
  t.is(await new Promise((r) => probe.on('exit', r)), 0);
  await cg.destroy();
  t.false(existsSync(pids));
  await w.exited;
});

testSerialIf(skip, 'cgroup v1: a cpu quota of 0.5 holds two busy loops near half a CPU when measured', async (t) => {
  const { cg } = await makeCgroup(t, { cpus: 0.5 });
  const w = spawnWorkload(t, 'while :; do :; done & while :; do :; done');
  await cg.addProcess(w.pid);
  w.go();
  await sleep(300); // let both loops start
  const before = (await cg.usage()).cpuUsageNs;
  const t0 = process.hrtime.bigint();
  await sleep(2000);
  const cpuNs = (await cg.usage()).cpuUsageNs - before;
  const wallNs = Number(process.hrtime.bigint() - t0);
  const ratio = cpuNs / wallNs;
  t.log(`cpu/wall = ${ratio.toFixed(3)} (limit 0.5, unlimited would be up to 2)`);
  t.true(ratio > 0.05 && ratio < 0.7, `ratio ${ratio}`);
});

testSerialIf(skip, 'cgroup v1: a frozen busy loop uses no CPU until thawed when frozen', async (t) => {
  const { cg, dirs } = await makeCgroup(t, {});
  const w = spawnWorkload(t, 'while :; do :; done');
  await cg.addProcess(w.pid);
  w.go();
  await sleep(100);
  await cg.freeze();
  t.is(read(dirs.get('freezer') as string, 'freezer.state'), 'FROZEN');
  const a = (await cg.usage()).cpuUsageNs;
  await sleep(300);
  const b = (await cg.usage()).cpuUsageNs;
  t.is(b, a);
  await cg.thaw();
  t.is(read(dirs.get('freezer') as string, 'freezer.state'), 'THAWED');
  await sleep(300);
  t.true((await cg.usage()).cpuUsageNs > b);
});

testSerialIf(skip, 'cleanupStaleCgroups: removes cgroups and kills processes when their owner was SIGKILLed', async (t) => {
  const ownerProc = spawn('/bin/sleep', ['60']);
  t.teardown(() => ownerProc.kill('SIGKILL'));
  const owner = await readProcessIdentity(ownerProc.pid as number);
  if (owner === undefined) throw new Error('owner vanished');
  const stale = await createCgroup('stale', { pidsLimit: 10 }, { rootless: false, owner });
  const live = await createCgroup('live', { pidsLimit: 10 }, { rootless: false });
  const reused = await createCgroup('reused', {}, { rootless: false, owner: { pid: process.pid, startTime: 1 } });
  if (stale === undefined || live === undefined || reused === undefined) throw new Error('no cgroup');
  t.teardown(async () => {
    await stale.destroy();
    await live.destroy();
    await reused.destroy();
  });
  const w = spawnWorkload(t, 'sleep 60');
  await stale.addProcess(w.pid);
  w.go();
  ownerProc.kill('SIGKILL');
  await new Promise((r) => ownerProc.on('exit', r));
  const removed = await cleanupStaleCgroups({ rootless: false });
  const staleDirs = [...new Set(dirsOf(stale).values())];
  const reusedDirs = [...new Set(dirsOf(reused).values())];
  // Other tsbuild processes (tests running in parallel: every sandbox start and `rm` run this cleanup
  // too) may have removed some of them first, so the outcome is checked, not who removed what.
  const liveDirs = [...dirsOf(live).values()];
  t.false(removed.some((d) => liveDirs.includes(d)), 'a live owner\'s cgroup is never removed');
  for (const d of [...staleDirs, ...reusedDirs]) t.false(existsSync(d), d);
  for (const d of dirsOf(live).values()) t.true(existsSync(d), `live owner kept: ${d}`);
  t.is((await w.exited).signal, 'SIGKILL');
});

testSerialIf(skip, 'cleanupStaleCgroups: counts a zombie owner as gone and takes only that owner\'s cgroups when ownerPid is given', async (t) => {
  // `sleep 60` is the parent of an exited, never-reaped child: that child stays a zombie with its start time.
  const parent = spawn('/bin/sh', ['-c', '/bin/true & exec /bin/sleep 60']);
  t.teardown(() => parent.kill('SIGKILL'));
  let zombiePid = 0;
  t.true(await waitFor(() => {
    const children = readFileSync(`/proc/${parent.pid as number}/task/${parent.pid as number}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '');
    zombiePid = Number(children[0] ?? 0);
    return zombiePid > 0 && /\) Z /.test(readFileSync(`/proc/${zombiePid}/stat`, 'utf8'));
  }), 'the child became a zombie');
  const zombie = await readProcessIdentity(zombiePid);
  const otherOwner = spawn('/bin/sleep', ['60']);
  t.teardown(() => otherOwner.kill('SIGKILL'));
  const other = await readProcessIdentity(otherOwner.pid as number);
  if (zombie === undefined || other === undefined) throw new Error('owner vanished');
  const ofZombie = await createCgroup('zombie-owner', {}, { rootless: false, owner: zombie });
  const ofOther = await createCgroup('other-owner', {}, { rootless: false, owner: other });
  if (ofZombie === undefined || ofOther === undefined) throw new Error('no cgroup');
  t.teardown(async () => {
    await ofZombie.destroy();
    await ofOther.destroy();
  });
  otherOwner.kill('SIGKILL');
  await new Promise((r) => otherOwner.on('exit', r));
  const removed = await cleanupStaleCgroups({ rootless: false, ownerPid: zombie.pid });
  // Other tsbuild processes (tests running in parallel: every sandbox start sweeps stale cgroups
  // too) may remove the zombie's cgroups first: the outcome is checked, not who removed them.
  for (const d of new Set(dirsOf(ofZombie).values())) t.false(existsSync(d), d);
  t.false(removed.some((d) => [...dirsOf(ofOther).values()].includes(d)), 'another dead owner\'s cgroup is not taken when ownerPid names one owner');
});
