import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { rename, rm, writeFile } from 'node:fs/promises';
import { createServer, isIPv6, type Server } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { TsbuildError } from '../core/index.js';
import { describeBinding, hostAddressOf, type ActivePort, type PortBinding } from './ports.js';

/** How {@link publishPorts} runs its forwarder. */
export interface PublishOptions {
  /** True when the container has its own user namespace (rootless): the proxy joins it too. */
  readonly rootless: boolean;
  /** The native forwarder (build/tsbuild-port-proxy, beside the launcher). */
  readonly proxyPath: string;
  /** Where the live bindings are recorded (`ports.json` of the container); removed on close. */
  readonly stateFile?: string;
  /** A text put on the proxy's command line so it can be found (the container directory). */
  readonly tag: string;
  /** Receives problems that do not stop the container (the proxy could not attach or died). */
  readonly onWarning?: (message: string) => void;
}

/** Published ports of one running container: bound on the host, forwarded once attached. */
export interface PublishedPorts {
  /** The live bindings (host ports of `0` resolved). */
  readonly active: readonly ActivePort[];
  /** Has the proxy join the network namespace of `pid` and start forwarding. Never throws (problems go to onWarning). */
  attach(pid: number): Promise<void>;
  /** Stops the proxy (which releases every host port) and removes the state file. Idempotent. */
  close(): Promise<void>;
}

type Listener = { kind: 'tcp'; server: Server; port: ActivePort } | { kind: 'udp'; socket: UdpSocket; port: ActivePort };

function bindError(b: PortBinding, err: NodeJS.ErrnoException, hostPort: number): TsbuildError {
  const where = `${hostAddressOf(b)}:${hostPort}`;
  if (err.code === 'EADDRINUSE') {
    return new TsbuildError('RUN_PORT_IN_USE', `cannot publish ${describeBinding(b)}: bind for ${where} failed: port is already allocated`, {
      cause: err, exitCode: 125, hint: 'stop what listens on that port, or publish on another host port (-p OTHERPORT:CTRPORT)',
    });
  }
  if (err.code === 'EACCES') {
    return new TsbuildError('RUN_PORT_DENIED', `cannot publish ${describeBinding(b)}: binding ${where} is not permitted`, {
      cause: err, exitCode: 125, hint: 'ports below 1024 need root (or a lower sysctl net.ipv4.ip_unprivileged_port_start); publish on a port >= 1024',
    });
  }
  if (err.code === 'EADDRNOTAVAIL') {
    return new TsbuildError('RUN_PORT_ADDRESS', `cannot publish ${describeBinding(b)}: ${hostAddressOf(b)} is not an address of this host`, { cause: err, exitCode: 125 });
  }
  return new TsbuildError('RUN_PORT_BIND', `cannot publish ${describeBinding(b)}: ${err.message}`, { cause: err, exitCode: 125 });
}

function listenTcp(host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    // Connections accepted before the agent takes the listener stay paused until handed over.
    const server = createServer({ pauseOnConnect: true });
    server.once('error', reject);
    server.listen({ host, port, exclusive: true, backlog: 511 }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function bindUdp(host: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    socket.once('error', (err) => {
      socket.close();
      reject(err);
    });
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      resolve(socket);
    });
  });
}

async function bindOne(b: PortBinding): Promise<Listener> {
  const host = hostAddressOf(b);
  const last = b.hostPortEnd ?? b.hostPort;
  for (let port = b.hostPort; ; port++) {
    try {
      if (b.protocol === 'udp') {
        const socket = await bindUdp(host, port);
        return { kind: 'udp', socket, port: { containerPort: b.containerPort, protocol: 'udp', hostIp: host, hostPort: socket.address().port } };
      }
      const server = await listenTcp(host, port);
      const addr = server.address();
      const hostPort = typeof addr === 'object' && addr !== null ? addr.port : port;
      return { kind: 'tcp', server, port: { containerPort: b.containerPort, protocol: 'tcp', hostIp: host, hostPort } };
    } catch (err) {
      // A host range (`8000-8010:80`) takes the first free port.
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && port < last) continue;
      throw bindError(b, err as NodeJS.ErrnoException, port);
    }
  }
}

/**
 * Stops listening. A TCP server's fd is closed at once (the port is free when this resolves);
 * its close callback, which waits for accepted connections, is not awaited: those are handed
 * to the agent or destroyed by their owner, and waiting on them could hang a stop.
 */
function closeListener(l: Listener): Promise<void> {
  return new Promise((resolve) => {
    if (l.kind === 'tcp') {
      if (l.server.listening) l.server.close();
      resolve();
    } else {
      try {
        l.socket.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    }
  });
}

async function bindAll(bindings: readonly PortBinding[]): Promise<Listener[]> {
  const listeners: Listener[] = [];
  try {
    for (const b of bindings) listeners.push(await bindOne(b));
    return listeners;
  } catch (err) {
    await Promise.all(listeners.map(closeListener));
    throw err;
  }
}

/**
 * Checks that every host port of `bindings` can be bound now (binds, then releases them), so
 * `run` fails before creating anything. Throws RUN_PORT_IN_USE, RUN_PORT_DENIED, RUN_PORT_ADDRESS.
 */
export async function checkPortsAvailable(bindings: readonly PortBinding[]): Promise<void> {
  await Promise.all((await bindAll(bindings)).map(closeListener));
}


type Proxy = ChildProcessByStdio<Writable, Readable, null>;

/** Reads the proxy's stdout line by line; `next()` rejects when it exits first. */
function lineReader(proxy: Proxy): { next: () => Promise<string> } {
  const lines: string[] = [];
  const waiting: { resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  let buf = '';
  let ended: Error | undefined;
  proxy.stdout.setEncoding('utf8');
  proxy.stdout.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiting.shift();
      if (w === undefined) lines.push(line);
      else w.resolve(line);
    }
  });
  const end = (err: Error): void => {
    ended ??= err;
    for (const w of waiting.splice(0)) w.reject(err);
  };
  proxy.once('exit', (code, sig) => end(new Error(`the port proxy exited (${code ?? sig})`)));
  proxy.once('error', (err) => end(err));
  return {
    next: () => {
      const l = lines.shift();
      if (l !== undefined) return Promise.resolve(l);
      if (ended !== undefined) return Promise.reject(ended);
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
  };
}

