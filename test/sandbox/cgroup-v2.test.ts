import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupStaleCgroups, createCgroup } from '../../src/sandbox/cgroup.js';
import type { CgroupOptions } from '../../src/sandbox/cgroup.js';
import { readProcessIdentity } from '../../src/sandbox/cgroup-detect.js';
import type { CgroupV2 } from '../../src/sandbox/cgroup-v2.js';
import { testSerialIf } from '../helpers/capability.js';
import { BUSYBOX, ownedCgroupDirs, spawnWorkload } from './cgroup-helpers.js';
import { spawn } from 'node:child_process';

// Real cgroup v2 tests. On a v2 machine they use /sys/fs/cgroup with its controllers; on a hybrid machine they use
// the (controller-less) v2 tree at /sys/fs/cgroup/unified, which still has the core files: cgroup.procs,
// cgroup.freeze, cgroup.kill, cgroup.events and cpu.stat.
const V2_ROOT = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
const skip = process.getuid?.() !== 0 ? 'cgroup tests need root'
  : !existsSync(join(V2_ROOT, 'cgroup.controllers')) ? 'no cgroup v2 hierarchy mounted'
  : !existsSync(BUSYBOX) ? 'busybox-static is not installed' : undefined;
const options: CgroupOptions = { rootless: false, mode: 'v2', root: V2_ROOT };
const available = skip === undefined ? readFileSync(join(V2_ROOT, 'cgroup.controllers'), 'utf8').trim().split(/\s+/) : [];

test.after.always('cgroup v2: no cgroup of this test process is left when all tests ended', (t) => {
  t.deepEqual(ownedCgroupDirs([V2_ROOT]), []);
});

testSerialIf(skip, 'cgroup v2: a process is accounted, frozen, thawed and killed when destroyed', async (t) => {
  const warnings: string[] = [];
  const cg = (await createCgroup('v2-basic', { pidsLimit: 50, memory: 64 * 1024 * 1024 }, { ...options, onWarning: (m) => warnings.push(m) })) as CgroupV2 | undefined;
  if (cg === undefined) throw new Error('no cgroup');
  t.teardown(() => cg.destroy());
  t.true(cg.directory.startsWith(join(V2_ROOT, 'tsbuild', 'v2-basic.owner-')));
  if (available.includes('pids')) {
    t.is(readFileSync(join(cg.directory, 'pids.max'), 'utf8').trim(), '50');
  } else {
    t.true(warnings.some((w) => /controllers .*pids.* are not available/.test(w)), warnings.join('\n'));
  }
  const w = spawnWorkload(t, 'while :; do :; done');
  await cg.addProcess(w.pid);
  t.is(readFileSync(join(cg.directory, 'cgroup.procs'), 'utf8').trim(), String(w.pid));
  w.go();
  await sleep(200);
  await cg.freeze();
  t.regex(readFileSync(join(cg.directory, 'cgroup.events'), 'utf8'), /^frozen 1$/m);
  const a = (await cg.usage()).cpuUsageNs;
  t.true(a > 0, 'cpu.stat accounts the loop');
  await sleep(300);
  t.is((await cg.usage()).cpuUsageNs, a);
  await cg.thaw();
  await sleep(200);
  t.true((await cg.usage()).cpuUsageNs > a);
  await cg.destroy();
  t.false(existsSync(cg.directory));
  t.is((await w.exited).signal, 'SIGKILL');
});

testSerialIf(skip, 'cleanupStaleCgroups: removes a v2 cgroup when its owner is gone', async (t) => {
  const ownerProc = spawn('/bin/sleep', ['60']);
  t.teardown(() => ownerProc.kill('SIGKILL'));
  const owner = await readProcessIdentity(ownerProc.pid as number);
  if (owner === undefined) throw new Error('owner vanished');
  const cg = (await createCgroup('v2-stale', {}, { ...options, owner })) as CgroupV2 | undefined;
  if (cg === undefined) throw new Error('no cgroup');
  t.teardown(() => cg.destroy());
  const w = spawnWorkload(t, 'sleep 60');
  await cg.addProcess(w.pid);
  ownerProc.kill('SIGKILL');
  await new Promise((r) => ownerProc.on('exit', r));
  t.true((await cleanupStaleCgroups(options)).includes(cg.directory));
  t.false(existsSync(cg.directory));
  t.is((await w.exited).signal, 'SIGKILL');
});
