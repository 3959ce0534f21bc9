/**
 * Starting the C launcher as a child process: its stdio per {@link SandboxStdio} and the three
 * extra pipes of the handshake (fd 3 spec in, fd 4 status out, fd 5 go in). Shared by the sandbox
 * (run mode) and joinProcess (join mode) through the handshake of launcher-handshake.ts. A launcher
 * forked by the zygote (launcher-zygote.ts) has the same shape.
 */
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { TsbuildError } from '../core/index.js';
import { spawnAddonBeside, spawnChild, type NativeStdio, type SpawnedChild } from '../sys/index.js';
import type { OutputSink, SandboxStdio, StdinSource } from './sandbox.js';

/** A started launcher with its handshake pipes. */
export interface LauncherProcess {
  /** fd 3: the encoded spec is written here (then ended). */
  readonly specPipe: Writable;
  /** fd 4: status lines come from here. */
  readonly statusPipe: Readable;
  /** fd 5: ended with 'g' once the child is placed (cgroup, id maps). */
  readonly goPipe: Writable;
  /** Settle when the forwarded stdout/stderr pipes are drained or closed. */
  readonly outputs: Promise<void>[];
  /** Resolves with the launcher's exit code (null when killed or not known) once it ended and its status pipe closed. */
  readonly exited: Promise<number | null>;
  /** Rejects when the launcher cannot be started (never settles otherwise). */
  readonly startError: Promise<never>;
  /** True until the launcher has ended. */
  running(): boolean;
  /** SIGKILLs the launcher (nothing once it has ended). */
  kill(): void;
  /** Lets tsbuild exit while the launcher runs on (detached). */
  unref(): void;
}

/**
 * Ends `pipe` with `data` and, when the pipe took all of it at once, closes our end now. The launcher reads
 * its spec to EOF, and a socket's end() closes its fd only some event-loop turns later (its shutdown
 * request): in a foreground run, which creates its container meanwhile, the launcher waited ~1 ms more for
 * it. What the pipe does not take at once (a spec larger than its buffer) goes on as end() sends it.
 */
export function endAtOnce(pipe: Writable, data: Buffer | string): void {
  pipe.end(data);
  if (pipe.writableLength === 0 && !pipe.destroyed) pipe.destroy();
}

/** Forwards a launcher's output pipe to the caller's stream; returns when it is drained or closed (nothing for fds and modes). */
export function forwardOutput(from: Readable | null, to: OutputSink | undefined): Promise<void> | undefined {
  if (from === null || to === undefined || typeof to === 'string' || typeof to === 'number') return undefined;
  const sink = to as Writable;
  from.on('data', (chunk: Buffer) => sink.write(chunk));
  // A pipe's socket closes after its end, and when it is destroyed (after a kill). Not stream.finished(): its
  // first call costs a run ~0.3 ms (CPU profiles), at the spec's write.
  return new Promise<void>((resolve) => {
    if (from.destroyed) resolve();
    else from.once('close', () => resolve());
  });
}

/** The kind of each of a launcher's stdio fds 0-2, fixed when it is spawned. */
export type LauncherStdioModes = readonly ['inherit' | 'ignore' | 'pipe' | number, 'inherit' | 'ignore' | 'pipe' | number, 'inherit' | 'ignore' | 'pipe' | number];

/** The fd kinds `stdio` needs (stdin ignored and stdout/stderr inherited when absent; streams are piped). */
export function launcherStdioModes(stdio: SandboxStdio): LauncherStdioModes {
  const mode = (s: StdinSource | OutputSink | undefined, dflt: 'inherit' | 'ignore'): 'inherit' | 'ignore' | 'pipe' | number =>
    s === undefined ? dflt : typeof s === 'string' || typeof s === 'number' ? s : 'pipe';
  return [mode(stdio.stdin, 'ignore'), mode(stdio.stdout, 'inherit'), mode(stdio.stderr, 'inherit')];
}

/** A launcher spawned with its stdio fds' kinds but not yet connected to the caller's streams (see Sandbox.prestart). */
export interface StartedLauncher {
  /** Its pid (undefined when the spawn failed: `attach(...).startError` then rejects). */
  readonly pid: number | undefined;
  /** Connects the piped fds to `stdio`'s streams; `stdio` must need the modes the launcher was spawned with. Once. */
  attach(stdio: SandboxStdio): LauncherProcess;
  /** SIGKILLs the launcher (nothing once it has ended). */
  kill(): void;
  /** Resolves once the launcher ended and its status pipe closed. */
  readonly exited: Promise<number | null>;
  /**
   * Reads the next status line before the launcher is attached (`netns` from `--netns`, then `slirp PID`); what
   * follows it stays for the handshake, and so does the line itself when it does not match `expected` (an error
   * the handshake reports). Resolves with the line when it matched, else undefined (also at EOF).
   */
  expectLine(expected: RegExp): Promise<string | undefined>;
  /** True until the launcher has ended (as this process knows it: a dead launcher not yet reaped still counts). */
  running(): boolean;
}

/**
 * `source.pipe(dest)` (data with backpressure, then the end) without Readable.pipe, whose check of `dest`
 * against process.stdout and process.stderr creates both (~0.3 ms each; a terminal's loads node:tty):
 * a run of a container that prints nothing needs neither.
 */
