import test from 'ava';
import { isTsbuildError } from '../../src/core/index.js';
import {
  cpusToQuota, hasLimits, withDockerDefaults, limitsToV1Writes, limitsToV2Writes, parseCpuMax, parseCpus, parseCpuset, parseIntegerLimit,
  parseKeyValueFile, parseMaxValue, parseMemory, parseMemorySwap, sharesToWeight, validateLimits,
} from '../../src/sandbox/cgroup-limits.js';
import { formatCgroupDirName, parseCgroupDirName, parseProcCgroup, parseStartTime } from '../../src/sandbox/cgroup-detect.js';
import { parseControllerList } from '../../src/sandbox/cgroup-v2.js';

const MiB = 1024 * 1024;

const memoryCases: Array<[string, number]> = [
  ['64m', 64 * MiB], ['64M', 64 * MiB], ['64mb', 64 * MiB], ['64MiB', 64 * MiB], ['512k', 512 * 1024],
  ['1g', 1024 * MiB], ['1.5g', 1536 * MiB], ['1024', 1024], ['1024b', 1024], ['2t', 2 * 1024 ** 4],
];
for (const [text, bytes] of memoryCases) {
  test(`parseMemory: "${text}" is ${bytes} bytes when given docker syntax`, (t) => {
    t.is(parseMemory(text), bytes);
  });
}

for (const bad of ['', 'abc', '-1', '64x', '1..5g', 'm', '12 34']) {
  test(`parseMemory: SANDBOX_BAD_LIMIT when given "${bad}"`, (t) => {
    const err = t.throws(() => parseMemory(bad));
    t.true(isTsbuildError(err, 'SANDBOX_BAD_LIMIT'));
    t.regex(err?.message ?? '', /--memory/);
  });
}

test('parseMemorySwap: -1 is unlimited when given -1', (t) => {
  t.is(parseMemorySwap('-1'), -1);
  t.is(parseMemorySwap('128m'), 128 * MiB);
});

test('parseCpus: fractions are accepted when positive', (t) => {
  t.is(parseCpus('0.5'), 0.5);
  t.is(parseCpus('2'), 2);
  t.is(parseCpus('0.01'), 0.01);
});

for (const bad of ['0', '0.001', '-1', 'half', '', '1e3']) {
  test(`parseCpus: SANDBOX_BAD_LIMIT when given "${bad}"`, (t) => {
    t.true(isTsbuildError(t.throws(() => parseCpus(bad)), 'SANDBOX_BAD_LIMIT'));
  });
}

test('parseIntegerLimit: integers pass and others fail when parsing flags', (t) => {
  t.is(parseIntegerLimit('--pids-limit', '-1'), -1);
  t.is(parseIntegerLimit('--cpu-shares', '512'), 512);
  t.true(isTsbuildError(t.throws(() => parseIntegerLimit('--pids-limit', '1.5')), 'SANDBOX_BAD_LIMIT'));
});

test('parseCpuset: lists and ranges expand when well formed', (t) => {
  t.deepEqual(parseCpuset('0-2,4'), [0, 1, 2, 4]);
  t.deepEqual(parseCpuset('1,0,1'), [0, 1]);
  t.deepEqual(parseCpuset(''), []);
  for (const bad of ['a', '2-1', '0,,1', '-1', '0-']) t.true(isTsbuildError(t.throws(() => parseCpuset(bad)), 'SANDBOX_BAD_LIMIT'), bad);
});

const badLimitSets: Array<[string, Parameters<typeof validateLimits>[0]]> = [
  ['memory below 6 MiB', { memory: 1024 }],
  ['swap without memory', { memorySwap: 128 * MiB }],
  ['swap below memory', { memory: 64 * MiB, memorySwap: 32 * MiB }],
  ['reservation above memory', { memory: 64 * MiB, memoryReservation: 128 * MiB }],
  ['cpu shares out of range', { cpuShares: 1 }],
  ['cpus zero', { cpus: 0 }],
  ['bad cpuset', { cpusetCpus: 'x' }],
  ['fractional pids', { pidsLimit: 1.5 }],
];
for (const [what, limits] of badLimitSets) {
  test(`validateLimits: SANDBOX_BAD_LIMIT when ${what}`, (t) => {
    t.true(isTsbuildError(t.throws(() => validateLimits(limits)), 'SANDBOX_BAD_LIMIT'));
  });
}

test('validateLimits: docker-valid sets pass when consistent', (t) => {
  t.notThrows(() => validateLimits({ memory: 64 * MiB, memorySwap: -1, memoryReservation: 32 * MiB, cpus: 1.5, cpuShares: 512, cpusetCpus: '0', pidsLimit: 0 }));
  t.notThrows(() => validateLimits({}));
});

test('hasLimits: false when nothing or only unlimited values are set', (t) => {
  t.false(hasLimits({}));
  t.false(hasLimits({ pidsLimit: 0, memory: 0 }));
  t.true(hasLimits({ pidsLimit: 10 }));
  t.true(hasLimits({ cpus: 0.5 }));
});

