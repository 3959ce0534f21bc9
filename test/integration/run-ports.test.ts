import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MediaType, type Digest, type ImageConfig, type ImageManifest } from '../../src/core/index.js';
import { createManifest, editContainerConfig, serializeDocument } from '../../src/image/index.js';
import { openStore } from '../../src/store/index.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { processesMentioning, waitForNoProcessMentioning, watchContainerStore } from '../helpers/containers.js';
import { cliAsUser, rootlessBusyboxStore, rootlessMissing } from '../helpers/rootless.js';
import { tempDir } from '../helpers/tmp.js';

const noBusybox = await busyboxMissing();
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = join(REPO, 'src/cli/main.ts');
/** A detached busybox web server on port 80 of the container, serving /www/index.html = `hello from CTR`. */
const HTTPD = ['sh', '-c', 'mkdir -p /www && echo "hello from $HOSTNAME" > /www/index.html && exec httpd -f -p 80 -h /www'];

type Run = (...a: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/** A host TCP port that is free right now. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const port = (s.address() as { port: number }).port;
  await new Promise((res) => s.close(res));
  return port;
}

/** True when nothing listens on host port `port` (we can bind it on 0.0.0.0). */
async function portIsFree(port: number): Promise<boolean> {
  const s: Server = createServer();
  const ok = await new Promise<boolean>((res) => {
    s.once('error', () => res(false));
    s.listen({ port, host: '0.0.0.0', exclusive: true }, () => res(true));
  });
  if (ok) await new Promise((res) => s.close(res));
  return ok;
}

/**
 * GET http://127.0.0.1:port/path with node's http client; rejects on a connection error or after
 * 30 s without a byte (busybox httpd's small listen backlog drops SYNs of a burst of connections:
 * the retransmits take seconds on a loaded CI machine).
 */
function get(port: number, path = '/index.html'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** GETs until the server answers (the container's server starts after `run -d` returns). */
async function getWhenUp(port: number): Promise<{ status: number; body: string }> {
  let last: unknown;
  for (let i = 0; i < 600; i++) {
    try {
      return await get(port);
    } catch (err) {
      last = err;
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  throw new Error(`nothing answered on port ${port}: ${(last as Error).message}`);
}

/** GET http://127.0.0.1:port/path and resolve with the sha256 (hex) of the body. */
function downloadHash(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const h = createHash('sha256');
      res.on('data', (c: Buffer) => h.update(c));
      res.on('end', () => resolve(h.digest('hex')));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends `mib` MiB of random bytes to port, half-closes, reads the reply until the server closes; resolves with the sha256 sent and the reply. */
async function uploadRandom(port: number, mib: number): Promise<{ sent: string; reply: string }> {
  const c = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(c, 'connect');
  let reply = '';
  c.setEncoding('utf8');
  c.on('data', (d: string) => { reply += d; });
  const ended = once(c, 'end');
  const h = createHash('sha256');
  for (let i = 0; i < mib; i++) {
    const chunk = randomBytes(1024 * 1024);
    h.update(chunk);
    if (!c.write(chunk)) await once(c, 'drain');
  }
  c.end(); // half-close: the server sees EOF, then answers on the still open other direction
  await ended;
  c.destroy();
  return { sent: h.digest('hex'), reply };
}

/** Pids of port proxies whose command line mentions `text`. */
function proxiesMentioning(text: string): number[] {
  return processesMentioning(text).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('tsbuild-port-proxy');
    } catch {
      return false;
    }
  });
}

async function until(what: string, cond: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A store with the busybox image; every container is force-removed when the test ends. */
async function setup(t: ExecutionContext): Promise<{ dir: string; root: string; r: Run; finish: () => Promise<void> }> {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const { r, finish } = watchContainerStore(t, root, { processesMessage: 'no monitor, container or port proxy process is left' });
  return { dir, root, r, finish };
}

/** Stores `name` as the busybox image with `ExposedPorts` set (same layer, new config). */
async function tagWithExposedPorts(root: string, r: Run, name: string, exposed: readonly string[]): Promise<void> {
  const store = await openStore(root);
  const info = (JSON.parse((await r('inspect', 'busybox')).stdout) as [{ Descriptor: { digest: string } }])[0];
  const baseManifest = (await store.blobs.readJson(info.Descriptor.digest as Digest)).value as ImageManifest;
  const baseConfig = (await store.blobs.readJson(baseManifest.config.digest)).value as ImageConfig;
  const config = editContainerConfig(baseConfig, (c) => ({ ...c, ExposedPorts: Object.fromEntries(exposed.map((k) => [k, {}])) }));
  const c = await store.blobs.putBytes(serializeDocument(config));
  const manifest = createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, baseManifest.layers);
  const m = await store.blobs.putBytes(serializeDocument(manifest));
  await store.refs.set(`docker.io/library/${name}`, { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size });
}

/** Runs the real CLI as a child process (so its exit is real) and returns its pid and result. */
function cliProcess(root: string, args: readonly string[]): Promise<{ pid: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', MAIN, '--root', root, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    p.once('error', reject);
    p.once('close', (code) => resolve({ pid: p.pid ?? 0, code, stdout, stderr }));
  });
}

testIf(noBusybox, 'run -p: a detached httpd answers through the published port, ps/port/inspect show the binding, and rm leaves no process or listener', async (t) => {
  const { root, r, finish } = await setup(t);
  const port = await freePort();
  // The CLI is a real process that exits: the monitor and its forwarder keep serving without it.
  const run = await cliProcess(root, ['run', '-d', '--name', 'web', '--hostname', 'webhost', '-p', `${port}:80`, 'busybox', ...HTTPD]);
  t.is(run.code, 0, run.stderr);
  const id = run.stdout.trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  t.false(existsSync(`/proc/${run.pid}`), 'the CLI process is gone');
  const res = await getWhenUp(port);
  t.is(res.status, 200);
  t.is(res.body, 'hello from webhost\n');

  const ps = await r('ps');
  t.regex(ps.stdout.split('\n')[0] ?? '', /PORTS/);
  t.true(ps.stdout.includes(`0.0.0.0:${port}->80/tcp`), ps.stdout);
  const row = JSON.parse((await r('ps', '--format', 'json')).stdout.trim()) as { Ports: string };
  t.is(row.Ports, `0.0.0.0:${port}->80/tcp`);
  t.is((await r('port', 'web')).stdout, `80/tcp -> 0.0.0.0:${port}\n`);
  t.is((await r('port', 'web', '80')).stdout, `0.0.0.0:${port}\n`);
  t.is((await r('port', 'web', '80/tcp')).stdout, `0.0.0.0:${port}\n`);
  const none = await r('port', 'web', '81');
  t.is(none.code, 1);
  t.regex(none.stderr, /no public port '81\/tcp' published for web/);
  const [doc] = JSON.parse((await r('container', 'inspect', 'web')).stdout) as [{
    HostConfig: { PortBindings: unknown; PublishAllPorts: boolean }; NetworkSettings: { Ports: unknown }; Config: { ExposedPorts: unknown };
  }];
  t.deepEqual(doc.HostConfig.PortBindings, { '80/tcp': [{ HostIp: '', HostPort: String(port) }] });
  t.false(doc.HostConfig.PublishAllPorts);
  t.deepEqual(doc.NetworkSettings.Ports, { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: String(port) }] });
  t.deepEqual(doc.Config.ExposedPorts, { '80/tcp': {} });
  // Many connections in a row, several at once: each one reaches the server.
  const many = await Promise.all(Array.from({ length: 20 }, () => get(port)));
  t.true(many.every((m) => m.status === 200 && m.body === 'hello from webhost\n'));

  t.is(proxiesMentioning(join(root, 'containers', id)).length, 1, 'the port proxy runs while the container runs');
  t.is((await r('stop', '-t', '1', 'web')).code, 0);
  t.true(await portIsFree(port), 'the host port is released when the container stops');
  t.deepEqual(processesMentioning(join(root, 'containers', id)), [], 'no port proxy is left after stop');
  t.is((await r('port', 'web')).stdout, '', 'a stopped container has no live bindings');
  t.false((await r('ps', '-a')).stdout.includes('->'));
  // start publishes the same port again.
  t.is((await r('start', 'web')).code, 0);
  t.is((await getWhenUp(port)).body, 'hello from webhost\n');
  t.is((await r('rm', '-f', 'web')).code, 0);
  t.true(await portIsFree(port), 'rm releases the host port');
  t.deepEqual(await readdir(join(root, 'containers')).then((n) => n.filter((x) => /^[0-9a-f]{64}$/.test(x))), []);
  await finish();
});