export function forwardStream(source: Readable, dest: Writable): void {
  source.on('data', (chunk: Buffer) => {
    if (dest.write(chunk)) return;
    source.pause();
    dest.once('drain', () => source.resume());
  });
  source.once('end', () => dest.end());
}

/**
 * Spawns the launcher at `launcherPath` with stdio fds of the kinds `modes` and the handshake pipes;
 * `detached` starts it in a new process group; `args` are the launcher's (`--cgroup FILE...`: it joins those
 * cgroups first). It waits for its spec (fd 3) until attached and written.
 */
export function startLauncher(launcherPath: string, modes: LauncherStdioModes, detached = false, args: readonly string[] = []): StartedLauncher {
  const child = spawnLauncherProcess(launcherPath, modes, detached, args);
  const specPipe = child.stdio[3] as Writable;
  // Read from the start through a stream of ours: when a child exits, Node resumes its stdio streams
  // whatever their listeners (flushStdio), which would drain a status pipe nobody reads yet (a prestarted
  // launcher that ended early: its error line lost, its 'close' gone before the handshake listens).
  const statusPipe = new PassThrough();
  forwardStream(child.stdio[4] as Readable, statusPipe);
  const goPipe = (child.stdio as unknown as (Readable | Writable | null)[])[5] as Writable;
  for (const p of [specPipe, goPipe]) p.on('error', () => undefined);
  const startError = new Promise<never>((_, reject) => child.once('error', reject));
  startError.catch(() => undefined);
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const kill = (): void => { child.kill('SIGKILL'); };
  let attached = false;
  const expectLine = (expected: RegExp): Promise<string | undefined> => new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      const line = text.slice(0, nl);
      if (expected.test(line)) finish(text.slice(nl + 1), line);
      else finish(text, undefined);
    };
    // At EOF nothing goes back (a stream takes no unshift after its end): the handshake sees no status.
    const onEnd = (): void => finish('', undefined);
    const finish = (rest: string, line: string | undefined): void => {
      statusPipe.off('data', onData);
      statusPipe.off('end', onEnd);
      // Paused until the handshake reads on (it resumes the pipe).
      statusPipe.pause();
      if (rest !== '') statusPipe.unshift(Buffer.from(rest, 'latin1'));
      resolve(line);
    };
    statusPipe.on('data', onData);
    statusPipe.once('end', onEnd);
    // A previous call paused it: a listener alone does not resume a paused stream.
    statusPipe.resume();
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    pid: child.pid,
    kill,
    exited,
    expectLine,
    running,
    attach(stdio: SandboxStdio): LauncherProcess {
      const want = launcherStdioModes(stdio);
      if (attached || want.some((m, i) => m !== modes[i])) {
        throw new TsbuildError('INTERNAL', attached ? 'a started launcher was attached twice' : `a launcher started with stdio ${modes.join(',')} cannot serve ${want.join(',')}`);
      }
      attached = true;
      const outputs: Promise<void>[] = [];
      const stdinSource = typeof stdio.stdin === 'object' ? (stdio.stdin as Readable) : undefined;
      if (stdinSource !== undefined && child.stdin !== null) {
        const stdin = child.stdin;
        stdin.on('error', () => undefined);
        stdinSource.pipe(stdin);
        // The caller's stream outlives the container: stop reading it when the container is gone.
        child.once('close', () => {
          stdinSource.unpipe(stdin);
          stdinSource.pause();
        });
      }
      for (const [from, to] of [[child.stdout, stdio.stdout], [child.stderr, stdio.stderr]] as const) {
        const done = forwardOutput(from, to);
        if (done !== undefined) outputs.push(done);
      }
      return {
        specPipe, statusPipe, goPipe, outputs, startError, exited, kill, running,
        unref: () => { child.unref(); },
      };
    },
  };
}

/**
 * Starts the launcher process: through the spawn addon beside it (build/tsbuild-spawn.node: posix_spawn, no
 * fork of this process) when that is there, else with node:child_process.
 */
function spawnLauncherProcess(launcherPath: string, modes: LauncherStdioModes, detached: boolean, args: readonly string[]): SpawnedChild {
  // fds 0-2 as asked (a pipe: stdin written by us, stdout/stderr read), 3 spec in, 4 status out, 5 go in.
  const kind = (m: LauncherStdioModes[number], i: number): NativeStdio => (m === 'pipe' ? (i === 0 ? 'pipe-in' : 'pipe-out') : m);
  // The spec and go pipes: written at once through PipeWriters (a libuv pipe's first write, shutdown and close cost
  // ~0.5 ms of a run's CPU before the launcher has its spec; CPU profiles), Sockets without the addon.
  return spawnChild(spawnAddonBeside(launcherPath), launcherPath, args, [...modes.map(kind), 'writer-in', 'pipe-out', 'writer-in'], { detached });
}

/**
 * Spawns the launcher at `launcherPath` with stdio from `stdio` (stdin ignored and stdout/stderr
 * inherited when absent; streams are piped and forwarded) and the handshake pipes; `detached`
 * starts it in a new process group. Spawn errors reject `startError`.
 */
export function spawnLauncher(launcherPath: string, stdio: SandboxStdio, detached = false): LauncherProcess {
  return startLauncher(launcherPath, launcherStdioModes(stdio), detached).attach(stdio);
}
