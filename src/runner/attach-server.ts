/**
 * The monitor's side of `attach`: a unix socket (attach.sock in the container's directory) that
 * any number of clients connect to. Every client gets the container's live output (framed, stdout
 * and stderr apart); what clients send goes to the container's stdin when it was created with
 * `-i`; a tty client's size is given to the container's pty. When a run ends each client gets
 * its exit code and is disconnected.
 */
import { execFile } from 'node:child_process';
import { readdirSync, unlinkSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { PassThrough, Writable, type Readable } from 'node:stream';
import type { ContainerStore } from './container-store.js';
import type { LogWriter } from './logs.js';
import { attachSocketPathOf, encodeFrame, isAttachSocketName, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDOUT, FrameDecoder, withShortSocketPath } from './attach-protocol.js';

/** A listening attach socket. */
export interface AttachServer {
  /** Receive the container's output (tee them into the log writer): each write goes to every client. */
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** The stdin of the next run, fed by the clients (undefined without `-i`: stdin is ignored); a new one after each endRun. */
  stdinForRun(): Readable | undefined;
  /** Resolves once a client is connected, or after `ms`. */
  waitForClient(ms: number): Promise<void>;
  /** Sends every client the exit code of the run that ended and disconnects it; ends that run's stdin. */
  endRun(exitCode: number): void;
  /** Stops listening (removes the socket) and disconnects every client. */
  close(): Promise<void>;
}

/** What the server needs to know about its container. */
export interface AttachServerOptions {
  /** `-i`: clients' input goes to the container's stdin. */
  readonly openStdin: boolean;
  /** `-t`: clients' sizes resize the container's pty. */
  readonly tty: boolean;
  /** This monitor's pid (names the socket). */
  readonly ownerPid: number;
}

/**
 * Sets the size of the pty the container's first process has on fd 0/1/2 (TIOCSWINSZ through
 * `stty -F`, which node cannot do itself); the kernel signals SIGWINCH to its foreground group.
 * Best effort: a process that closed its pty keeps its size.
 */
async function resizePty(pid: number, rows: number, cols: number): Promise<void> {
  for (const fd of [0, 1, 2]) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (!target.startsWith('/dev/pts/')) continue;
    await new Promise<void>((resolve) => {
      execFile('stty', ['-F', `/proc/${pid}/fd/${fd}`, 'rows', String(rows), 'cols', String(cols)], () => resolve());
    });
    return;
  }
}

/** Bytes of output that may wait for one attached client before it is disconnected. */
const MAX_CLIENT_BACKLOG = 16 * 1024 * 1024;

/**
 * Starts listening on container `id`'s attach socket for this process (the monitor). Sockets of
 * earlier monitors are removed: they are gone or closing down (a closing one keeps its clients).
 */
export async function startAttachServer(containers: ContainerStore, id: string, options: AttachServerOptions): Promise<AttachServer> {
  const path = attachSocketPathOf(containers, id, options.ownerPid);
  const dir = containers.dirOf(id);
  // Synchronous: a container's directory holds a handful of files, and every attached run waits for this.
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    // no directory: listen() reports it
  }
  for (const name of names) {
    if (!isAttachSocketName(name)) continue;
    try {
      unlinkSync(join(dir, name));
    } catch {
      // gone meanwhile
    }
  }
  const clients = new Set<Socket>();
  // Every open connection, also those ended by endRun whose client has not closed yet (close() destroys them).
  const open = new Set<Socket>();
  // The stdin of the current or next run: input that arrives before a run starts (start -a -i) waits in it.
  let stdin: PassThrough | undefined = options.openStdin ? new PassThrough() : undefined;
  let clientWaiters: (() => void)[] = [];
  const broadcast = (type: number, chunk: Buffer): void => {
    if (clients.size === 0 || chunk.length === 0) return;
    const frame = encodeFrame(type, chunk);
    for (const c of clients) {
      // A client that stops reading is dropped once MAX_CLIENT_BACKLOG waits for it: the container
      // never waits for a client, and the monitor's memory stays bounded.
      if (c.writableLength > MAX_CLIENT_BACKLOG) {
        clients.delete(c);
        c.destroy();
      } else {
        c.write(frame);
      }
    }
  };
  const onResize = (text: string): void => {
    const m = /^(\d+) (\d+)$/.exec(text);
    if (!options.tty || m === null) return;
    void containers.read(id).then((e) => {
      const pid = e?.state.status === 'running' ? e.state.pid : 0;
      if (pid > 0) return resizePty(pid, Number(m[1]), Number(m[2]));
      return undefined;
    }).catch(() => undefined);
  };
  const server: Server = createServer((socket) => {
    clients.add(socket);
    open.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clients.delete(socket);
      open.delete(socket);
    });
    const decoder = new FrameDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.type === FRAME_STDIN && options.openStdin) stdin?.write(f.payload);
        else if (f.type === FRAME_RESIZE) onResize(f.payload.toString('utf8'));
      }
    });
    for (const w of clientWaiters.splice(0)) w();
  });
  server.on('error', () => undefined);
  await withShortSocketPath(path, (short) => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(short, () => {
      server.off('error', reject);
      resolve();
    });
  }));
  const sink = (type: number): Writable => new Writable({
    write(chunk: Buffer, _enc, cb) {
      broadcast(type, chunk);
      cb();
    },
  });
  return {
    stdout: sink(FRAME_STDOUT),
    stderr: sink(FRAME_STDERR),
    stdinForRun() {
      return stdin;
    },
    waitForClient(ms) {
      if (clients.size > 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        clientWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    endRun(exitCode) {
      stdin?.end();
      stdin = options.openStdin ? new PassThrough() : undefined;
      const frame = encodeFrame(FRAME_EXIT, String(exitCode));
      for (const c of clients) c.end(frame);
      clients.clear();
    },
    async close() {
      clientWaiters = [];
      // The exit frames written by endRun are flushed first unless a client stopped reading.
      await Promise.all([...open].map((c) => new Promise<void>((resolve) => {
        if (c.destroyed) resolve();
        else if (c.writableEnded) {
          const timer = setTimeout(() => c.destroy(), 5000);
          c.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
        } else {
          c.destroy();
          resolve();
        }
      })));
      clients.clear();
      // close() closes the listening socket at once (nothing connects after it); its callback, a turn of
      // the event loop later, is not waited for.
      server.close();
      try {
        unlinkSync(path);
      } catch {
        // removed with its container (--rm), or by a later monitor
      }
    },
  };
}

/**
 * The end of one run of a container with attached clients (the foreground `run` and the monitor):
 * once everything the run wrote has reached the log and the clients, sends them its exit code, or,
 * for a run that failed to start (e.g. command not found), the code recorded in the container's
 * state (125 without one).
 */
export async function endAttachedRun(attach: AttachServer, log: LogWriter, containers: ContainerStore, id: string, exitCode: number | undefined): Promise<void> {
  // A stream with nothing buffered or in flight has delivered all it got (a silent run skips the round).
  const busy = [log.stdout, log.stderr].filter((w) => w.writableLength > 0 || w.writableNeedDrain);
  await Promise.all(busy.map((w) => new Promise<void>((resolve) => w.write(Buffer.alloc(0), () => resolve()))));
  attach.endRun(exitCode ?? (await containers.read(id).catch(() => undefined))?.state.exitCode ?? 125);
}
