/**
 * Starting the C launcher as a child process: its stdio per {@link SandboxStdio} and the three
 * extra pipes of the handshake (fd 3 spec in, fd 4 status out, fd 5 go in). Shared by the sandbox
 * (run mode) and joinProcess (join mode) through the handshake of launcher-handshake.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { OutputSink, SandboxStdio, StdinSource } from './sandbox.js';

/** A started launcher with its handshake pipes. */
export interface LauncherProcess {
  readonly child: ChildProcess;
  /** fd 3: the encoded spec is written here (then ended). */
  readonly specPipe: Writable;
  /** fd 4: status lines come from here. */
  readonly statusPipe: Readable;
  /** fd 5: ended with 'g' once the child is placed (cgroup, id maps). */
  readonly goPipe: Writable;
  /** Settle when the forwarded stdout/stderr pipes are drained or closed. */
  readonly outputs: Promise<void>[];
}

/**
 * Spawns the launcher at `launcherPath` with stdio from `stdio` (stdin ignored and stdout/stderr
 * inherited when absent; streams are piped and forwarded) and the handshake pipes; `detached`
 * starts it in a new process group. Spawn errors surface as the child's 'error' event.
 */
export function spawnLauncher(launcherPath: string, stdio: SandboxStdio, detached = false): LauncherProcess {
  const mode = (s: StdinSource | OutputSink | undefined, dflt: 'inherit' | 'ignore'): 'inherit' | 'ignore' | 'pipe' | number =>
    s === undefined ? dflt : typeof s === 'string' || typeof s === 'number' ? s : 'pipe';
  const child = spawn(launcherPath, [], {
    stdio: [mode(stdio.stdin, 'ignore'), mode(stdio.stdout, 'inherit'), mode(stdio.stderr, 'inherit'), 'pipe', 'pipe', 'pipe'],
    ...(detached ? { detached: true } : {}),
  });
  const specPipe = child.stdio[3] as Writable;
  const statusPipe = child.stdio[4] as Readable;
  const goPipe = (child.stdio as unknown as (Readable | Writable | null)[])[5] as Writable;
  const outputs: Promise<void>[] = [];
  const forward = (from: Readable | null, to: OutputSink | undefined): void => {
    if (from === null || to === undefined || typeof to === 'string' || typeof to === 'number') return;
    const sink = to as Writable;
    from.on('data', (chunk: Buffer) => sink.write(chunk));
    // finished() also settles when the pipe closes without 'end' (destroyed after a kill).
    outputs.push(finished(from).catch(() => undefined));
  };
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
  forward(child.stdout, stdio.stdout);
  forward(child.stderr, stdio.stderr);
  for (const p of [specPipe, goPipe]) p.on('error', () => undefined);
  return { child, specPipe, statusPipe, goPipe, outputs };
}
