import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupStaleCgroups } from '../../src/sandbox/cgroup.js';
import { testSerialIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { cli } from '../cli/run-cli.js';
import { CGROUP_ROOTS, ownedCgroupDirs, waitFor } from './cgroup-helpers.js';
import { ensureLauncher, mountsUnder } from './sandbox-helpers.js';

// Limits enforced end to end: `tsbuild run --rootfs` with the built-in sandbox and with `--runtime runc`.

function runcMissing(): string | undefined {
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'runc is not installed (apt-get install runc)';
  }
}
const missing = (process.getuid?.() === 0 ? undefined : 'cgroup limits need root') ?? busyboxMissing();

async function setup(t: Parameters<typeof tempDir>[0]): Promise<{ rootfs: string; env: Record<string, string> }> {
  ensureLauncher();
  const dir = await tempDir(t, 'tsbuild-limits-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  t.teardown(() => {
    const left = [...mountsUnder([dir]), ...ownedCgroupDirs(CGROUP_ROOTS)];
    if (left.length > 0) throw new Error(`left behind: ${left.join(', ')}`);
  });
  return { rootfs, env: { TSBUILD_RUN_DIR: join(dir, 'run') } };
}

// The spawner shell dies when fork fails; the outer shell counts the pid namespace's processes with builtins only.
const SPAWN_30 = 'sh -c "for i in \\$(seq 30); do sleep 30 & done" 2>/dev/null; set -- /proc/[0-9]*; echo $#';
// Two busy loops for 2 s, then their CPU time in clock ticks (utime + stime, 100 per second).
const BUSY_2S = 'b() { while :; do :; done; }; b & p1=$!; b & p2=$!; sleep 2; cat /proc/$p1/stat /proc/$p2/stat | awk \'{ s += $14 + $15 } END { print s }\'';

for (const runtime of [undefined, 'runc']) {
  const via = runtime === undefined ? 'the built-in sandbox' : `--runtime ${runtime}`;
  const skip = missing ?? (runtime === undefined ? undefined : runcMissing());
  const runtimeFlags = runtime === undefined ? [] : ['--runtime', runtime];

  testSerialIf(skip, `tsbuild run: --pids-limit caps the processes when spawning 30 via ${via}`, async (t) => {
    const { rootfs, env } = await setup(t);
    const r = await cli(['run', '--rootfs', rootfs, ...runtimeFlags, '--pids-limit', '10', '--', 'sh', '-c', SPAWN_30], { env });
    t.is(r.code, 0, r.stderr);
    const count = Number(r.stdout.trim());
    t.true(count >= 2 && count <= 10, `processes: ${count}`);
    const free = await cli(['run', '--rootfs', rootfs, ...runtimeFlags, '--', 'sh', '-c', SPAWN_30], { env });
    t.is(Number(free.stdout.trim()), 31, 'without the limit all 30 start');
  });

  testSerialIf(skip, `tsbuild run: --cpus 0.5 holds two busy loops near half a CPU when measured via ${via}`, async (t) => {
    const { rootfs, env } = await setup(t);
    const r = await cli(['run', '--rootfs', rootfs, ...runtimeFlags, '--cpus', '0.5', '--', 'sh', '-c', BUSY_2S], { env });
    t.is(r.code, 0, r.stderr);
    const cpus = Number(r.stdout.trim()) / 100 / 2;
    t.log(`${via}: ${cpus.toFixed(2)} CPUs used by two busy loops under --cpus 0.5`);
    t.true(cpus > 0.02 && cpus < 0.75, `cpus ${cpus}`);
  });

  testSerialIf(skip, `tsbuild run: a memory hog is OOM-killed with exit 137 when over --memory via ${via}`, async (t) => {
    const { rootfs, env } = await setup(t);
    const r = await cli(['run', '--rootfs', rootfs, ...runtimeFlags, '--memory', '16m', '--memory-swap', '16m', '--', 'sh', '-c', 'x=a; while true; do x=$x$x; done'], { env });
    t.is(r.code, 137, r.stderr);
    if (runtime === undefined) t.regex(r.stderr, /killed: out of memory, limit 16 MiB/);
  });
}

for (const runtime of [undefined, 'runc']) {
  const via = runtime === undefined ? 'the built-in sandbox' : `--runtime ${runtime}`;
  const skip = missing ?? (runtime === undefined ? undefined : runcMissing());
  testSerialIf(skip, `cleanupStaleCgroups: nothing of a SIGKILLed tsbuild run survives the next start via ${via}`, async (t) => {
    const { rootfs, env } = await setup(t);
    const repo = fileURLToPath(new URL('../../', import.meta.url));
    const argv = ['--import', 'tsx', join(repo, 'src/cli/main.ts'), 'run', '--rootfs', rootfs, ...(runtime === undefined ? [] : ['--runtime', runtime]), '--pids-limit', '10', '--', 'sleep', '1000'];
    const tsbuild = spawn(process.execPath, argv, { cwd: repo, env: { ...process.env, ...env }, stdio: 'ignore' });
    t.teardown(() => tsbuild.kill('SIGKILL'));
    const dirs = (): string[] => ownedCgroupDirs(['/sys/fs/cgroup/pids'], tsbuild.pid);
    const procsIn = (): number[] => dirs().flatMap((d) => (existsSync(d) ? readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l !== '').map(Number) : []));
    t.true(await waitFor(() => procsIn().length > 0, 30_000), 'the container runs in its cgroup');
    const victims = procsIn();
    tsbuild.kill('SIGKILL');
    await new Promise((r) => tsbuild.once('exit', r));
    const removed = await cleanupStaleCgroups({ rootless: false });
    t.true(removed.some((d) => d.startsWith('/sys/fs/cgroup/pids/tsbuild/')), removed.join(', '));
    t.deepEqual(dirs(), []);
    t.true(await waitFor(() => victims.every((pid) => !existsSync(`/proc/${pid}`)), 5000), `still alive: ${victims.join(', ')}`);
    t.deepEqual(ownedCgroupDirs(CGROUP_ROOTS, tsbuild.pid), []);
  });
}
