import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../../src/core/index.js';
import {
  findSlirp4netns, formatContainerNetwork, type SlirpLookup, parseContainerNetwork, prepareContainerNetwork, resolveContainerNetwork, slirpAddress, slirpArgs, slirpResolvConf,
} from '../../src/runner/index.js';
import { tempDir } from '../helpers/tmp.js';
import { hasEnded } from '../../src/runner/network-slirp.js';

const whyOf = (l: SlirpLookup): string => (l.path === undefined ? l.why : '');

test('parseContainerNetwork: podman\'s modes and slirp4netns options when given --network', (t) => {
  t.deepEqual(parseContainerNetwork(undefined), { mode: 'private' });
  t.deepEqual(parseContainerNetwork('private'), { mode: 'private' });
  t.deepEqual(parseContainerNetwork('none'), { mode: 'none' });
  t.deepEqual(parseContainerNetwork('host'), { mode: 'host' });
  t.deepEqual(parseContainerNetwork('slirp4netns'), { mode: 'slirp4netns', slirp: {} });
  t.deepEqual(parseContainerNetwork('slirp4netns:allow_host_loopback=true,mtu=1500,cidr=10.5.0.0/24,enable_ipv6=false,outbound_addr=eth0'), {
    mode: 'slirp4netns', slirp: { allowHostLoopback: true, mtu: 1500, cidr: '10.5.0.0/24', enableIpv6: false, outboundAddr: 'eth0' },
  });
});

test('parseContainerNetwork: CLI_BAD_VALUE when the mode or a slirp4netns option is unknown or malformed', (t) => {
  for (const [text, message] of [
    ['bridge', /--network takes private .* not "bridge"/],
    ['host:x=1', /not "host:x=1"/],
    ['slirp4netns:port_handler=rootlesskit', /unknown --network slirp4netns option "port_handler"/],
    ['slirp4netns:allow_host_loopback=yes', /expected true or false/],
    ['slirp4netns:mtu=10', /mtu=10: expected 68 to 65521/],
    ['slirp4netns:mtu=99999', /expected 68 to 65521/],
    ['slirp4netns:cidr=10.0.2.0/30', /cidr=10\.0\.2\.0\/30/],
    ['slirp4netns:cidr=300.0.0.0/24', /cidr=/],
    ['slirp4netns:mtu', /expected KEY=VALUE/],
    ['slirp4netns:', /expected KEY=VALUE/],
  ] as const) {
    const err = t.throws(() => parseContainerNetwork(text), { instanceOf: TsbuildError }, text);
    t.is((err as TsbuildError).code, 'CLI_BAD_VALUE', text);
    t.regex(err?.message ?? '', message, text);
  }
});

test('formatContainerNetwork: podman\'s syntax back when a network was parsed', (t) => {
  for (const text of ['private', 'none', 'host', 'slirp4netns', 'slirp4netns:allow_host_loopback=true,mtu=1500']) {
    t.is(formatContainerNetwork(parseContainerNetwork(text)), text);
  }
});

test('resolveContainerNetwork: private becomes slirp4netns when available, else one warning; explicit slirp4netns without it is RUN_NO_SLIRP', (t) => {
  const found = { path: '/usr/bin/slirp4netns' };
  const gone = { why: 'slirp4netns is not installed (apt-get install slirp4netns)' };
  t.deepEqual(resolveContainerNetwork({ mode: 'private' }, found), { network: { mode: 'slirp4netns', slirp: {} } });
  const r = resolveContainerNetwork({ mode: 'private' }, gone);
  t.deepEqual(r.network, { mode: 'private' });
  t.regex(r.warning ?? '', /no outbound network: slirp4netns is not installed .*--network host/);
  t.deepEqual(resolveContainerNetwork({ mode: 'none' }, gone), { network: { mode: 'none' } });
  t.deepEqual(resolveContainerNetwork({ mode: 'host' }, found), { network: { mode: 'host' } });
  const err = t.throws(() => resolveContainerNetwork({ mode: 'slirp4netns', slirp: {} }, gone), { instanceOf: TsbuildError });
  t.is((err as TsbuildError).code, 'RUN_NO_SLIRP');
  t.throws(() => prepareContainerNetwork({ mode: 'slirp4netns' }, gone, { rootless: false, tag: 'x' }), { message: /slirp4netns is not installed/ });
  const none = prepareContainerNetwork({ mode: 'none' }, gone, { rootless: false, tag: 'x' });
  t.is(none.sandboxMode, 'none');
  t.deepEqual(none.hooks, {});
  t.is(prepareContainerNetwork({ mode: 'host' }, found, { rootless: false, tag: 'x' }).sandboxMode, 'host');
  const slirp = prepareContainerNetwork({ mode: 'slirp4netns', slirp: { cidr: '10.9.0.0/16' } }, found, { rootless: false, tag: 'x' });
  t.is(slirp.sandboxMode, 'none', 'slirp4netns works on the container\'s own namespace');
  t.is(slirp.hooks.resolvConf?.('nameserver 1.1.1.1\n'), 'nameserver 10.9.0.3\nnameserver 1.1.1.1\n');
});

