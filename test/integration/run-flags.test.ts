import test, { type ExecutionContext } from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MediaType, type Digest, type ImageConfig, type ImageManifest } from '../../src/core/index.js';
import { createManifest, editContainerConfig, serializeDocument } from '../../src/image/index.js';
import { openStore } from '../../src/store/index.js';
import { busyboxMissing, makeBusyboxImage, makeBusyboxRootfs } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { watchContainerStore } from '../helpers/containers.js';
import { tempDir } from '../helpers/tmp.js';
import { cli } from '../cli/run-cli.js';

const noBusybox = await busyboxMissing();
const notRoot = process.getuid?.() === 0 ? undefined : 'needs root (CI runs as root)';
const cgroupV1 = existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') ? undefined : 'memory.oom_control needs cgroup v1';

type Run = (...a: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/** A store with busybox plus `labeled:1` (busybox with labels a=image, b=image and EXPOSE 80); every container is removed when the test ends. */
async function setup(t: ExecutionContext): Promise<{ root: string; dir: string; r: Run; finish: () => Promise<void> }> {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const store = await openStore(root);
  const base = (await store.refs.get('docker.io/library/busybox:latest')) as { digest: Digest };
  const baseManifest = (await store.blobs.readJson(base.digest)).value as ImageManifest;
  const baseConfig = (await store.blobs.readJson(baseManifest.config.digest)).value as ImageConfig;
  const config = editContainerConfig(baseConfig, (c) => ({ ...c, Labels: { a: 'image', b: 'image' }, ExposedPorts: { '80/tcp': {} } }));
  const c = await store.blobs.putBytes(serializeDocument(config));
  const manifest = createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, baseManifest.layers);
  const m = await store.blobs.putBytes(serializeDocument(manifest));
  await store.refs.set('docker.io/library/labeled:1', { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size });
  const { r, finish } = watchContainerStore(t, root, { cli: { cwd: dir }, volumes: true });
  return { root, dir, r, finish };
}

type Doc = { Id: string; State: { Pid: number }; Config: { Labels: Record<string, string>; ExposedPorts?: Record<string, unknown> }; HostConfig: Record<string, unknown> };

async function inspectOf(r: Run, name: string): Promise<Doc> {
  const res = await r('container', 'inspect', name);
  return (JSON.parse(res.stdout) as [Doc])[0];
}

testIf(noBusybox, 'run --add-host/--dns/--dns-search/--dns-option: /etc/hosts and /etc/resolv.conf inside show them, inspect lists them', async (t) => {
  const { r, finish } = await setup(t);
  const res = await r('run', '--name', 'net', '--add-host', 'db.local:10.1.2.3', '--add-host', 'six=fd00::7', '--dns', '192.0.2.53', '--dns', '192.0.2.54',
    '--dns-search', 'example.com', '--dns-search', 'corp.example', '--dns-option', 'ndots:3', 'busybox', 'sh', '-c', 'cat /etc/hosts; echo ---; cat /etc/resolv.conf');
  t.is(res.code, 0, res.stderr);
  const [hosts, resolv] = res.stdout.split('---\n') as [string, string];
  t.regex(hosts, /^127\.0\.0\.1\tlocalhost$/m);
  t.regex(hosts, /^10\.1\.2\.3\tdb\.local$/m);
  t.regex(hosts, /^fd00::7\tsix$/m);
  t.deepEqual(resolv.split('\n').filter((l) => /^nameserver /.test(l)), ['nameserver 192.0.2.53', 'nameserver 192.0.2.54'], resolv);
  t.deepEqual(resolv.split('\n').filter((l) => /^(search|domain) /.test(l)), ['search example.com corp.example'], resolv);
  t.deepEqual(resolv.split('\n').filter((l) => /^options /.test(l)), ['options ndots:3'], resolv);
  const doc = await inspectOf(r, 'net');
  t.deepEqual(doc.HostConfig.ExtraHosts, ['db.local:10.1.2.3', 'six:fd00::7']);
  t.deepEqual(doc.HostConfig.Dns, ['192.0.2.53', '192.0.2.54']);
  t.deepEqual(doc.HostConfig.DnsSearch, ['example.com', 'corp.example']);
  t.deepEqual(doc.HostConfig.DnsOptions, ['ndots:3']);
  // Without the flags: no extra host, the resolver stays the network's.
  const plain = await r('run', '--rm', 'busybox', 'sh', '-c', 'cat /etc/hosts /etc/resolv.conf');
  t.is(plain.code, 0, plain.stderr);
  t.false(plain.stdout.includes('db.local'));
  t.false(plain.stdout.includes('192.0.2.53'));
  await finish();
});