/** Parses the proxy's `fail INDEX PORT ERRNAME text` line into an errno-like error. */
function proxyFailure(line: string): { index: number; port: number; err: NodeJS.ErrnoException } {
  const [, index, port, code, ...text] = line.split(' ');
  const err: NodeJS.ErrnoException = new Error(text.join(' ') || line);
  if (code !== undefined) err.code = code;
  return { index: Number(index), port: Number(port), err };
}

/** Stops the proxy: EOF on its stdin, SIGTERM, SIGKILL after 2 s; resolves once it exited (its ports are free then). */
async function stopProxy(proxy: Proxy): Promise<void> {
  if (proxy.exitCode !== null || proxy.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proxy.once('exit', () => resolve()));
  proxy.stdin.end();
  proxy.kill('SIGTERM');
  const timer = setTimeout(() => proxy.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}

/**
 * Binds every host port of `bindings` and records them in `stateFile`: the native proxy
 * (`options.proxyPath`) binds them on the host's network and holds them. `attach(pid)` then has
 * it join the network namespace of the container's process `pid` (and its user namespace when
 * rootless) and forward: TCP by splice(2) to 127.0.0.1:PORT there, UDP per client. Connections
 * that arrive earlier wait in the kernel's backlog. Throws RUN_PORT_IN_USE, RUN_PORT_DENIED,
 * RUN_PORT_ADDRESS, RUN_PORT_BIND, RUN_PORT_PROXY with nothing left bound.
 */
export async function publishPorts(bindings: readonly PortBinding[], options: PublishOptions): Promise<PublishedPorts> {
  if (bindings.length === 0) return { active: [], attach: () => Promise.resolve(), close: () => Promise.resolve() };
  const warn = (m: string): void => options.onWarning?.(`published ports: ${m}`);
  const specs = bindings.map((b) => `${b.protocol},${hostAddressOf(b)},${b.hostPort},${b.hostPortEnd ?? b.hostPort},${b.containerPort}`);
  // SECURITY: the proxy gets no environment and no descriptors but its stdio; it joins only the
  // container's network (and, rootless, user) namespace and connects only to 127.0.0.1 there.
  const proxy: Proxy = spawn(options.proxyPath, [options.tag, ...specs], { stdio: ['pipe', 'pipe', 'inherit'], env: {} });
  proxy.stdin.on('error', () => undefined); // EPIPE after it exited: its exit is reported instead
  const lines = lineReader(proxy);
  const active: ActivePort[] = [];
  try {
    for (;;) {
      const line = await lines.next();
      if (line === 'ready') break;
      if (line.startsWith('fail ')) {
        const f = proxyFailure(line);
        const b = bindings[f.index];
        if (b === undefined) throw f.err;
        throw bindError(b, f.err, f.port);
      }
      const b = bindings[active.length];
      const m = /^bound (\d+)$/.exec(line);
      if (m === null || b === undefined) throw new Error(`unexpected output "${line}"`);
      active.push({ containerPort: b.containerPort, protocol: b.protocol, hostIp: hostAddressOf(b), hostPort: Number(m[1]) });
    }
    if (options.stateFile !== undefined) {
      const tmp = `${options.stateFile}.tmp-${process.pid}`;
      try {
        await writeFile(tmp, `${JSON.stringify(active)}\n`);
        await rename(tmp, options.stateFile);
      } catch (err) {
        throw new TsbuildError('RUN_IO', `cannot write ${options.stateFile}: ${(err as Error).message}`, { cause: err });
      }
    }
  } catch (err) {
    await stopProxy(proxy);
    if (err instanceof TsbuildError) throw err;
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new TsbuildError('RUN_PORT_PROXY', `cannot start the port proxy ${options.proxyPath}: ${(err as Error).message}`, {
      cause: err, exitCode: 125, ...(missing ? { hint: 'build it with: npm run build' } : {}),
    });
  }
  let closed = false;
  let attaching: Promise<void> | undefined;
  proxy.once('exit', (code, sig) => {
    if (!closed) warn(`the port proxy exited (${code ?? sig}): published ports no longer forward`);
  });
  return {
    active,
    attach(pid: number): Promise<void> {
      if (closed || attaching !== undefined) return attaching ?? Promise.resolve();
      proxy.stdin.write(`attach ${pid} ${options.rootless ? 1 : 0}\n`);
      attaching = lines.next().then((line) => {
        if (line !== 'attached' && !closed) warn(proxyFailure(line).err.message);
      }, () => undefined); // an exit is warned about above
      return attaching;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await stopProxy(proxy);
      await attaching;
      if (options.stateFile !== undefined) await rm(options.stateFile, { force: true }).catch(() => undefined);
    },
  };
}
