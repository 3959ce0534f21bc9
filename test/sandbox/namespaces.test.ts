import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { testIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { createRunSpec, type RunSpec, type RunSpecOptions } from '../../src/sandbox/spec.js';
import { assertNoLeftoverMounts, mountsUnder, rootSandbox, runCaptured, notRoot } from './sandbox-helpers.js';

const missing = notRoot() ?? busyboxMissing();

/** A fresh busybox rootfs and sandbox for one test; asserts no host mounts are left. */
async function setup(t: Parameters<typeof tempDir>[0]): Promise<{ dir: string; rootfs: string; state: string; run: (o: Omit<RunSpecOptions, 'root'> & { root?: RunSpecOptions['root'] }, edit?: (s: RunSpec) => RunSpec) => ReturnType<typeof runCaptured> }> {
  const dir = await tempDir(t, 'tsbuild-sbx-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  const state = join(dir, 'state');
  assertNoLeftoverMounts(t, [dir]);
  const sandbox = rootSandbox(state);
  return {
    dir,
    rootfs,
    state,
    run: (o, edit = (s) => s) => runCaptured(sandbox, edit(createRunSpec({ root: { path: rootfs }, ...o }))),
  };
}

const withoutNamespace = (type: string) => (s: RunSpec): RunSpec => ({ ...s, linux: { ...s.linux, namespaces: s.linux.namespaces.filter((n) => n.type !== type) } });

testIf(missing, 'sandbox: the process is PID 1 and host pids are invisible when in a new pid namespace', async (t) => {
  const { run } = await setup(t);
  const probe = ['sh', '-c', `echo $$; test -e /proc/${process.pid} && echo host-visible || echo host-hidden`];
  const inside = await run({ args: probe });
  t.is(inside.exitCode, 0, inside.stderr);
  t.deepEqual(inside.stdout.trim().split('\n'), ['1', 'host-hidden']);
  const shared = await run({ args: probe }, withoutNamespace('pid'));
  t.not(shared.stdout.split('\n')[0], '1');
});

testIf(missing, 'sandbox: the hostname is the container\'s when in a new uts namespace', async (t) => {
  const { run } = await setup(t);
  const before = hostname();
  const r = await run({ args: ['hostname'], hostname: 'sbx-probe' });
  t.is(r.stdout.trim(), 'sbx-probe');
  t.is(hostname(), before);
  const shared = await run({ args: ['hostname'] }, (s) => withoutNamespace('uts')({ ...s, hostname: undefined }));
  t.is(shared.stdout.trim(), before);
});

testIf(missing, 'sandbox: host SysV IPC objects are invisible when in a new ipc namespace', async (t) => {
  const { run } = await setup(t);
  const out = execFileSync('ipcmk', ['-M', '4096'], { encoding: 'utf8' });
  const id = /(\d+)/.exec(out)?.[1] as string;
  t.teardown(() => execFileSync('ipcrm', ['-m', id]));
  const probe = ['sh', '-c', `awk 'NR>1 {print $2}' /proc/sysvipc/shm`];
  const inside = await run({ args: probe });
  t.is(inside.exitCode, 0, inside.stderr);
  t.false(inside.stdout.split('\n').includes(id));
  const shared = await run({ args: probe }, withoutNamespace('ipc'));
  t.true(shared.stdout.split('\n').includes(id));
});

testIf(missing, 'sandbox: only lo exists and is up when network is none', async (t) => {
  const { run } = await setup(t);
  const probe = ['sh', '-c', `awk -F: 'NR>2 {gsub(/ /,"",$1); print $1}' /proc/net/dev; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags`];
  const r = await run({ args: probe, network: 'none' });
  t.is(r.exitCode, 0, r.stderr);
  const [ifaces, , flags] = [r.stdout.trim().split('\n').slice(0, -2), null, r.stdout.trim().split('\n').at(-1) as string];
  t.deepEqual(ifaces, ['lo']);
  t.is(Number(flags) & 1, 1, 'lo is IFF_UP');
  const hostIfaces = readFileSync('/proc/net/dev', 'utf8').trim().split('\n').slice(2);
  if (hostIfaces.length > 1) {
    const shared = await run({ args: probe, network: 'host' });
    t.true(shared.stdout.trim().split('\n').length > 3, shared.stdout);
  }
});

testIf(missing, 'sandbox: a mount made inside is invisible on the host when in a new mount namespace', async (t) => {
  const { run, dir } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'mkdir -p /mnt/in && mount -t tmpfs probe /mnt/in && grep -c " /mnt/in " /proc/self/mountinfo && sleep 0.2'], capAdd: ['SYS_ADMIN'] });
  t.is(r.exitCode, 0, r.stderr);
  t.is(r.stdout.trim(), '1');
  t.deepEqual(mountsUnder([dir]), []);
});

testIf(missing, 'sandbox: writes cannot leave the root filesystem when paths climb above /', async (t) => {
  const { run, dir, rootfs } = await setup(t);
  await writeFile(join(dir, 'secret'), 'host secret\n');
  const r = await run({ args: ['sh', '-c', 'cat /../secret ../../secret 2>/dev/null; echo escaped > /../../escape; echo x > /proc/1/root/../escape2; ls /..'] });
  t.is(r.exitCode, 0, r.stderr);
  t.false(r.stdout.includes('host secret'));
  t.false(existsSync(join(dir, 'escape')));
  t.false(existsSync(join(dir, 'escape2')));
  t.is(await readFile(join(rootfs, 'escape'), 'utf8'), 'escaped\n');
});

testIf(missing, 'sandbox: init files /etc/hosts, /etc/hostname, /etc/resolv.conf are bind mounts when running', async (t) => {
  const { run, rootfs } = await setup(t);
  const r = await run({ args: ['sh', '-c', 'cat /etc/hostname; grep -c sbx-init /etc/hosts; grep " /etc/" /proc/self/mountinfo | wc -l'], hostname: 'sbx-init' });
  t.deepEqual(r.stdout.trim().split('\n'), ['sbx-init', '1', '3']);
  t.is(await readFile(join(rootfs, 'etc/hostname'), 'utf8'), '', 'only an empty mountpoint stays in the rootfs');
});

testIf(missing, 'sandbox: an overlay root keeps writes in the upperdir and init files out of it when using overlay', async (t) => {
  const { dir, rootfs, state } = await setup(t);
  const upper = join(dir, 'upper');
  const work = join(dir, 'work');
  await mkdir(upper);
  await mkdir(work);
  const sandbox = rootSandbox(state);
  const spec = createRunSpec({ args: ['sh', '-c', 'echo new > /created; rm /etc/group; cat /etc/hostname'], root: { overlay: { lowerdirs: [rootfs], upperdir: upper, workdir: work } }, hostname: 'ovl' });
  const r = await runCaptured(sandbox, spec);
  t.is(r.exitCode, 0, r.stderr);
  t.is(r.stdout.trim(), 'ovl');
  t.is(await readFile(join(upper, 'created'), 'utf8'), 'new\n');
  t.true(existsSync(join(rootfs, 'etc/group')), 'the lowerdir is untouched');
  t.false(existsSync(join(upper, 'etc/hosts')));
  t.false(existsSync(join(upper, 'etc/hostname')));
  t.false(existsSync(join(upper, 'proc')));
});