testIf(noBusybox, 'run --ulimit, --group-add, --shm-size, --security-opt: the process sees its limits, groups, /dev/shm size and no_new_privs', async (t) => {
  const { r, finish } = await setup(t);
  // A soft nproc below the host's hard one (without CAP_SYS_RESOURCE the launcher cannot raise it).
  const hostHard = /^Max processes\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 'unlimited';
  const nproc = String(hostHard === 'unlimited' ? 50000 : Math.min(Number(hostHard), 50000));
  const script = 'grep -E "^Max (open files|processes)" /proc/self/limits; id -G; df -k /dev/shm | tail -1; grep NoNewPrivs /proc/self/status';
  const res = await r('run', '--name', 'lim', '--ulimit', 'nofile=512:1024', '--ulimit', `nproc=${nproc}`, '--group-add', 'nobody', '--group-add', '4321',
    '--shm-size', '32m', '--security-opt', 'no-new-privileges=false', 'busybox', 'sh', '-c', script);
  t.is(res.code, 0, res.stderr);
  const lines = res.stdout.trim().split('\n');
  t.regex(lines.find((l) => l.startsWith('Max open files')) ?? '', /^Max open files\s+512\s+1024\s+files/);
  t.regex(lines.find((l) => l.startsWith('Max processes')) ?? '', new RegExp(`^Max processes\\s+${nproc}\\s+${nproc}\\s+processes`));
  t.deepEqual((lines.find((l) => /^\d+( \d+)*$/.test(l)) ?? '').split(' ').sort(), ['0', '4321', '65534']);
  t.regex(lines.find((l) => l.startsWith('shm') || l.includes('/dev/shm')) ?? '', /^\S+\s+32768\s/);
  t.regex(res.stdout, /^NoNewPrivs:\s+0$/m);
  const doc = await inspectOf(r, 'lim');
  t.deepEqual(doc.HostConfig.Ulimits, [{ Name: 'nofile', Hard: 1024, Soft: 512 }, { Name: 'nproc', Hard: Number(nproc), Soft: Number(nproc) }]);
  t.deepEqual(doc.HostConfig.GroupAdd, ['nobody', '4321']);
  t.is(doc.HostConfig.ShmSize, 32 * 1024 * 1024);
  t.deepEqual(doc.HostConfig.SecurityOpt, ['no-new-privileges=false']);
  // The defaults: nofile as high as the host allows (1048576), only root's group, 64 MiB /dev/shm, no_new_privs on.
  const plain = await r('run', '--rm', 'busybox', 'sh', '-c', script);
  t.is(plain.code, 0, plain.stderr);
  t.notRegex(plain.stdout, /^Max open files\s+512\s/m);
  t.regex(plain.stdout, /^0$/m);
  t.regex(plain.stdout, /^\S+\s+65536\s/m);
  t.regex(plain.stdout, /^NoNewPrivs:\s+1$/m);
  // exec in the container follows its no_new_privs and --ulimit values and gets its --group-add groups.
  const up = await r('run', '-d', '--name', 'nnp', '--security-opt', 'no-new-privileges=false', '--group-add', '4321', '--ulimit', 'nofile=512:1024', 'busybox', 'sleep', '600');
  t.is(up.code, 0, up.stderr);
  const execScript = 'grep NoNewPrivs /proc/self/status; id -G; grep "^Max open files" /proc/self/limits';
  let exec = await r('exec', 'nnp', 'sh', '-c', execScript);
  for (let i = 0; i < 1200 && exec.code !== 0; i++) {
    await new Promise((res) => setTimeout(res, 50));
    exec = await r('exec', 'nnp', 'sh', '-c', execScript);
  }
  t.is(exec.code, 0, exec.stderr);
  t.regex(exec.stdout, /^NoNewPrivs:\s+0$/m);
  t.regex(exec.stdout, /^0 4321$/m);
  t.regex(exec.stdout, /^Max open files\s+512\s+1024\s+files/m);
  // An unknown group name fails at create, as docker.
  const unknown = await r('run', '--rm', '--group-add', 'video', 'busybox', 'true');
  t.is(unknown.code, 125);
  t.regex(unknown.stderr, /unable to find group video/);
  await finish();
});