test('limitsToV1Writes: docker limits map to v1 files when all are set', (t) => {
  t.deepEqual(limitsToV1Writes({ memory: 64 * MiB, memorySwap: 128 * MiB, memoryReservation: 32 * MiB, oomKillDisable: true, cpus: 0.5, cpuShares: 512, pidsLimit: 20 }), [
    { controller: 'memory', file: 'memory.limit_in_bytes', value: String(64 * MiB) },
    { controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: String(128 * MiB) },
    { controller: 'memory', file: 'memory.soft_limit_in_bytes', value: String(32 * MiB) },
    { controller: 'memory', file: 'memory.oom_control', value: '1' },
    { controller: 'cpu', file: 'cpu.shares', value: '512' },
    { controller: 'cpu', file: 'cpu.cfs_period_us', value: '100000' },
    { controller: 'cpu', file: 'cpu.cfs_quota_us', value: '50000' },
    { controller: 'pids', file: 'pids.max', value: '20' },
  ]);
  t.deepEqual(limitsToV1Writes({ pidsLimit: -1, memory: 0 }), []);
});

test('limitsToV2Writes: docker limits map to v2 files when all are set', (t) => {
  t.deepEqual(limitsToV2Writes({ memory: 64 * MiB, memorySwap: 96 * MiB, memoryReservation: 32 * MiB, cpus: 1.5, cpuShares: 1024, pidsLimit: 20 }), [
    { controller: 'memory', file: 'memory.max', value: String(64 * MiB) },
    { controller: 'memory', file: 'memory.swap.max', value: String(32 * MiB) },
    { controller: 'memory', file: 'memory.low', value: String(32 * MiB) },
    { controller: 'cpu', file: 'cpu.weight', value: '39' },
    { controller: 'cpu', file: 'cpu.max', value: '150000 100000' },
    { controller: 'pids', file: 'pids.max', value: '20' },
  ]);
  t.deepEqual(limitsToV2Writes({ memory: 64 * MiB, memorySwap: -1 }).map((w) => w.value), [String(64 * MiB), 'max']);
});

test('sharesToWeight: matches runc/crun conversion when at the range ends', (t) => {
  t.is(sharesToWeight(2), 1);
  t.is(sharesToWeight(262144), 10000);
  t.is(sharesToWeight(1024), 39);
  t.is(cpusToQuota(0.5), 50000);
});

test('parseKeyValueFile: reads v2 cpu.stat, memory.events and v1 oom_control when given kernel text', (t) => {
  const cpuStat = 'usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n';
  t.is(parseKeyValueFile(cpuStat).get('usage_usec'), 123456);
  const events = 'low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n';
  t.is(parseKeyValueFile(events).get('oom_kill'), 1);
  const oomControl = 'oom_kill_disable 0\nunder_oom 0\noom_kill 3\n';
  t.is(parseKeyValueFile(oomControl).get('oom_kill'), 3);
  t.is(parseKeyValueFile('').size, 0);
});

test('parseCpuMax/parseMaxValue: v2 "max" forms parse when read back', (t) => {
  t.deepEqual(parseCpuMax('max 100000\n'), { quota: undefined, period: 100000 });
  t.deepEqual(parseCpuMax('50000 100000\n'), { quota: 50000, period: 100000 });
  t.is(parseMaxValue('max\n'), Infinity);
  t.is(parseMaxValue('67108864\n'), 64 * MiB);
  t.deepEqual(parseControllerList('cpuset cpu io memory pids\n'), ['cpuset', 'cpu', 'io', 'memory', 'pids']);
  t.deepEqual(parseControllerList('\n'), []);
});

test('parseProcCgroup: v1 controllers and the v2 path are split when hybrid', (t) => {
  const parsed = parseProcCgroup('9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/user.slice\n');
  t.is(parsed.v1.get('memory'), '/a/b');
  t.is(parsed.v1.get('cpuacct'), '/c');
  t.is(parsed.v1.get('cpu'), '/c');
  t.is(parsed.v2, '/user.slice');
});

test('parseStartTime: field 22 is found when the command name has spaces and parentheses', (t) => {
  const line = '1234 (a b) c)) S 1 1234 1234 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615';
  t.is(parseStartTime(line), 987654);
});

test('formatCgroupDirName: round-trips owner identity when the name is valid', (t) => {
  const dir = formatCgroupDirName('run-abc.1', { pid: 42, startTime: 777 });
  t.is(dir, 'run-abc.1.owner-42-777');
  t.deepEqual(parseCgroupDirName(dir), { name: 'run-abc.1', owner: { pid: 42, startTime: 777 } });
  t.is(parseCgroupDirName('docker'), undefined);
  for (const bad of ['../x', 'a/b', '', '.hidden']) t.throws(() => formatCgroupDirName(bad, { pid: 1, startTime: 1 }), undefined, bad);
});

test('withDockerDefaults: memory-swap defaults to twice the memory when only --memory is given', (t) => {
  t.deepEqual(withDockerDefaults({ memory: 64 * MiB }), { memory: 64 * MiB, memorySwap: 128 * MiB });
  t.deepEqual(withDockerDefaults({ memory: 64 * MiB, memorySwap: -1 }), { memory: 64 * MiB, memorySwap: -1 });
  t.deepEqual(withDockerDefaults({ pidsLimit: 5 }), { pidsLimit: 5 });
});
