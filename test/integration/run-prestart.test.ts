import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxMissing } from '../helpers/base-image.js';
import { testSerialIf } from '../helpers/capability.js';
import { busyboxContainerStore, cgroupsOwnedBy, childrenNamed } from '../helpers/containers.js';

// `tsbuild run` in the foreground starts its sandbox while it creates the container (Sandbox.prestart):
// the launcher joins the new cgroup itself (a cgroup attach waits for a kernel grace period), its clone
// is born there, then it moves back out. Serial: the assertions look at this process's children and cgroups.

const noBusybox = (await busyboxMissing()) ?? (process.getuid?.() === 0 ? undefined : 'needs root (cgroup v1)');
const V1_MEMORY = '/sys/fs/cgroup/memory';

/** The memory cgroup path of `pid` (v1), or undefined when it is gone or there is no v1 memory hierarchy. */
function memoryCgroupOf(pid: number | 'self'): string | undefined {
  try {
    return /^\d+:memory:(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

async function until<T>(what: string, get: () => T | undefined): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = get();
    if (v !== undefined) return v;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const v1 = (() => {
  try {
    return readdirSync(V1_MEMORY).includes('cgroup.procs') ? undefined : 'no cgroup v1 memory hierarchy';
  } catch {
    return 'no cgroup v1 memory hierarchy';
  }
})();

testSerialIf(noBusybox ?? v1, 'run (foreground): the container\'s process is born in its cgroup, the launcher that cloned it moves back out', async (t) => {
  const { r } = await busyboxContainerStore(t);
  const own = memoryCgroupOf('self');
  const running = r('run', '--rm', '--memory', '64m', 'busybox', 'sleep', '30');
  const launcher = await until('the launcher', () => childrenNamed(process.pid, 'tsbuild-launche')[0]);
  const sleeper = await until('the container\'s process', () => childrenNamed(launcher, 'sleep')[0]);
  const inside = memoryCgroupOf(sleeper) ?? '';
  t.regex(inside, /^\/tsbuild\/sandbox-[0-9a-f]+\.owner-\d+-\d+$/, 'the container runs in its sandbox cgroup');
  t.is(readFileSync(join(V1_MEMORY, inside, 'memory.limit_in_bytes'), 'utf8').trim(), String(64 * 1024 * 1024), 'with its limit');
  await until('the launcher to leave the container\'s cgroup', () => (memoryCgroupOf(launcher) === own ? true : undefined));
  t.false(readFileSync(join(V1_MEMORY, inside, 'cgroup.procs'), 'utf8').split('\n').includes(String(launcher)), 'the cgroup lists the container\'s processes only');
  process.kill(sleeper, 'SIGKILL');
  const res = await running;
  t.is(res.code, 137, res.stderr);
  t.deepEqual(cgroupsOwnedBy(process.pid), [], 'the run removed its cgroup');
});

testSerialIf(noBusybox ?? v1, 'run --pids-limit 1: a container of one process runs (the launcher never counts against the limit)', async (t) => {
  const { r } = await busyboxContainerStore(t);
  const res = await r('run', '--rm', '--pids-limit', '1', 'busybox', 'sh', '-c', 'echo one process');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'one process\n');
  t.deepEqual(cgroupsOwnedBy(process.pid), []);
});

testSerialIf(noBusybox ?? v1, 'run: a container that cannot be created leaves no launcher and no cgroup of its started sandbox', async (t) => {
  const { r } = await busyboxContainerStore(t);
  const res = await r('run', '--rm', 'no-such-image', 'true');
  t.not(res.code, 0);
  t.regex(res.stderr, /STORE_IMAGE_NOT_FOUND.*no-such-image/);
  // The sandbox was started in the background: had the failure not disposed of it, its launcher and cgroup would
  // show up within moments and stay (the launcher waits for a spec while this process lives).
  for (let i = 0; i < 20; i++) {
    t.deepEqual(childrenNamed(process.pid, 'tsbuild-launche'), [], 'the started launcher has ended');
    t.deepEqual(cgroupsOwnedBy(process.pid), [], 'its cgroup is removed');
    await new Promise((res) => setTimeout(res, 50));
  }
});