testIf(noBusybox, 'run --security-opt seccomp=unconfined: containers and their execs get docker\'s default seccomp filter unless unconfined', async (t) => {
  const { r, finish } = await setup(t);
  const script = 'grep "^Seccomp:" /proc/self/status; unshare -U true && echo unshared';
  const filtered = await r('run', '--rm', 'busybox', 'sh', '-c', script);
  t.regex(filtered.stdout, /^Seccomp:\s+2$/m);
  t.notRegex(filtered.stdout, /unshared/);
  t.regex(filtered.stderr, /Operation not permitted/);
  const unconfined = await r('run', '--rm', '--security-opt', 'seccomp=unconfined', 'busybox', 'sh', '-c', script);
  t.is(unconfined.code, 0, unconfined.stderr);
  t.regex(unconfined.stdout, /^Seccomp:\s+0$/m);
  t.regex(unconfined.stdout, /^unshared$/m);
  // exec follows the container's policy.
  for (const [name, flags, want] of [['sc-default', [], '2'], ['sc-unconfined', ['--security-opt', 'seccomp=unconfined'], '0']] as const) {
    const up = await r('run', '-d', '--name', name, ...flags, 'busybox', 'sleep', '600');
    t.is(up.code, 0, up.stderr);
    let exec = await r('exec', name, 'grep', '^Seccomp:', '/proc/self/status');
    for (let i = 0; i < 1200 && exec.code !== 0; i++) {
      await new Promise((res) => setTimeout(res, 50));
      exec = await r('exec', name, 'grep', '^Seccomp:', '/proc/self/status');
    }
    t.is(exec.code, 0, exec.stderr);
    t.regex(exec.stdout, new RegExp(`^Seccomp:\\s+${want}$`, 'm'), name);
  }
  await finish();
});

testIf(noBusybox ?? cgroupV1, 'run --oom-kill-disable: the container\'s memory cgroup has oom_kill_disable 1 and inspect says so (cgroup v1)', async (t) => {
  const { r, finish } = await setup(t);
  const run = await r('run', '-d', '--name', 'oom', '-m', '64m', '--oom-kill-disable', 'busybox', 'sleep', '600');
  t.is(run.code, 0, run.stderr);
  let pid = 0;
  for (let i = 0; i < 1200 && pid === 0; i++) {
    pid = (await inspectOf(r, 'oom')).State.Pid;
    if (pid === 0) await new Promise((res) => setTimeout(res, 50));
  }
  t.true(pid > 0, 'the container runs');
  const memLine = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l)) ?? '';
  const path = memLine.split(':')[2] ?? '';
  t.not(path, '', memLine);
  const control = await readFile(join('/sys/fs/cgroup/memory', path, 'memory.oom_control'), 'utf8');
  t.regex(control, /^oom_kill_disable 1$/m);
  t.true((await inspectOf(r, 'oom')).HostConfig.OomKillDisable);
  await finish();
});

testIf(noBusybox, 'run -l/--label-file/--expose: labels merge over the image\'s, inspect and ps --filter label show them, -P publishes an --expose port', async (t) => {
  const { dir, r, finish } = await setup(t);
  await writeFile(join(dir, 'labels'), '# mine\nb=file\nc=file\n');
  const res = await r('run', '--name', 'lab', '--label-file', 'labels', '-l', 'c=flag', '--label', 'd', '--expose', '7000-7001/udp', '--expose', '9000', 'labeled:1', 'true');
  t.is(res.code, 0, res.stderr);
  const doc = await inspectOf(r, 'lab');
  t.deepEqual(doc.Config.Labels, { a: 'image', b: 'file', c: 'flag', d: '' });
  t.deepEqual(Object.keys(doc.Config.ExposedPorts ?? {}), ['80/tcp', '7000/udp', '7001/udp', '9000/tcp']);
  const other = await r('run', '--name', 'plain', 'labeled:1', 'true');
  t.is(other.code, 0, other.stderr);
  const names = async (...filters: string[]): Promise<string> => (await r('ps', '-a', '--format', '{{.Names}}', ...filters.flatMap((f) => ['--filter', f]))).stdout.trim().split('\n').sort().join(',');
  t.is(await names('label=c'), 'lab');
  t.is(await names('label=c=flag'), 'lab');
  t.is(await names('label=c=file'), '');
  t.is(await names('label=a=image'), 'lab,plain');
  t.is(await names('expose=9000'), 'lab');
  t.is((await r('ps', '-a', '--filter', 'name=lab', '--format', '{{.Labels}}')).stdout, 'a=image,b=file,c=flag,d=\n');
  // -P publishes the --expose port on a free host port.
  const up = await r('run', '-d', '--name', 'pub', '-P', '--expose', '9000', 'busybox', 'sleep', '600');
  t.is(up.code, 0, up.stderr);
  let port = '';
  for (let i = 0; i < 1200 && port === ''; i++) {
    port = (await r('port', 'pub', '9000')).stdout.trim();
    if (port === '') await new Promise((res) => setTimeout(res, 50));
  }
  t.regex(port, /^0\.0\.0\.0:\d+$/);
  await finish();
});