testIf(noBusybox, 'run -p: 50 MiB cross byte-identical both ways, a half-closed client gets its reply, 100 parallel connections are served, and kill -9 of the monitor takes the proxy along', async (t) => {
  const { root, r, finish } = await setup(t);
  const [web, sink] = [await freePort(), await freePort()];
  // httpd serves 50 MiB of random bytes and their sha256; nc answers each connection with the sha256 of what it read until EOF.
  const script = 'mkdir -p /www && dd if=/dev/urandom of=/www/big bs=1M count=50 2>/dev/null && sha256sum /www/big | cut -c1-64 > /www/big.sha'
    + ' && echo ok > /www/index.html && httpd -p 80 -h /www && exec nc -ll -p 81 -e sha256sum';
  const run = await r('run', '-d', '--name', 'bulk', '-p', `${web}:80`, '-p', `${sink}:81`, 'busybox', 'sh', '-c', script);
  t.is(run.code, 0, run.stderr);
  const id = run.stdout.trim();
  t.is((await getWhenUp(web)).body, 'ok\n');
  const expected = (await get(web, '/big.sha')).body.trim();
  t.regex(expected, /^[0-9a-f]{64}$/);
  t.is(await downloadHash(web, '/big'), expected, 'the download arrives byte-identical');
  const up = await uploadRandom(sink, 50);
  t.is(up.reply.split(' ')[0], up.sent, 'the upload arrives byte-identical, and the reply after the half-close comes back');
  const many = await Promise.all(Array.from({ length: 100 }, () => get(web)));
  t.is(many.filter((m) => m.status === 200 && m.body === 'ok\n').length, 100);

  const proxies = proxiesMentioning(join(root, 'containers', id));
  t.is(proxies.length, 1, 'one native proxy forwards both ports');
  const state = JSON.parse(await readFile(join(root, 'containers', id, 'state.json'), 'utf8')) as { monitorPid: number };
  process.kill(state.monitorPid, 'SIGKILL');
  await until('the port proxy to exit with its monitor', () => proxiesMentioning(join(root, 'containers', id)).length === 0);
  await until('the host ports to be released', async () => await portIsFree(web) && await portIsFree(sink));
  t.is((await r('rm', '-f', 'bulk')).code, 0);
  await finish();
});

