import test from 'ava';
import { appendExtraHosts, applyDnsConfig, parseUlimit, resolveGroupAdd, runOptionFields, ulimitsToRlimits } from '../../src/runner/index.js';
import { createRunSpec } from '../../src/sandbox/index.js';
import { TsbuildError } from '../../src/core/index.js';


test('applyDnsConfig: each given list replaces its kind of line, others are kept, search "." clears when rewriting resolv.conf', (t) => {
  const host = 'nameserver 10.0.2.3\nnameserver 8.8.8.8\nsearch corp.example\noptions edns0\n';
  t.is(applyDnsConfig(host, undefined), host);
  t.is(applyDnsConfig(host, {}), host);
  t.is(applyDnsConfig(host, { servers: ['1.1.1.1'] }), 'nameserver 1.1.1.1\nsearch corp.example\noptions edns0\n');
  t.is(applyDnsConfig(host, { search: ['a.example', 'b.example'], options: ['ndots:2', 'timeout:1'] }), 'search a.example b.example\nnameserver 10.0.2.3\nnameserver 8.8.8.8\noptions ndots:2 timeout:1\n');
  t.is(applyDnsConfig(host, { search: ['.'] }), 'nameserver 10.0.2.3\nnameserver 8.8.8.8\noptions edns0\n');
  t.is(applyDnsConfig('', { servers: ['9.9.9.9'] }), 'nameserver 9.9.9.9\n');
});

test('appendExtraHosts: NAME:IP entries end /etc/hosts as "IP<TAB>NAME", IPv6 kept whole when added', (t) => {
  t.is(appendExtraHosts('127.0.0.1\tlocalhost\n', ['db:10.0.0.5', 'v6:::1']), '127.0.0.1\tlocalhost\n10.0.0.5\tdb\n::1\tv6\n');
  t.is(appendExtraHosts('x\n', []), 'x\n');
});

test('parseUlimit + ulimitsToRlimits: names map to RLIMIT_*, hard defaults to soft, the last of a name wins', (t) => {
  t.deepEqual(parseUlimit('NOFILE=100'), { name: 'nofile', soft: 100, hard: 100 });
  t.deepEqual(ulimitsToRlimits([parseUlimit('nofile=1:2'), parseUlimit('core=0'), parseUlimit('nofile=3:4')]), [
    { type: 'RLIMIT_NOFILE', soft: 3, hard: 4 }, { type: 'RLIMIT_CORE', soft: 0, hard: 0 },
  ]);
});

test('createRunSpec: rlimits merge over the default nofile, no_new_privs and the /dev/shm size follow the options', (t) => {
  const base = createRunSpec({ args: ['sh'], root: { path: '/r' } });
  t.deepEqual(base.process.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }]);
  t.true(base.process.noNewPrivileges);
  t.true(base.mounts.find((m) => m.destination === '/dev/shm')?.options.includes('size=67108864'));
  const s = createRunSpec({ args: ['sh'], root: { path: '/r' }, rlimits: [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 20 }, { type: 'RLIMIT_NPROC', soft: 5, hard: 5 }], noNewPrivileges: false, shmSize: 1024 });
  t.deepEqual(s.process.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 20 }, { type: 'RLIMIT_NPROC', soft: 5, hard: 5 }]);
  t.false(s.process.noNewPrivileges);
  const shm = s.mounts.filter((m) => m.destination === '/dev/shm');
  t.is(shm.length, 1);
  t.deepEqual(shm[0]?.options.filter((o) => o.startsWith('size=')), ['size=1024']);
});

test('resolveGroupAdd: names come from the group file, gids pass, an unknown name is RUN_UNKNOWN_GROUP', (t) => {
  const groups = 'root:x:0:\naudio:x:29:\n# c\nstaff:x:50:a,b\n';
  t.deepEqual(resolveGroupAdd(['audio', '1234', 'staff'], groups), [29, 1234, 50]);
  const err = t.throws(() => resolveGroupAdd(['video'], groups), { instanceOf: TsbuildError });
  t.is(err?.code, 'RUN_UNKNOWN_GROUP');
  t.throws(() => resolveGroupAdd(['audio'], undefined), { instanceOf: TsbuildError });
});

test('runOptionFields: empty lists and unset values are left out of the record', (t) => {
  t.deepEqual(runOptionFields({ extraHosts: [], ulimits: [], groupAdd: [], securityOpt: [] }), {});
  t.deepEqual(runOptionFields({ extraHosts: ['a:1.2.3.4'], dns: {}, shmSize: 5, noNewPrivileges: false }), { extraHosts: ['a:1.2.3.4'], shmSize: 5, noNewPrivileges: false });
});
