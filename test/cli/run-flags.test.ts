import test, { type ExecutionContext } from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from '../../src/cli/args.js';
import { parseLimitFlags, runOptions } from '../../src/cli/commands/run.js';
import { checkCidFile, parseContainerRunOptions, parseExposeFlag, parseLabel, parseLabels, parseShmSize } from '../../src/cli/commands/run-flags.js';
import { TsbuildError } from '../../src/core/index.js';
import { tempDir } from '../helpers/tmp.js';

const args = (...a: string[]): ReturnType<typeof parseArgs> => parseArgs([...a, 'busybox'], runOptions, 'run', true);

function code(t: ExecutionContext, fn: () => unknown, expected: TsbuildError['code'], re?: RegExp): void {
  const err = t.throws(fn, { instanceOf: TsbuildError });
  t.is(err?.code, expected, err?.message);
  t.is(err?.exitCode, 125);
  if (re !== undefined) t.regex(err?.message ?? '', re);
}

test('parseLabel: K=V, K alone is an empty value, an empty name is an error when parsing -l', (t) => {
  t.deepEqual(parseLabel('a=b=c'), ['a', 'b=c']);
  t.deepEqual(parseLabel('flag'), ['flag', '']);
  t.deepEqual(parseLabel('k='), ['k', '']);
  code(t, () => parseLabel('=v'), 'CLI_BAD_VALUE', /empty name/);
});

test('parseLabels: --label-file lines (comments, blanks skipped) then -l flags, later wins when both set a key', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'l.txt'), '# comment\n\ncom.example.a=file\n  com.example.b=2  \nonly\n');
  const parsed = args('--label-file', 'l.txt', '-l', 'com.example.a=flag', '--label', 'x=y');
  t.deepEqual(parseLabels(parsed, dir), { 'com.example.a': 'flag', 'com.example.b': '2', only: '', x: 'y' });
  await writeFile(join(dir, 'bad.txt'), 'ok=1\n=bad\n');
  code(t, () => parseLabels(args('--label-file', 'bad.txt'), dir), 'CLI_BAD_LABEL_FILE', /bad\.txt:2/);
  code(t, () => parseLabels(args('--label-file', 'missing.txt'), dir), 'CLI_BAD_LABEL_FILE', /no such file/);
});

test('parseExposeFlag: ports, protocols and ranges become port keys; bad values are errors when parsing --expose', (t) => {
  t.deepEqual(parseExposeFlag('80'), ['80/tcp']);
  t.deepEqual(parseExposeFlag('53/UDP'), ['53/udp']);
  t.deepEqual(parseExposeFlag('8000-8002/tcp'), ['8000/tcp', '8001/tcp', '8002/tcp']);
  for (const bad of ['', 'http', '0', '70000', '90-80', '80/icmp', '1.2.3.4:80', '80:80']) code(t, () => parseExposeFlag(bad), 'CLI_BAD_VALUE');
  code(t, () => parseExposeFlag('80/sctp'), 'CLI_NOT_SUPPORTED');
});

test('parseShmSize: sizes with units, 0 and garbage are errors when parsing --shm-size', (t) => {
  t.is(parseShmSize('128m'), 128 * 1024 * 1024);
  t.is(parseShmSize('1g'), 1024 ** 3);
  t.is(parseShmSize('4096'), 4096);
  code(t, () => parseShmSize('0'), 'CLI_BAD_VALUE', /more than 0/);
  code(t, () => parseShmSize('big'), 'SANDBOX_BAD_LIMIT');
});

test('parseContainerRunOptions: every flag lands in the record options when given together', (t) => {
  const o = parseContainerRunOptions(args('--add-host', 'db:10.0.0.5', '--add-host', 'v6=::1', '--dns', '1.1.1.1', '--dns', '9.9.9.9', '--dns-search', 'example.com', '--dns-option', 'ndots:2',
    '--ulimit', 'nofile=512:1024', '--ulimit', 'nproc=100', '--group-add', 'audio', '--group-add', '1234', '--shm-size', '32m', '--security-opt', 'no-new-privileges=false'));
  t.deepEqual(o, {
    extraHosts: ['db:10.0.0.5', 'v6:::1'],
    dns: { servers: ['1.1.1.1', '9.9.9.9'], search: ['example.com'], options: ['ndots:2'] },
    ulimits: [{ name: 'nofile', soft: 512, hard: 1024 }, { name: 'nproc', soft: 100, hard: 100 }],
    groupAdd: ['audio', '1234'],
    shmSize: 32 * 1024 * 1024,
    securityOpt: ['no-new-privileges=false'],
    noNewPrivileges: false,
  });
  t.deepEqual(parseContainerRunOptions(args()), { extraHosts: [], ulimits: [], groupAdd: [], securityOpt: [] }, 'nothing given: empty lists, no dns');
});

