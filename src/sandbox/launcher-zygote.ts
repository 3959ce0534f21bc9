/**
 * The launcher zygote (launcher/zygote.c): `tsbuild-launcher --zygote`, one small process per
 * Sandbox that opts in (a build's, `SandboxOptions.zygote`), started by its first run that can use it
 * and stopped by `Sandbox.close()` at the end of the build, forks a fresh launcher per run. tsbuild, a
 * large process, then no longer forks and execs one per RUN step (fork copies its page tables and
 * makes every page it writes afterwards fault once). The forked launcher is the same program in the
 * same pristine state as a spawned one and does the same work (spec, namespaces, cgroup, handshake),
 * so isolation is unchanged. Its pipes are made by the zygote; tsbuild opens its ends through
 * /proc/<zygote>/fd/N (pipes reopen there; the zygote then closes its copies).
 * The zygote dies with tsbuild (PR_SET_PDEATHSIG; EOF on its control socket) and its launchers die
 * with it (theirs). A run falls back to spawning the launcher when the zygote cannot be started or
 * is gone, and when its stdio needs more than /dev/null or a pipe for stdout and stderr and
 * /dev/null for stdin (terminals, inherited fds, input streams).
 * `TSBUILD_ZYGOTE=0` turns it off (every run spawns its launcher).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { PipeWriter } from '../sys/index.js';
import { forwardOutput, type LauncherProcess } from './launcher-process.js';
import type { OutputSink, SandboxStdio } from './sandbox.js';

/** How a forked launcher's stdout or stderr is made: 'p' a pipe forwarded to the caller's stream, 'n' /dev/null. */
type OutputMode = 'p' | 'n';

function outputMode(s: OutputSink | undefined): OutputMode | undefined {
  if (s === 'ignore') return 'n';
  return typeof s === 'object' ? 'p' : undefined;
}

/** The zygote's output modes for `stdio`, or undefined when a launcher must be spawned for it. */
export function zygoteModes(stdio: SandboxStdio): readonly [OutputMode, OutputMode] | undefined {
  if ((stdio.stdin !== undefined && stdio.stdin !== 'ignore') || stdio.callerRestoresTerminal === true) return undefined;
  const out = outputMode(stdio.stdout);
  const err = outputMode(stdio.stderr);
  return out === undefined || err === undefined ? undefined : [out, err];
}

const REPLY = /^ok (\d+) (-?\d+) (-?\d+) (-?\d+) (-?\d+) (-?\d+)$/;
// Our ends of the launcher's fds 3 (spec), 4 (status), 5 (go), 1 and 2, reopened without blocking (libuv pipes).
const OPEN_FLAGS = [constants.O_WRONLY, constants.O_RDONLY, constants.O_WRONLY, constants.O_RDONLY, constants.O_RDONLY]
  .map((f) => f | constants.O_NONBLOCK);

/** A started zygote; see the module comment. */
export class LauncherZygote {
  readonly #child: ChildProcess;
  readonly #control: Socket;
  #broken = false;
  #buffered = '';
  /** Resolvers of replies in order (undefined: the zygote is gone). */
  readonly #waiting: ((line: string | undefined) => void)[] = [];
  /** Requests one at a time: a reply's fds are open in the zygote until we took them. */
  #queue: Promise<unknown> = Promise.resolve();
  /** Requests in flight (the control socket keeps the process alive only then). */
  #busy = 0;

  constructor(launcherPath: string) {
    this.#child = spawn(launcherPath, ['--zygote'], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
    this.#child.on('error', () => undefined);
    this.#control = this.#child.stdio[3] as Socket;
    const fail = (): void => {
      this.#broken = true;
      for (const w of this.#waiting.splice(0)) w(undefined);
    };
    this.#child.once('error', fail);
    this.#child.once('exit', fail);
    this.#control.on('error', fail);
    this.#control.once('close', fail);
    this.#control.setEncoding('utf8');
    this.#control.on('data', (text: string) => {
      this.#buffered += text;
      let nl: number;
      while ((nl = this.#buffered.indexOf('\n')) >= 0) {
        const line = this.#buffered.slice(0, nl);
        this.#buffered = this.#buffered.slice(nl + 1);
        this.#waiting.shift()?.(line);
      }
    });
    // An idle zygote never keeps tsbuild running; it ends with us.
    this.#child.unref();
    this.#control.unref();
  }