testIf(noBusybox, 'run -P: every ExposedPorts of the image is published on a free host port, unexposed ones stay unpublished', async (t) => {
  const { root, r, finish } = await setup(t);
  await tagWithExposedPorts(root, r, 'exposing:1', ['80/tcp', '8080']);
  const run = await r('run', '-d', '--name', 'all', '-P', 'exposing:1', ...HTTPD);
  t.is(run.code, 0, run.stderr);
  const lines = (await r('port', 'all')).stdout.split('\n').filter((l) => l !== '');
  t.is(lines.length, 2, lines.join('\n'));
  t.regex(lines[0] ?? '', /^80\/tcp -> 0\.0\.0\.0:\d+$/);
  t.regex(lines[1] ?? '', /^8080\/tcp -> 0\.0\.0\.0:\d+$/);
  const hostPort = Number((lines[0] ?? '').split(':').at(-1));
  t.is((await getWhenUp(hostPort)).status, 200);
  const [doc] = JSON.parse((await r('container', 'inspect', 'all')).stdout) as [{ HostConfig: { PublishAllPorts: boolean; PortBindings: unknown }; NetworkSettings: { Ports: Record<string, unknown> } }];
  t.true(doc.HostConfig.PublishAllPorts);
  t.deepEqual(doc.HostConfig.PortBindings, {});
  t.deepEqual(Object.keys(doc.NetworkSettings.Ports), ['80/tcp', '8080/tcp']);
  // Without -P the exposed ports are listed but not published.
  t.is((await r('run', '-d', '--name', 'some', '-p', '0:80', 'exposing:1', ...HTTPD)).code, 0);
  const row = (await r('ps', '--format', 'json')).stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { Names: string; Ports: string }).find((x) => x.Names === 'some');
  t.regex(row?.Ports ?? '', /^0\.0\.0\.0:\d+->80\/tcp, 8080\/tcp$/);
  await finish();
});

testIf(noBusybox, 'run -p: a host port in use fails with a clear error and leaves no container, name, process or mount behind', async (t) => {
  const { root, r, finish } = await setup(t);
  const busy = createServer();
  await new Promise<void>((res) => busy.listen({ port: 0, host: '0.0.0.0' }, res));
  t.teardown(() => new Promise<void>((res) => busy.close(() => res())));
  const port = (busy.address() as { port: number }).port;
  for (const detach of [['-d'], []]) {
    const res = await r('run', ...detach, '--name', 'clash', '-p', `${port}:80`, 'busybox', ...HTTPD);
    t.is(res.code, 125);
    t.true(res.stderr.includes(`0.0.0.0:${port}`) && res.stderr.includes('already allocated'), res.stderr);
    t.is((await r('ps', '-aq')).stdout, '', 'no container is left');
  }
  // The name was not kept: it can be used at once.
  const other = await freePort();
  t.is((await r('run', '-d', '--name', 'clash', '-p', `${other}:80`, 'busybox', ...HTTPD)).code, 0);
  t.is((await getWhenUp(other)).status, 200);
  await finish();
});