test('parseContainerRunOptions: bad values are CLI errors (exit 125) naming the flag', (t) => {
  const cases: [string[], TsbuildError['code'], RegExp][] = [
    [['--add-host', 'nocolon'], 'CLI_BAD_VALUE', /--add-host/],
    [['--add-host', 'h:999.1.1.1'], 'CLI_BAD_VALUE', /invalid IP address/],
    [['--add-host', 'bad name:1.2.3.4'], 'CLI_BAD_VALUE', /invalid host name/],
    [['--add-host', 'gw:host-gateway'], 'CLI_NOT_SUPPORTED', /host-gateway/],
    [['--dns', 'resolver.example'], 'CLI_BAD_VALUE', /not an ip address/],
    [['--dns-search', 'bad domain'], 'CLI_BAD_VALUE', /--dns-search/],
    [['--dns-option', 'a b'], 'CLI_BAD_VALUE', /--dns-option/],
    [['--ulimit', 'nofile'], 'CLI_BAD_VALUE', /NAME=SOFT/],
    [['--ulimit', 'files=1'], 'CLI_BAD_VALUE', /invalid ulimit type: files/],
    [['--ulimit', 'nofile=2048:1024'], 'CLI_BAD_VALUE', /soft limit must be less than or equal to hard limit/],
    [['--ulimit', 'nofile=1:2:3'], 'CLI_BAD_VALUE', /too many/],
    [['--ulimit', 'nofile=abc'], 'CLI_BAD_VALUE', /invalid limit value/],
    [['--ulimit', 'core=-1'], 'CLI_NOT_SUPPORTED', /unlimited/],
    [['--group-add', 'a:b'], 'CLI_BAD_VALUE', /--group-add/],
    [['--security-opt', 'no-new-privileges=maybe'], 'CLI_BAD_VALUE', /true or false/],
    [['--security-opt', 'seccomp=/etc/profile.json'], 'CLI_NOT_SUPPORTED', /seccomp/],
    [['--security-opt', 'apparmor=docker-default'], 'CLI_NOT_SUPPORTED', /apparmor/],
    [['--security-opt', 'bogus'], 'CLI_BAD_VALUE', /unknown option/],
  ];
  for (const [a, c, re] of cases) code(t, () => parseContainerRunOptions(args(...a)), c, re);
});

test('parseContainerRunOptions: --privileged is recorded only when given', (t) => {
  t.true(parseContainerRunOptions(args('--privileged')).privileged);
  t.false('privileged' in parseContainerRunOptions(args()));
});

test('--security-opt: seccomp=unconfined, apparmor=unconfined and label=disable are accepted as they are (recorded, nothing changes) when given', (t) => {
  const o = parseContainerRunOptions(args('--privileged', '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor:unconfined', '--security-opt', 'label=disable'));
  t.deepEqual(o.securityOpt, ['seccomp=unconfined', 'apparmor:unconfined', 'label=disable']);
  t.is(o.noNewPrivileges, undefined);
});

test('--security-opt: no-new-privileges alone, =true, :true are on and =false off when parsing', (t) => {
  for (const v of ['no-new-privileges', 'no-new-privileges=true', 'no-new-privileges:true']) t.true(parseContainerRunOptions(args('--security-opt', v)).noNewPrivileges, v);
  t.false(parseContainerRunOptions(args('--security-opt', 'no-new-privileges:false')).noNewPrivileges);
});

test('parseLimitFlags: --oom-kill-disable sets oomKillDisable when given', (t) => {
  t.true(parseLimitFlags(args('--oom-kill-disable', '-m', '64m')).oomKillDisable);
  t.is(parseLimitFlags(args('-m', '64m')).oomKillDisable, undefined);
});

test('checkCidFile: an existing file is refused before anything is made, a new path is returned absolute', async (t) => {
  const dir = await tempDir(t);
  t.is(checkCidFile(args('--cidfile', 'id.txt'), dir), join(dir, 'id.txt'));
  t.is(checkCidFile(args(), dir), undefined);
  await writeFile(join(dir, 'taken'), 'x');
  code(t, () => checkCidFile(args('--cidfile', 'taken'), dir), 'CLI_CIDFILE_EXISTS', /container ID file found/);
});