testIf(noBusybox, 'run --cidfile: the ID is written, an existing file fails before anything is created (exit 125)', async (t) => {
  const { dir, r, finish } = await setup(t);
  const res = await r('run', '--cidfile', 'id.txt', '--name', 'c1', 'busybox', 'true');
  t.is(res.code, 0, res.stderr);
  const id = readFileSync(join(dir, 'id.txt'), 'utf8');
  t.is(id, (await inspectOf(r, 'c1')).Id);
  const again = await r('run', '--cidfile', 'id.txt', '--name', 'c2', 'busybox', 'true');
  t.is(again.code, 125);
  t.regex(again.stderr, /container ID file found/);
  t.is((await r('ps', '-aq')).stdout.trim().split('\n').length, 1, 'no second container');
  t.is(readFileSync(join(dir, 'id.txt'), 'utf8'), id, 'the file is untouched');
  await finish();
});

testIf(noBusybox, 'run: bad values of the new flags fail with exit 125 and a coded message', async (t) => {
  const { r, finish } = await setup(t);
  const cases: [string[], RegExp][] = [
    [['--add-host', 'nohost'], /--add-host/],
    [['--dns', 'x.y'], /not an ip address/],
    [['--ulimit', 'nofile=9:1'], /soft limit/],
    [['--expose', 'http'], /--expose/],
    [['--security-opt', 'apparmor=docker-default'], /apparmor is not supported yet/],
    [['--shm-size', '0'], /more than 0/],
    [['-l', '=v'], /empty name/],
  ];
  for (const [flags, re] of cases) {
    const res = await r('run', '--rm', ...flags, 'busybox', 'true');
    t.is(res.code, 125, flags.join(' '));
    t.regex(res.stderr, re, flags.join(' '));
    t.false(res.stderr.includes('    at '), 'no stack trace');
  }
  t.is((await r('ps', '-aq')).stdout, '', 'nothing was created');
  await finish();
});

testIf(notRoot ?? noBusybox, 'run --rootfs: --add-host, --ulimit, --shm-size and --group-add apply, image-only flags are refused', async (t) => {
  const dir = await tempDir(t);
  const rootfs = join(dir, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  const env = { TSBUILD_RUN_DIR: join(dir, 'run') };
  const res = await cli(['run', '--rootfs', rootfs, '--add-host', 'h:10.9.9.9', '--ulimit', 'nofile=256', '--shm-size', '8m', '--group-add', 'nobody', '--security-opt', 'no-new-privileges=false', '--',
    'sh', '-c', 'grep h$ /etc/hosts; grep "^Max open files" /proc/self/limits; df -k /dev/shm | tail -1; id -G; grep NoNewPrivs /proc/self/status'], { env });
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /^10\.9\.9\.9\th$/m);
  t.regex(res.stdout, /^Max open files\s+256\s+256/m);
  t.regex(res.stdout, /^\S+\s+8192\s/m);
  t.regex(res.stdout, /^0 65534$/m);
  t.regex(res.stdout, /^NoNewPrivs:\s+0$/m);
  for (const flag of [['--label', 'a=b'], ['--expose', '80'], ['--cidfile', join(dir, 'cid')]]) {
    const bad = await cli(['run', '--rootfs', rootfs, ...flag, '--', 'true'], { env });
    t.is(bad.code, 125);
    t.regex(bad.stderr, /needs an image/);
  }
});