testIf(noBusybox, 'run -p: invalid specs fail with CLI_BAD_VALUE quoting the spec, before anything is created', async (t) => {
  const { r, finish } = await setup(t);
  for (const spec of ['80:abc', '70000:80', '1.2.3:80:80', '8000-8002:80-81', '80/sctpx', 'a:b:c:d']) {
    const res = await r('run', '-d', '-p', spec, 'busybox', 'true');
    t.is(res.code, 125, spec);
    t.true(res.stderr.includes(`"${spec}"`), res.stderr);
    t.regex(res.stderr, /CLI_BAD_VALUE|invalid port spec/);
  }
  const rootfs = await r('run', '--rootfs', '/', '-p', '80:80', 'true');
  t.is(rootfs.code, 125);
  t.regex(rootfs.stderr, /--publish needs an image/);
  t.is((await r('ps', '-aq')).stdout, '');
  await finish();
});

testIf(noBusybox, 'run -p: ranges publish one to one, and a foreground container is reachable while it runs', async (t) => {
  const { r, finish } = await setup(t);
  // Two adjacent free ports (other tests open ephemeral ports in parallel: try a few bases).
  let base = await freePort();
  for (let i = 0; i < 20 && !(await portIsFree(base) && await portIsFree(base + 1)); i++) base = await freePort();
  const [p1, p2] = [base, base + 1];
  t.true(await portIsFree(p2));
  const res = await r('run', '-d', '--name', 'multi', '-p', `${p1}-${p2}:80-81`, '-p', '127.0.0.1::82', 'busybox', 'sh', '-c',
    'mkdir /a /b; echo a > /a/index.html; echo b > /b/index.html; httpd -p 80 -h /a; exec httpd -f -p 81 -h /b');
  t.is(res.code, 0, res.stderr);
  t.is((await getWhenUp(p1)).body, 'a\n');
  t.is((await getWhenUp(p2)).body, 'b\n');
  const ps = (await r('ps')).stdout;
  t.true(ps.includes(`0.0.0.0:${p1}-${p2}->80-81/tcp`), ps);
  t.regex(ps, /127\.0\.0\.1:\d+->82\/tcp/);

  // In the foreground the CLI owns the container and its forwarder.
  const fgPort = await freePort();
  const fg = r('run', '--rm', '--name', 'fg', '-p', `${fgPort}:80`, 'busybox', 'sh', '-c', 'mkdir /w; echo foreground > /w/index.html; exec httpd -f -p 80 -h /w');
  const ended = fg.then((x) => { throw new Error(`the foreground container ended first: ${x.code} ${x.stderr}`); });
  t.is((await Promise.race([getWhenUp(fgPort), ended])).body, 'foreground\n');
  t.true((await r('ps')).stdout.includes(`0.0.0.0:${fgPort}->80/tcp`));
  t.is((await r('kill', 'fg')).code, 0);
  t.is((await fg).code, 137);
  await until('the foreground port to be released', () => portIsFree(fgPort));
  await finish();
});

const noRootless = rootlessMissing() ?? noBusybox;

testIf(noRootless, 'run -p rootless: an unprivileged user publishes a detached httpd, reached with node\'s http client, and rm leaves nothing', async (t) => {
  const { home, root } = await rootlessBusyboxStore(t, 'tsbuild-run-ports-rootless-');
  const port = await freePort();
  let r = await cliAsUser(home, root, ['run', '-d', '--name', 'web', '--hostname', 'rootless', '-p', `${port}:80`, 'busybox', ...HTTPD]);
  t.is(r.code, 0, r.stderr);
  const res = await getWhenUp(port);
  t.is(res.status, 200);
  t.is(res.body, 'hello from rootless\n');
  t.is((await cliAsUser(home, root, ['port', 'web', '80'])).stdout, `0.0.0.0:${port}\n`);
  // Below 1024 an unprivileged user cannot bind: a clear error, nothing created.
  r = await cliAsUser(home, root, ['run', '-d', '-p', '81:80', 'busybox', ...HTTPD]);
  if (Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8')) > 81) {
    t.is(r.code, 125);
    t.regex(r.stderr, /not permitted/);
  }
  r = await cliAsUser(home, root, ['rm', '-f', 'web']);
  t.is(r.code, 0, r.stderr);
  t.true(await portIsFree(port), 'rm releases the host port');
  const ids = (await cliAsUser(home, root, ['ps', '-aq'])).stdout.split('\n').filter((s) => s !== '');
  if (ids.length > 0) await cliAsUser(home, root, ['rm', '-f', ...ids]);
  // Processes end asynchronously after rm (the monitor's children see their exit pipe close).
  await waitForNoProcessMentioning(root);
  t.deepEqual(processesMentioning(root), [], 'no monitor, container or port proxy process is left');
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(root), 'no mount is left');
});

test('run-ports helpers: portIsFree sees a listener', async (t) => {
  const s = createServer();
  await new Promise<void>((res) => s.listen({ port: 0, host: '0.0.0.0' }, res));
  const port = (s.address() as { port: number }).port;
  t.false(await portIsFree(port));
  await new Promise((res) => s.close(res));
  t.true(await portIsFree(port));
});
