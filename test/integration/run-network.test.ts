import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { processesMentioning, waitForNoProcessMentioning, watchContainerStore } from '../helpers/containers.js';
import { cliAsUser, rootlessBusyboxStore, rootlessMissing } from '../helpers/rootless.js';
import { tempDir } from '../helpers/tmp.js';
import { findSlirp4netns } from '../../src/runner/index.js';

const noBusybox = await busyboxMissing();
const rootWhy = process.getuid?.() === 0 ? undefined : 'containers from images are run as root here (the rootless test switches users)';
const slirp = findSlirp4netns(process.env.PATH);
const noSlirp = slirp.path === undefined ? `${slirp.why} (scripts/setup.sh installs it)` : undefined;
const missing = rootWhy ?? noBusybox ?? noSlirp;

/** What the container prints about its network: tap0's address, the routes, resolv.conf, and whether 10.0.2.2:PORT answered. */
const PROBE = (port: number): string[] => ['sh', '-c',
  `ip -4 -o addr show tap0 | awk '{print "addr", $4}'; ip route | sed 's/^/route /'; sed 's/^/resolv /' /etc/resolv.conf; `
  + `if wget -q -O- http://10.0.2.2:${port}/page 2>/dev/null; then echo; echo fetched; else echo not-fetched; fi`];

/** An HTTP server on the host's 127.0.0.1 that counts its requests (closed at teardown). */
async function hostServer(t: ExecutionContext): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    res.end('hello from the host');
  });
  await new Promise<void>((res) => server.listen({ host: '127.0.0.1', port: 0 }, res));
  t.teardown(() => new Promise<void>((res) => { server.closeAllConnections(); server.close(() => res()); }));
  return { port: (server.address() as { port: number }).port, hits: () => hits };
}

/** Pids of slirp4netns processes started for a container of the store `root` (their argv[0] names the container directory). */
function slirpProcessesOf(root: string): number[] {
  return processesMentioning(root).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('slirp4netns[');
    } catch {
      return false;
    }
  });
}

async function setup(t: ExecutionContext): Promise<{ root: string; dir: string }> {
  const dir = await tempDir(t, 'tsbuild-run-network-');
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  return { root, dir };
}

testIf(missing, 'run --network: the default private network has tap0, a default route and slirp\'s DNS, and the host loopback stays closed when slirp4netns is installed', async (t) => {
  const { root } = await setup(t);
  const { r, finish } = watchContainerStore(t, root, { monitors: true });
  const server = await hostServer(t);
  let res = await r('run', '--rm', 'busybox', ...PROBE(server.port));
  t.is(res.code, 0, res.stderr);
  t.is(res.stderr, '', 'no warning when slirp4netns is installed');
  const lines = res.stdout.split('\n');
  // The container's first command already has its address and route.
  t.true(lines.includes('addr 10.0.2.100/24'), res.stdout);
  t.true(lines.some((l) => /^route default via 10\.0\.2\.2 dev tap0/.test(l)), res.stdout);
  t.is(lines.find((l) => l.startsWith('resolv nameserver')), 'resolv nameserver 10.0.2.3', 'slirp\'s DNS forwarder comes first');
  t.true(lines.includes('not-fetched'), '10.0.2.2 does not reach the host\'s 127.0.0.1 by default');
  t.is(server.hits(), 0);

  // --network none: only lo, no slirp4netns, no warning.
  res = await r('run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'ls /sys/class/net');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'lo\n');
  t.is(res.stderr, '');
  // --network host: the host's interfaces.
  res = await r('run', '--rm', '--network', 'host', 'busybox', 'ls', '/sys/class/net');
  t.deepEqual(res.stdout.trim().split('\n').sort(), execFileSync('ls', ['/sys/class/net'], { encoding: 'utf8' }).trim().split('\n').sort());
  await finish();
});

testIf(missing, 'run --network slirp4netns:allow_host_loopback=true: the container fetches a page from the host\'s 127.0.0.1 through 10.0.2.2 when asked', async (t) => {
  const { root } = await setup(t);
  const { r, finish } = watchContainerStore(t, root, { monitors: true });
  const server = await hostServer(t);
  const res = await r('run', '--name', 'loop', '--network', 'slirp4netns:allow_host_loopback=true,mtu=1500', 'busybox', 'sh', '-c',
    `wget -q -O- http://10.0.2.2:${server.port}/page; echo; cat /sys/class/net/tap0/mtu`);
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'hello from the host\n1500\n');
  t.is(server.hits(), 1);
  const inspect = JSON.parse((await r('inspect', 'loop')).stdout) as [{ HostConfig: { NetworkMode: string } }];
  t.is(inspect[0].HostConfig.NetworkMode, 'slirp4netns');
  await finish();
});

testIf(missing, 'run --network: no slirp4netns outlives its container when it is removed, also after its monitor was SIGKILLed', async (t) => {
  const { root } = await setup(t);
  const { r, finish } = watchContainerStore(t, root, { monitors: true });
  let res = await r('run', '-d', '--name', 'a', 'busybox', 'sleep', '1000');
  t.is(res.code, 0, res.stderr);
  res = await r('run', '-d', '--name', 'b', 'busybox', 'sleep', '1000');
  t.is(res.code, 0, res.stderr);
  const idB = res.stdout.trim();
  t.is(slirpProcessesOf(root).length, 2, 'one slirp4netns per running container');
  t.is((await r('exec', 'a', 'cat', '/sys/class/net/tap0/operstate')).stdout, 'unknown\n', 'the detached container has tap0 up');
  // rm -f of a running container stops its slirp4netns.
  t.is((await r('rm', '-f', 'a')).code, 0);
  // Its slirp4netns sees its exit fd close and ends just after rm returns.
  for (let i = 0; i < 400 && slirpProcessesOf(root).length > 1; i++) await new Promise((res2) => setTimeout(res2, 50));
  t.is(slirpProcessesOf(root).length, 1);
  // A SIGKILLed monitor closes slirp4netns's exit fd: it ends by itself; rm then leaves nothing.
  const state = JSON.parse(await readFile(join(root, 'containers', idB, 'state.json'), 'utf8')) as { monitorPid: number };
  process.kill(state.monitorPid, 'SIGKILL');
  for (let i = 0; i < 400 && slirpProcessesOf(root).length > 0; i++) await new Promise((res2) => setTimeout(res2, 50));
  t.deepEqual(slirpProcessesOf(root), [], 'slirp4netns ended with its monitor');
  t.is((await r('rm', '-f', 'b')).code, 0);
  await finish();
});