test('slirpArgs: podman\'s flags, host loopback closed unless allowed, the user namespace joined when rootless', (t) => {
  t.deepEqual(slirpArgs(42, {}, false), ['--configure', '--mtu=65520', '--disable-host-loopback', '--enable-sandbox', '--enable-seccomp', '--ready-fd=3', '--exit-fd=4', '42', 'tap0']);
  const a = slirpArgs(7, { allowHostLoopback: true, mtu: 1500, cidr: '10.1.0.0/24', enableIpv6: true, outboundAddr: '192.0.2.1', outboundAddr6: '2001:db8::1' }, true);
  t.false(a.includes('--disable-host-loopback'));
  for (const f of ['--mtu=1500', '--cidr=10.1.0.0/24', '--enable-ipv6', '--outbound-addr=192.0.2.1', '--outbound-addr6=2001:db8::1', '--userns-path=/proc/7/ns/user']) t.true(a.includes(f), f);
  t.deepEqual(a.slice(-2), ['7', 'tap0']);
  // A namespace given as an open descriptor (startSlirpAhead): by path, never by a pid.
  t.deepEqual(slirpArgs({ fd: 5 }, {}, false).slice(-3), ['--netns-type=path', '/proc/self/fd/5', 'tap0']);
});

test('slirpResolvConf: slirp\'s DNS first, loopback nameservers dropped, search and options kept when the host has them', (t) => {
  const host = '# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.com\noptions edns0 trust-ad\n';
  t.is(slirpResolvConf(host), 'nameserver 10.0.2.3\nnameserver 192.0.2.53\nsearch example.com\noptions edns0 trust-ad\n');
  t.is(slirpResolvConf(host, { enableIpv6: true }), 'nameserver 10.0.2.3\nnameserver fd00::3\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.com\noptions edns0 trust-ad\n');
  t.is(slirpResolvConf(''), 'nameserver 10.0.2.3\n');
  t.is(slirpAddress('10.4.1.77/24', 2), '10.4.1.2', 'the host side of a custom cidr');
  t.is(slirpAddress(undefined, 100), '10.0.2.100');
});

test('findSlirp4netns: found on PATH when executable, with a reason when it is not', async (t) => {
  const dir = await tempDir(t);
  const bin = join(dir, 'bin');
  await mkdir(bin);
  t.regex(whyOf(findSlirp4netns(bin)), /slirp4netns is not installed/);
  t.regex(whyOf(findSlirp4netns('')), /not installed/);
  await writeFile(join(bin, 'slirp4netns'), '#!/bin/sh\n');
  t.regex(whyOf(findSlirp4netns(bin)), /not installed/, 'not executable');
  await chmod(join(bin, 'slirp4netns'), 0o755);
  const found = findSlirp4netns(`/nonexistent:${bin}`);
  // /dev/net/tun decides the rest (root can always open it).
  if (found.path === undefined) t.regex(found.why, /\/dev\/net\/tun/);
  else t.is(found.path, join(bin, 'slirp4netns'));
});

/** The state letter of /proc/PID/stat; undefined when the process is gone. */
function stateOf(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

test('hasEnded: false while a process runs, true once it is a zombie (ended, not yet reaped) or gone', async (t) => {
  // sh starts `sleep 0` in the background and becomes `sleep 30`, which never reaps it: a zombie.
  const parent = spawn('/bin/sh', ['-c', 'sleep 0 & exec sleep 30'], { stdio: 'ignore' });
  t.teardown(() => { parent.kill('SIGKILL'); });
  const parentPid = parent.pid as number;
  let zombie: number | undefined;
  for (let i = 0; i < 400 && zombie === undefined; i++) {
    let children: number[] = [];
    try {
      children = readFileSync(`/proc/${parentPid}/task/${parentPid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number);
    } catch {
      // not there yet
    }
    zombie = children.find((c) => stateOf(c) === 'Z');
    if (zombie === undefined) await new Promise((r) => setTimeout(r, 25));
  }
  if (zombie === undefined) return t.fail('the background sleep never became a zombie');
  t.false(hasEnded(parentPid), 'sleep 30 runs');
  t.true(hasEnded(zombie), 'a zombie has ended');
  parent.kill('SIGKILL');
  await new Promise((r) => parent.once('exit', r));
  t.true(hasEnded(zombie), 'reaped with its parent: gone');
  t.true(hasEnded(2 ** 22 + 1), 'a pid above pid_max never existed');
});
