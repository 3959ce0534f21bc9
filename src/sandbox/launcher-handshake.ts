/**
 * The launcher's handshake, shared by the sandbox (run mode) and joinProcess (join mode): spawn it,
 * write the spec (fd 3), read status lines (fd 4), release the child once its pid is known (fd 5,
 * the caller's `onPid` writes the release bytes), wait for the end, kill everything on abort.
 * The callers turn the collected status lines into their results and errors.
 */
import type { Writable } from 'node:stream';
import { TsbuildError } from '../core/index.js';
import { endAtOnce, spawnLauncher, type LauncherProcess } from './launcher-process.js';
import type { LauncherZygote } from './launcher-zygote.js';
import { parseStatusLine, type LauncherStatus } from './launcher-status.js';
import type { SandboxStdio } from './sandbox.js';

/** What to start and how to release it. */
export interface HandshakeOptions {
  readonly launcherPath: string;
  /** The encoded spec (launcher-spec.ts or join.ts). */
  readonly input: Buffer;
  readonly stdio: SandboxStdio;
  /** A new process group, and the launcher is left running when it reports `detached`. */
  readonly detached?: boolean;
  /**
   * Forks the launcher from this zygote when the stdio allows it (launcher-zygote.ts); it is spawned
   * when not, or when the zygote cannot be used. Never with `detached`.
   */
  readonly zygote?: LauncherZygote | undefined;
  /** Kills the child (SIGKILL of a pid namespace's init kills all of it) and the launcher. */
  readonly signal?: AbortSignal | undefined;
  /** A launcher already started (Sandbox.prestart): used instead of spawning or forking one. */
  readonly launcher?: LauncherProcess | undefined;
  /** Writes the final release ('g') with the spec (`onPid` is then not called): nothing has to happen between the child's creation and its command. */
  readonly releaseAtStart?: boolean;
  /** Runs once the child's pid is known; writes the release bytes to `go` and ends it ('g' last), unless `releaseAtStart`. */
  readonly onPid: (pid: number, go: Writable) => Promise<void>;
  /** Called at the status line that says how the child ended (its exit code or signal), before the launcher has exited. */
  readonly onEnded?: () => void;
}

/** How the handshake went. */
export interface HandshakeResult {
  /** The parsed status lines in order (`detached` not among them). */
  readonly lines: readonly LauncherStatus[];
  /** The child's host pid, when reported. */
  readonly pid: number | undefined;
  /** The signal fired and everything was killed. */
  readonly aborted: boolean;
  /** The launcher reported `detached` (the command runs on). */
  readonly detached: boolean;
  /** What `onPid` threw (the go pipe was then closed: the child stops at wait-for-parent). */
  readonly releaseError: unknown;
  /** Resolves with the launcher's exit code (null when killed). */
  readonly exited: Promise<number | null>;
}

/** Runs the handshake to its end. Throws SANDBOX_LAUNCHER when the launcher cannot be started. */
export async function runHandshake(o: HandshakeOptions): Promise<HandshakeResult> {
  const forked = o.launcher ?? (o.zygote !== undefined && o.detached !== true ? await o.zygote.launch(o.stdio) : undefined);
  const launcher = forked ?? spawnLauncher(o.launcherPath, o.stdio, o.detached === true);
  const { specPipe, statusPipe, goPipe, outputs, exited } = launcher;
  // The spec first: the launcher sets up the child's namespaces and file system while we get ready for its lines.
  // A launcher that could not start: the pipe's error is ignored (endAtOnce), startError reports it. None after an
  // abort while the launcher was being started (or before): it is killed below, and a child it cloned from the
  // spec before the kill landed would run on (its parent-death signal is set only once it runs).
  const abortedAtStart = o.signal?.aborted === true;
  if (abortedAtStart) specPipe.destroy();
  else endAtOnce(specPipe, o.input);
  let pid: number | undefined;
  let aborted = false;
  let detached = false;
  const killAll = (): void => {
    aborted = true;
    // SECURITY: SIGKILL of the pid namespace's init kills everything in it.
    if (pid !== undefined) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    launcher.kill();
  };
  o.signal?.addEventListener('abort', killAll, { once: true });
  // An abort while the launcher was being started (or before: the zygote's queue, the sandbox's set-up) fired no event here.
  if (abortedAtStart) killAll();
  const spawnError = launcher.startError.catch((err: Error) => {
    throw new TsbuildError('SANDBOX_LAUNCHER', `cannot start the sandbox launcher ${o.launcherPath}: ${err.message}`, { cause: err, exitCode: 125 });
  });
  spawnError.catch(() => undefined);
  try {
    if (o.releaseAtStart === true && !aborted) goPipe.end('g');
    const lines: LauncherStatus[] = [];
    let buffered = '';
    let release: Promise<void> = Promise.resolve();
    statusPipe.setEncoding('utf8');
    statusPipe.on('data', (text: string) => {
      buffered += text;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line === 'detached') {
          detached = true;
          continue;
        }
        const parsed = parseStatusLine(line);
        if (parsed === undefined) continue;
        lines.push(parsed);
        if (parsed.exitCode !== undefined || parsed.signal !== undefined) o.onEnded?.();
        if (parsed.pid !== undefined) {
          pid = parsed.pid;
          if (o.releaseAtStart !== true) {
            release = o.onPid(parsed.pid, goPipe);
            release.catch(() => goPipe.destroy());
          }
        }
      }
    });
    // A prestarted launcher's first line may have been read ahead (StartedLauncher.expectLine), which paused the pipe.
    statusPipe.resume();
    const statusDone = new Promise<void>((resolve) => statusPipe.once('close', resolve));
    await Promise.race([Promise.all([exited, statusDone]), spawnError]);
    let releaseError: unknown;
    await release.catch((err: unknown) => { releaseError = err; });
    await Promise.all(outputs);
    return { lines, pid, aborted, detached, releaseError, exited };
  } finally {
    o.signal?.removeEventListener('abort', killAll);
    // A launcher that ended before its pid line never got its go byte: the pipe's fd is closed here.
    if (!goPipe.writableEnded && !goPipe.destroyed) goPipe.destroy();
    if (!detached && launcher.running()) killAll();
    if (o.detached === true) launcher.unref();
  }
}
