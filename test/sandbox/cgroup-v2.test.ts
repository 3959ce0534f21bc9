import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, rmdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupStaleCgroups, createCgroup } from '../../src/sandbox/cgroup.js';
import type { CgroupOptions } from '../../src/sandbox/cgroup.js';
import { readProcessIdentity } from '../../src/sandbox/cgroup-detect.js';
import type { CgroupV2 } from '../../src/sandbox/cgroup-v2.js';
import { testSerialIf } from '../helpers/capability.js';
import { BUSYBOX, ownedCgroupDirs, spawnWorkload } from './cgroup-helpers.js';

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

testSerialIf(skip, 'createCgroup: a rootless user gets a cgroup in its delegated v2 subtree when it owns it', async (t) => {
  // Simulate systemd's Delegate=yes: a cgroup owned by "nobody" (the directory, cgroup.procs, subtree_control, threads).
  const delegated = join(V2_ROOT, `tsbuild-test-delegate-${process.pid}`);
  await mkdir(delegated);
  t.teardown(async () => {
    for (const d of [join(delegated, 'tsbuild'), join(delegated, 'tsbuild-init'), delegated]) await rmdir(d).catch(() => undefined);
  });
  for (const p of [delegated, ...['cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads'].map((f) => join(delegated, f))]) await chown(p, 65534, 65534);
  const script = fileURLToPath(new URL('./cgroup-rootless-child.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, V2_ROOT], { uid: 65534, gid: 65534, cwd: fileURLToPath(new URL('../../', import.meta.url)), stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
  child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
  const exited = new Promise((r) => child.once('exit', r));
  await writeFile(join(delegated, 'cgroup.procs'), String(child.pid));
  child.stdin.end('go\n');
  await exited;
  const report = JSON.parse(out.trim() || '{}') as { dir?: string; warnings?: string[]; procs?: string; sleeper?: number; self?: string; killed?: string; error?: string };
  t.is(report.error, undefined, err);
  t.true(report.dir?.startsWith(join(delegated, 'tsbuild', 'deleg.owner-')), report.dir);
  t.is(report.procs, String(report.sleeper));
  t.is(report.self, `0::/tsbuild-test-delegate-${process.pid}/tsbuild-init`, 'tsbuild moved itself out of the delegated root');
  t.is(report.killed, 'SIGKILL');
  if (!available.includes('pids')) t.true(report.warnings?.some((w) => /pids/.test(w)), JSON.stringify(report.warnings));
  t.false(existsSync(report.dir as string));
});

testSerialIf(skip, 'createCgroup: undefined and a warning naming the subtree when a rootless user does not own its v2 cgroup', async (t) => {
  const script = fileURLToPath(new URL('./cgroup-rootless-child.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, V2_ROOT], { uid: 65534, gid: 65534, cwd: fileURLToPath(new URL('../../', import.meta.url)), stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
  const exited = new Promise((r) => child.once('exit', r));
  child.stdin.end('go\n');
  await exited;
  const report = JSON.parse(out.trim() || '{}') as { warnings?: string[] };
  t.is(report.warnings?.length, 1);
  t.regex(report.warnings?.[0] ?? '', /without resource limits: the cgroup v2 subtree \/.* is not delegated to this user/);
});
