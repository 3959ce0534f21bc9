import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { TsbuildError } from '../../src/core/index.js';
import { checkPortsAvailable, publishPorts, type PortBinding } from '../../src/runner/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

const PROXY = fileURLToPath(new URL('../../build/tsbuild-port-proxy', import.meta.url));
const missing = process.getuid?.() !== 0 ? 'a private network namespace (unshare -n) needs root here'
  : existsSync(PROXY) ? undefined : 'build/tsbuild-port-proxy is not built (npm run build)';

/**
 * A server in a fresh network namespace (only `lo`): node listening on 127.0.0.1:80 (TCP: reads
 * the whole request until the client half-closes, answers `got N bytes`, closes), 127.0.0.1:83
 * (the same, but answers `late` 1.5 s after the half-close) and 127.0.0.1:53 (UDP: echoes with a
 * `re:` prefix). Resolves with its pid once it listens.
 */
async function startNamespacedServer(t: ExecutionContext): Promise<ChildProcess> {
  const program = `
    const net = require('node:net'); const dgram = require('node:dgram');
    net.createServer({ allowHalfOpen: true }, (c) => { let n = 0; c.on('data', (d) => { n += d.length; }); c.on('end', () => c.end('got ' + n + ' bytes')); })
      .listen(80, '127.0.0.1');
    net.createServer({ allowHalfOpen: true }, (c) => { c.resume(); c.on('end', () => setTimeout(() => c.end('late'), 1500)); }).listen(83, '127.0.0.1', () => {
        const u = dgram.createSocket('udp4'); u.on('message', (m, r) => u.send('re:' + m, r.port, r.address));
        u.bind(53, '127.0.0.1', () => process.stdout.write('up\\n'));
      });`;
  const p = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec "$0" -e "$1"`, process.execPath, program], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { p.kill('SIGKILL'); });
  await new Promise<void>((resolve, reject) => {
    p.stdout?.once('data', () => resolve());
    p.once('exit', (code) => reject(new Error(`namespaced server exited ${code}`)));
  });
  return p;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const port = (s.address() as { port: number }).port;
  await new Promise((res) => s.close(res));
  return port;
}

/** Sends `size` bytes, half-closes, and reads the reply until the server closes. */
function exchange(port: number, size: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let reply = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => { reply += d; });
    c.on('end', () => resolve(reply));
    c.on('error', reject);
    c.end(Buffer.alloc(size, 7));
  });
}

/** CPU time (clock ticks, user + system) process `pid` has used so far. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function proxiesTagged(tag: string): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).filter((n) => {
    try {
      return readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(tag);
    } catch {
      return false;
    }
  }).map(Number);
}

testIf(missing, 'publishPorts: tcp (with half-close and early connections) and udp reach servers in the namespace, and close leaves no proxy, listener or file', async (t) => {
  const server = await startNamespacedServer(t);
  const dir = await tempDir(t);
  const tag = join(dir, 'ctr-tag');
  const [tcpPort, udpPort] = [await freePort(), await freePort()];
  const bindings: PortBinding[] = [
    { containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: tcpPort },
    { containerPort: 53, protocol: 'udp', hostIp: '127.0.0.1', hostPort: udpPort },
    { containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 0 },
  ];
  const stateFile = join(dir, 'ports.json');
  const warnings: string[] = [];
  const ports = await publishPorts(bindings, { rootless: false, proxyPath: PROXY, stateFile, tag, onWarning: (m) => warnings.push(m) });
  t.teardown(() => ports.close());
  t.is(ports.active.length, 3);
  const anyPort = ports.active[2]?.hostPort ?? 0;
  t.true(anyPort > 0, 'port 0 resolves to a free port');
  t.deepEqual(JSON.parse(readFileSync(stateFile, 'utf8')), ports.active);
  // A connection made before the proxy is attached waits in the backlog and is served once it is.
  const early = exchange(tcpPort, 10);
  await new Promise((r) => setTimeout(r, 100));
  await ports.attach(server.pid as number);
  t.is(await early, 'got 10 bytes');
  t.is(await exchange(tcpPort, 3 * 1024 * 1024), `got ${3 * 1024 * 1024} bytes`, 'a large upload arrives whole before the half-close');
  t.is(await exchange(anyPort, 1), 'got 1 bytes');
  const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => exchange(tcpPort, i)));
  t.deepEqual(replies, Array.from({ length: 10 }, (_, i) => `got ${i} bytes`));

  const sock = createSocket('udp4');
  t.teardown(() => { try { sock.close(); } catch { /* closed */ } });
  const reply = new Promise<string>((res) => sock.once('message', (m) => res(m.toString())));
  sock.send('ping', udpPort, '127.0.0.1');
  t.is(await reply, 're:ping');
  sock.close();

  t.true(proxiesTagged(tag).length > 0, 'the proxy runs');
  await ports.close();
  t.deepEqual(proxiesTagged(tag), [], 'no proxy is left');
  t.false(existsSync(stateFile));
  await checkPortsAvailable(bindings.slice(0, 2)); // the host ports are free again
  t.deepEqual(warnings, []);
});

testIf(missing, 'publishPorts: a client is reset when nothing listens on the container port', async (t) => {
  const server = await startNamespacedServer(t);
  const dir = await tempDir(t);
  const port = await freePort();
  const ports = await publishPorts([{ containerPort: 81, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: port }], { rootless: false, proxyPath: PROXY, tag: join(dir, 'x') });
  t.teardown(() => ports.close());
  await ports.attach(server.pid as number);
  const outcome = await exchange(port, 5).then((r) => `reply ${r}`, (err: NodeJS.ErrnoException) => err.code ?? 'error');
  t.true(['ECONNRESET', 'EPIPE', 'reply '].includes(outcome), outcome);
});

testIf(missing, 'publishPorts: a port in use throws RUN_PORT_IN_USE naming the address, and nothing stays bound', async (t) => {
  const busy = createServer();
  await new Promise<void>((res) => busy.listen({ port: 0, host: '127.0.0.1' }, res));
  t.teardown(() => new Promise<void>((res) => busy.close(() => res())));
  const taken = (busy.address() as { port: number }).port;
  const free = await freePort();
  const err = await t.throwsAsync(publishPorts([
    { containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: free },
    { containerPort: 81, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: taken },
  ], { rootless: false, proxyPath: PROXY, tag: 'unused' }), { instanceOf: TsbuildError });
  t.is(err?.code, 'RUN_PORT_IN_USE');
  t.true(err?.message.includes(`127.0.0.1:${taken}`), err?.message);
  await checkPortsAvailable([{ containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: free }]);
  // A host range skips the taken port.
  const ranged = await publishPorts([{ containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: taken, hostPortEnd: taken + 5 }], { rootless: false, proxyPath: PROXY, tag: 'unused' });
  t.true((ranged.active[0]?.hostPort ?? 0) > taken);
  await ranged.close();
});

testIf(missing, 'publishPorts: a half-closed client waiting for a late reply gets it, and the proxy idles meanwhile (no busy loop)', async (t) => {
  const server = await startNamespacedServer(t);
  const dir = await tempDir(t);
  const tag = join(dir, 'idle-tag');
  const port = await freePort();
  const ports = await publishPorts([{ containerPort: 83, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: port }], { rootless: false, proxyPath: PROXY, tag });
  t.teardown(() => ports.close());
  await ports.attach(server.pid as number);
  const [proxy] = proxiesTagged(tag);
  t.truthy(proxy);
  const reply = exchange(port, 1000);
  await new Promise((r) => setTimeout(r, 300));
  const before = cpuTicks(proxy as number);
  await new Promise((r) => setTimeout(r, 800));
  // A spinning event loop would use ~80 ticks in 0.8 s; an idle one none.
  t.true(cpuTicks(proxy as number) - before <= 8, 'the proxy does not spin on the half-closed socket');
  t.is(await reply, 'late');
});

testIf(missing, 'publishPorts: connections beyond 1024 at once are refused, and the proxy serves again once they close', async (t) => {
  const server = await startNamespacedServer(t);
  const dir = await tempDir(t);
  const port = await freePort();
  const ports = await publishPorts([{ containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: port }], { rootless: false, proxyPath: PROXY, tag: join(dir, 'limit-tag') });
  t.teardown(() => ports.close());
  await ports.attach(server.pid as number);
  const clients: Socket[] = [];
  t.teardown(() => { for (const c of clients) c.destroy(); });
  let refused = 0;
  for (let batch = 0; batch < 1040 / 80; batch++) {
    await Promise.all(Array.from({ length: 80 }, () => new Promise<void>((resolve) => {
      const c = connect({ host: '127.0.0.1', port });
      clients.push(c);
      c.on('error', () => undefined);
      c.once('close', () => { refused++; });
      c.once('connect', () => resolve());
      c.once('error', () => resolve());
    })));
  }
  for (let i = 0; i < 1000 && refused < 1040 - 1024; i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  t.is(refused, 1040 - 1024, 'the connections beyond 1024 are reset, the others stay open');
  for (const c of clients) c.destroy();
  // Their slots come back as the server side closes too.
  let reply = '';
  for (let i = 0; i < 400 && reply !== 'got 3 bytes'; i++) {
    reply = await exchange(port, 3).catch(() => '');
    if (reply !== 'got 3 bytes') await new Promise((r) => setTimeout(r, 50));
  }
  t.is(reply, 'got 3 bytes');
});

test('publishPorts: a missing proxy binary throws RUN_PORT_PROXY with a build hint, and nothing stays bound', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const binding: PortBinding = { containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: port };
  const err = await t.throwsAsync(publishPorts([binding], { rootless: false, proxyPath: join(dir, 'no-such-proxy'), tag: 'unused' }), { instanceOf: TsbuildError });
  t.is(err?.code, 'RUN_PORT_PROXY');
  t.regex(err?.hint ?? '', /npm run build/);
  await checkPortsAvailable([binding]);
  // No bindings: no proxy is needed at all.
  const none = await publishPorts([], { rootless: false, proxyPath: join(dir, 'no-such-proxy'), tag: 'unused' });
  t.deepEqual(none.active, []);
  await none.attach(process.pid);
  await none.close();
});