  /** A launcher forked for `stdio`, or undefined when it must be spawned (stdio the zygote cannot give, or the zygote is gone). */
  launch(stdio: SandboxStdio): Promise<LauncherProcess | undefined> {
    const modes = zygoteModes(stdio);
    if (modes === undefined || this.#broken) return Promise.resolve(undefined);
    const run = this.#queue.then(() => this.#launch(modes, stdio));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Ends the zygote (EOF on its control socket) and resolves once it has exited. */
  async close(): Promise<void> {
    this.#broken = true;
    if (this.#child.exitCode !== null || this.#child.signalCode !== null || this.#child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.ref();
    this.#control.destroy();
    await exited;
  }

  #send(text: string): void {
    if (!this.#broken) this.#control.write(text);
  }

  async #launch(modes: readonly [OutputMode, OutputMode], stdio: SandboxStdio): Promise<LauncherProcess | undefined> {
    const zpid = this.#child.pid;
    if (this.#broken || zpid === undefined) return undefined;
    if (this.#busy++ === 0) this.#control.ref();
    try {
      const reply = await new Promise<string | undefined>((resolve) => {
        this.#waiting.push(resolve);
        this.#send(`s ${modes[0]} ${modes[1]}\n`);
      });
      const m = reply === undefined ? null : REPLY.exec(reply);
      if (m === null) return undefined;
      const pid = Number(m[1]);
      const fds = m.slice(2).map(Number);
      const opened: number[] = [];
      try {
        for (const [i, fd] of fds.entries()) opened.push(fd < 0 ? -1 : openSync(`/proc/${zpid}/fd/${fd}`, OPEN_FLAGS[i] as number));
      } catch {
        for (const fd of opened) if (fd >= 0) closeSync(fd);
        this.#send(`c\nk ${pid}\nw ${pid}\n`);
        // Its /proc/PID/fd cannot be opened (a hardened /proc): every later run would fail the same way.
        this.#broken = true;
        return undefined;
      }
      this.#send('c\n');
      return this.#wrap(pid, opened, stdio);
    } finally {
      if (--this.#busy === 0) this.#control.unref();
    }
  }

  #wrap(pid: number, fds: readonly number[], stdio: SandboxStdio): LauncherProcess {
    const [spec, status, go, out, err] = fds as [number, number, number, number, number];
    const specPipe = new PipeWriter(spec);
    const statusPipe = new Socket({ fd: status, readable: true, writable: false });
    const goPipe = new PipeWriter(go);
    for (const p of [specPipe, goPipe]) p.on('error', () => undefined);
    statusPipe.on('error', () => undefined);
    const outputs: Promise<void>[] = [];
    for (const [fd, to] of [[out, stdio.stdout], [err, stdio.stderr]] as const) {
      if (fd < 0) continue;
      const pipe = new Socket({ fd, readable: true, writable: false });
      pipe.on('error', () => undefined);
      const done = forwardOutput(pipe, to);
      if (done === undefined) pipe.destroy();
      else outputs.push(done);
    }
    // The launcher holds its status fd until it exits: EOF there means it ended, and only then is it waited for (its pid freed).
    let ended = false;
    const exited = new Promise<number | null>((resolve) => statusPipe.once('close', () => {
      ended = true;
      this.#send(`w ${pid}\n`);
      resolve(null);
    }));
    return {
      specPipe, statusPipe, goPipe, outputs, exited,
      startError: new Promise<never>(() => undefined),
      running: () => !ended,
      kill: () => {
        if (!ended) this.#send(`k ${pid}\n`);
      },
      unref: () => undefined,
    };
  }
}

