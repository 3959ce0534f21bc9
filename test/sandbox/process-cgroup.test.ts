import type { ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createCgroup, type CgroupOptions } from '../../src/sandbox/cgroup.js';
import type { Cgroup } from '../../src/sandbox/cgroup-types.js';
import { isCgroupFrozen, isProcessFrozen, listCgroupProcesses, openProcessCgroup, readCgroupStats, thawProcessCgroup } from '../../src/sandbox/process-cgroup.js';
import { testSerialIf } from '../helpers/capability.js';
import { spawnWorkload, v1Unavailable } from './cgroup-helpers.js';

const V2_ROOT = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
const v2Skip = process.getuid?.() !== 0 ? 'cgroup tests need root' : !existsSync(join(V2_ROOT, 'cgroup.freeze')) && !existsSync(join(V2_ROOT, 'cgroup.controllers')) ? 'no cgroup v2 hierarchy mounted' : undefined;

async function within(cgroup: Cgroup | undefined, t: ExecutionContext): Promise<Cgroup> {
  if (cgroup === undefined) throw new Error('no cgroup');
  t.teardown(() => cgroup.destroy());
  return cgroup;
}

testSerialIf(v1Unavailable(), 'process cgroup v1: found from the pid, accounted, frozen and thawed when a sandbox process runs in it', async (t) => {
  const cgroup = await within(await createCgroup('pc-v1', { memory: 64 * 1024 * 1024 }, { rootless: false }), t);
  const w = spawnWorkload(t, 'while :; do :; done');
  await cgroup.addProcess(w.pid);
  w.go();
  const found = await openProcessCgroup(w.pid, { rootless: false });
  t.truthy(found, 'the cgroup is found from /proc/PID/cgroup');
  t.deepEqual(await listCgroupProcesses(found as Cgroup), [w.pid]);
  const stats = await readCgroupStats(found as Cgroup);
  t.is(stats.memoryLimitBytes, 64 * 1024 * 1024);
  t.is(stats.pids, 1);
  t.is(await openProcessCgroup(process.pid, { rootless: false }), undefined, 'a process outside sandbox cgroups has none');
  await cgroup.freeze();
  t.true(isProcessFrozen(w.pid));
  t.true(await isCgroupFrozen(found as Cgroup));
  const before = (await readCgroupStats(cgroup)).cpuUsageNs;
  await new Promise((r) => setTimeout(r, 200));
  t.is((await readCgroupStats(cgroup)).cpuUsageNs, before, 'no CPU time while frozen');
  await thawProcessCgroup(w.pid);
  t.false(isProcessFrozen(w.pid));
  t.false(isProcessFrozen(process.pid));
  await thawProcessCgroup(process.pid); // no sandbox cgroup: nothing happens
});

testSerialIf(v2Skip, 'process cgroup v2: frozen state and CPU accounting when a process runs in a v2 sandbox cgroup', async (t) => {
  const options: CgroupOptions = { rootless: false, mode: 'v2', root: V2_ROOT };
  const cgroup = await within(await createCgroup('pc-v2', {}, options), t);
  const w = spawnWorkload(t, 'while :; do :; done');
  await cgroup.addProcess(w.pid);
  w.go();
  t.deepEqual(await listCgroupProcesses(cgroup), [w.pid]);
  for (let i = 0; i < 500 && (await readCgroupStats(cgroup)).cpuUsageNs === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.true((await readCgroupStats(cgroup)).cpuUsageNs > 0);
  t.false(isProcessFrozen(w.pid));
  await cgroup.freeze();
  t.true(isProcessFrozen(w.pid));
  t.true(await isCgroupFrozen(cgroup));
  await thawProcessCgroup(w.pid);
  for (let i = 0; i < 500 && isProcessFrozen(w.pid); i++) await new Promise((r) => setTimeout(r, 20));
  t.false(isProcessFrozen(w.pid));
});