testIf(rootWhy ?? noBusybox, 'run --network: one warning and a container with only lo when slirp4netns is not on the PATH, a clear error when it fails', async (t) => {
  const { root, dir } = await setup(t);
  const emptyPath = join(dir, 'bin');
  await mkdir(emptyPath);
  const { r, rIn, finish } = watchContainerStore(t, root, { monitors: true, cli: { env: { PATH: emptyPath } } });
  let res = await r('run', '--rm', 'busybox', 'ls', '/sys/class/net');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'lo\n');
  const warnings = res.stderr.split('\n').filter((l) => l !== '');
  t.is(warnings.length, 1, res.stderr);
  t.regex(warnings[0] ?? '', /^WARNING: .*no outbound network.*slirp4netns is not installed.*--network host/);
  // Detached too: the warning comes from the CLI, the container runs.
  res = await r('run', '-d', '--name', 'bg', 'busybox', 'sleep', '1000');
  t.is(res.code, 0, res.stderr);
  t.regex(res.stderr, /slirp4netns is not installed/);
  t.is(JSON.parse((await r('inspect', 'bg')).stdout)[0].HostConfig.NetworkMode, 'private');
  // Asking for slirp4netns explicitly is an error, nothing is created.
  res = await r('run', '--rm', '--network', 'slirp4netns', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /RUN_NO_SLIRP: .*slirp4netns is not installed/);
  // Unknown options are bad values.
  res = await r('run', '--rm', '--network', 'slirp4netns:port_handler=rootlesskit', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /CLI_BAD_VALUE: unknown --network slirp4netns option "port_handler"/);
  t.deepEqual((await r('ps', '-aq')).stdout.trim().split('\n').length, 1, 'only the detached container exists');
  // A slirp4netns that fails: the run fails with its message, --rm leaves nothing.
  const failing = join(dir, 'failing');
  await mkdir(failing);
  await writeFile(join(failing, 'slirp4netns'), '#!/bin/sh\necho "open(/dev/net/tun): Permission denied" >&2\nexit 1\n', { mode: 0o755 });
  res = await rIn({ env: { PATH: `${failing}:/usr/bin:/bin` } }, 'run', '--rm', 'busybox', 'echo', 'never');
  t.is(res.code, 125);
  t.is(res.stdout, '');
  t.regex(res.stderr, /RUN_NETWORK: cannot start slirp4netns .*: it exited \(code 1\): open\(\/dev\/net\/tun\): Permission denied/);
  t.is((await r('ps', '-aq')).stdout.trim().split('\n').length, 1);
  await finish();
});

const tunWhy = ((statSync('/dev/net/tun', { throwIfNoEntry: false })?.mode ?? 0) & 0o006) === 0o006 ? undefined : '/dev/net/tun is not mode 0666 for unprivileged users (scripts/setup.sh sets it)';
const noRootless = rootlessMissing() ?? noBusybox ?? noSlirp ?? tunWhy;

testIf(noRootless, 'run --network rootless: an unprivileged user\'s container gets tap0, a default route and slirp\'s DNS, and reaches the host loopback only when allowed', async (t) => {
  const { home, root } = await rootlessBusyboxStore(t, 'tsbuild-run-network-rootless-');
  const server = await hostServer(t);
  let res = await cliAsUser(home, root, ['run', '--rm', 'busybox', ...PROBE(server.port)]);
  t.is(res.code, 0, res.stderr);
  t.is(res.stderr, '');
  const lines = res.stdout.split('\n');
  t.true(lines.includes('addr 10.0.2.100/24'), res.stdout);
  t.true(lines.some((l) => /^route default via 10\.0\.2\.2 dev tap0/.test(l)), res.stdout);
  t.is(lines.find((l) => l.startsWith('resolv nameserver')), 'resolv nameserver 10.0.2.3');
  t.true(lines.includes('not-fetched'));
  t.is(server.hits(), 0);
  res = await cliAsUser(home, root, ['run', '--rm', '--network', 'slirp4netns:allow_host_loopback=true', 'busybox', 'wget', '-q', '-O-', `http://10.0.2.2:${server.port}/`]);
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'hello from the host');
  t.is(server.hits(), 1);
  // Detached, then removed: its slirp4netns (owned by the user's monitor) goes too.
  res = await cliAsUser(home, root, ['run', '-d', '--name', 'bg', 'busybox', 'sleep', '1000']);
  t.is(res.code, 0, res.stderr);
  t.is(slirpProcessesOf(root).length, 1);
  t.is((await cliAsUser(home, root, ['rm', '-f', 'bg'])).code, 0);
  await waitForNoProcessMentioning(root);
  t.deepEqual(processesMentioning(root), [], 'no monitor, container or slirp4netns process is left');
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(root), 'no mount is left');
});
