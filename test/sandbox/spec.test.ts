import test from 'ava';
import { isTsbuildError } from '../../src/core/index.js';
import { capabilityMask, cloneFlags, encodeLauncherSpec, overlayOptions } from '../../src/sandbox/launcher-spec.js';
import { parseStatusLine, setupError } from '../../src/sandbox/launcher-status.js';
import { limitsToResources, resourcesToLimits } from '../../src/sandbox/sandbox.js';
import { computeCapabilities, createRunSpec, DEFAULT_CAPABILITIES, toOciConfig } from '../../src/sandbox/spec.js';
import { parseSubIds, planIdMaps } from '../../src/sandbox/userns.js';

const base = { args: ['/bin/sh', '-c', 'true'], root: { path: '/rootfs' } } as const;

test('spec: createRunSpec applies Docker defaults when only args and root are given', (t) => {
  const s = createRunSpec(base);
  t.deepEqual(s.process.capabilities.length, 14);
  t.deepEqual([...s.process.capabilities].sort(), [...DEFAULT_CAPABILITIES].sort());
  t.true(s.process.noNewPrivileges);
  t.deepEqual(s.process.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }]);
  t.is(s.process.cwd, '/');
  t.true(s.process.env[0]?.startsWith('PATH=/usr/local/sbin'));
  t.deepEqual(s.linux.namespaces.map((n) => n.type).sort(), ['cgroup', 'ipc', 'mount', 'network', 'pid', 'uts']);
  t.true(s.linux.maskedPaths.includes('/proc/kcore'));
  t.true(s.linux.readonlyPaths.includes('/proc/sys'));
  t.deepEqual(s.mounts.map((m) => m.destination), ['/proc', '/dev', '/dev/pts', '/sys', '/dev/mqueue', '/dev/shm']);
});

test('spec: network host and user namespace change the namespace list when asked', (t) => {
  const s = createRunSpec({ ...base, network: 'host', userNamespace: true });
  const types = s.linux.namespaces.map((n) => n.type);
  t.false(types.includes('network'));
  t.true(types.includes('user'));
});

test('spec: computeCapabilities handles ALL and names without CAP_ when adding and dropping', (t) => {
  t.deepEqual(computeCapabilities(['net_admin'], ['CAP_CHOWN']).includes('CAP_NET_ADMIN'), true);
  t.false(computeCapabilities([], ['chown']).includes('CAP_CHOWN'));
  t.deepEqual(computeCapabilities(['SYS_PTRACE'], ['ALL']), ['CAP_SYS_PTRACE']);
  t.is(computeCapabilities(['ALL']).length, 41);
  t.true(isTsbuildError(t.throws(() => computeCapabilities(['CAP_BOGUS'])), 'SANDBOX_BAD_CAPABILITY'));
});

test('spec: toOciConfig produces an OCI config with effective caps only for uid 0 when converting', (t) => {
  const root = toOciConfig(createRunSpec({ ...base, hostname: 'h', resources: { memory: { limit: 1 << 26 } } }));
  t.is(root.ociVersion, '1.0.2');
  t.is(root.hostname, 'h');
  const p = root.process as { capabilities: { bounding: string[]; effective: string[] }; user: { uid: number } };
  t.deepEqual(p.capabilities.effective, p.capabilities.bounding);
  t.deepEqual((root.root as { path: string }).path, '/rootfs');
  t.deepEqual(((root.linux as { resources: { memory: { limit: number } } }).resources.memory.limit), 1 << 26);
  const user = toOciConfig(createRunSpec({ ...base, user: { uid: 1000, gid: 1000 } }));
  t.deepEqual((user.process as { capabilities: { effective: string[] } }).capabilities.effective, []);
  const overlay = createRunSpec({ ...base, root: { overlay: { lowerdirs: ['/l'], upperdir: '/u', workdir: '/w' } } });
  t.true(isTsbuildError(t.throws(() => toOciConfig(overlay)), 'SANDBOX_BAD_SPEC'));
  t.is((toOciConfig(overlay, { rootPath: '/mnt' }).root as { path: string }).path, '/mnt');
});

test('launcher spec: the encoding is NUL-separated tag records when encoding a spec', (t) => {
  const s = createRunSpec({ ...base, env: ['A=1'], hostname: 'x', user: { uid: 5, gid: 6, additionalGids: [7, 8] } });
  const tokens = encodeLauncherSpec(s, { rootfs: '/rootfs' }).toString('utf8').split('\0');
  t.is(tokens.at(-1), '', 'ends with NUL');
  const at = (tag: string, n: number): string[] => {
    const i = tokens.indexOf(tag);
    return tokens.slice(i + 1, i + 1 + n);
  };
  t.deepEqual(at('user', 3), ['5', '6', '7,8']);
  t.deepEqual(at('hostname', 1), ['x']);
  t.deepEqual(at('caps', 1), [capabilityMask(DEFAULT_CAPABILITIES).toString()]);
  t.deepEqual(at('rlimit', 3), ['7', '1048576', '1048576']);
  t.deepEqual(tokens.filter((_, i) => tokens[i - 1] === 'arg'), ['/bin/sh', '-c', 'true']);
  t.is(Number(at('flags', 1)[0]), cloneFlags(s));
  t.true(isTsbuildError(t.throws(() => encodeLauncherSpec(createRunSpec({ ...base, env: ['A=\0'] }), { rootfs: '/r' })), 'SANDBOX_BAD_SPEC'));
});

test('launcher spec: generated files are records after their directory and bad names are refused when encoding', (t) => {
  const s = createRunSpec(base);
  const tokens = encodeLauncherSpec(s, { rootfs: '/r', filesDir: '/state/.files', files: [{ name: 'hosts', content: '127.0.0.1 x\n' }, { name: 'resolv.conf', content: '' }] }).toString('utf8').split('\0');
  const i = tokens.indexOf('filesdir');
  t.deepEqual(tokens.slice(i, i + 8), ['filesdir', '/state/.files', 'file', 'hosts', '127.0.0.1 x\n', 'file', 'resolv.conf', '']);
  for (const name of ['', '.', '..', 'a/b', 'x\n']) {
    t.true(isTsbuildError(t.throws(() => encodeLauncherSpec(s, { rootfs: '/r', filesDir: '/f', files: [{ name, content: '' }] })), 'SANDBOX_BAD_SPEC'), JSON.stringify(name));
  }
  const noMountNs = { ...s, linux: { ...s.linux, namespaces: s.linux.namespaces.filter((n) => n.type !== 'mount') } };
  t.true(isTsbuildError(t.throws(() => encodeLauncherSpec(noMountNs, { rootfs: '/r', filesDir: '/f', files: [] })), 'SANDBOX_BAD_SPEC'));
});

test('launcher spec: the cgroup files the sandbox\'s process joins itself are records, at most 8', (t) => {
  const s = createRunSpec(base);
  const tokens = encodeLauncherSpec(s, { rootfs: '/r', joinCgroups: ['/sys/fs/cgroup/memory/x/tasks', '/sys/fs/cgroup/pids/x/tasks'] }).toString('utf8').split('\0');
  t.deepEqual(tokens.filter((_, i) => tokens[i - 1] === 'cgroup'), ['/sys/fs/cgroup/memory/x/tasks', '/sys/fs/cgroup/pids/x/tasks']);
  t.false(encodeLauncherSpec(s, { rootfs: '/r' }).toString('utf8').split('\0').includes('cgroup'));
  t.true(isTsbuildError(t.throws(() => encodeLauncherSpec(s, { rootfs: '/r', joinCgroups: Array.from({ length: 9 }, (_, i) => `/c${i}/tasks`) })), 'SANDBOX_BAD_SPEC'));
});

test('launcher spec: overlay options reject separators and add userxattr when in a user namespace', (t) => {
  t.is(overlayOptions(['/a', '/b'], '/u', '/w', true), 'lowerdir=/a:/b,upperdir=/u,workdir=/w,userxattr');
  t.true(isTsbuildError(t.throws(() => overlayOptions(['/a,b'], '/u', '/w', false)), 'SANDBOX_BAD_SPEC'));
  t.true(isTsbuildError(t.throws(() => overlayOptions([], '/u', '/w', false)), 'SANDBOX_BAD_SPEC'));
});

test('launcher status: lines parse and exec ENOENT maps to exit 127 when the launcher reports', (t) => {
  t.deepEqual(parseStatusLine('pid 42'), { pid: 42 });
  t.deepEqual(parseStatusLine('signal 9'), { signal: 9 });
  t.is(parseStatusLine('garbage'), undefined);
  const e = parseStatusLine('error\texec\t2\t/bin/nope');
  t.deepEqual(e, { error: { step: 'exec', errno: 2, detail: '/bin/nope' } });
  const err = setupError(e?.error as never, createRunSpec({ ...base, args: ['/bin/nope'] }));
  t.is(err.code, 'SANDBOX_COMMAND_NOT_FOUND');
  t.is(err.exitCode, 127);
  const mount = setupError({ step: 'mount', errno: 1, detail: '/proc' }, createRunSpec(base));
  t.is(mount.code, 'SANDBOX_SETUP');
  t.regex(mount.message, /mount.*\/proc.*EPERM/);
});

test('userns: sub-id ranges are matched by name or uid and mapped after the user when rootless', (t) => {
  const text = 'alice:100000:65536\n1001:300000:10\nbob:200000:65536\nbad line\n';
  t.deepEqual(parseSubIds(text, { uid: 1000, gid: 1000, user: 'alice' }), [{ start: 100000, count: 65536 }]);
  t.deepEqual(parseSubIds(text, { uid: 1001, gid: 1001, user: 'carol' }), [{ start: 300000, count: 10 }]);
  const { maps, warning } = planIdMaps({ uid: 1000, gid: 1000, user: 'alice' }, [{ start: 100000, count: 65536 }], [{ start: 100000, count: 65536 }]);
  t.is(warning, undefined);
  t.is(maps.method, 'helper');
  t.deepEqual(maps.uid, [{ containerID: 0, hostID: 1000, size: 1 }, { containerID: 1, hostID: 100000, size: 65536 }]);
});

test('userns: no ranges give a single-id map with a warning and root an identity map when planning', (t) => {
  const single = planIdMaps({ uid: 1000, gid: 1000, user: 'dave' }, [], []);
  t.deepEqual(single.maps.uid, [{ containerID: 0, hostID: 1000, size: 1 }]);
  t.true(single.maps.denySetgroups);
  t.regex(single.warning ?? '', /single-id.*chown/);
  const root = planIdMaps({ uid: 0, gid: 0 }, [], []);
  t.is(root.maps.uid[0]?.size, 4294967295);
  t.is(root.warning, undefined);
});

test('sandbox: limits and OCI resources convert both ways when given Docker flags', (t) => {
  const limits = { memory: 64 << 20, memorySwap: 128 << 20, cpus: 0.5, cpuShares: 512, cpusetCpus: '0', pidsLimit: 50 };
  const r = limitsToResources(limits);
  t.deepEqual(r, { memory: { limit: 64 << 20, swap: 128 << 20 }, cpu: { quota: 50000, period: 100000, shares: 512, cpus: '0' }, pids: { limit: 50 } });
  t.deepEqual(resourcesToLimits(r), limits);
  t.is(limitsToResources({}), undefined);
});

test('sandbox: a missing launcher is SANDBOX_LAUNCHER naming the build step when running', async (t) => {
  const { Sandbox } = await import('../../src/sandbox/sandbox.js');
  const sandbox = new Sandbox({ launcherPath: '/nonexistent/tsbuild-launcher', stateDir: '/nonexistent/state', host: { uid: 0, gid: 0 }, ownerPid: process.pid });
  const err = await t.throwsAsync(sandbox.run(createRunSpec(base)));
  t.true(isTsbuildError(err, 'SANDBOX_LAUNCHER'));
  t.regex(err?.message ?? '', /\/nonexistent\/tsbuild-launcher/);
  t.regex((err as { hint?: string }).hint ?? '', /npm run build.*gcc/);
});
