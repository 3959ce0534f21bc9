/**
 * The client's side of `attach`: connects to a detached container's monitor (attach.sock) and
 * relays our stdin to it and its live output to our stdout/stderr until the container's process
 * exits (its exit code) or our detach keys are typed.
 */
import { connect, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { notSupportedYet, TsbuildError } from '../core/index.js';
import type { ContainerEntry, ContainerStore } from './container-store.js';
import { ATTACH_GRACE_MS, attachSocketPathOf, encodeFrame, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDOUT, FrameDecoder, withShortSocketPath } from './attach-protocol.js';
import { isContainerPaused } from './pause.js';
import { isProcessAlive } from './process-info.js';
import { isContainerRunning } from './runner.js';

/** Where an attach session's streams come from and go to. */
export interface AttachIo {
  /** Our input (absent: `--no-stdin`). */
  readonly stdin?: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** Typed in this order on stdin, they detach (absent: no detach keys). */
  readonly detachKeys?: Buffer;
  /** Our terminal's size (rows, cols), sent on connect and on each `onResize` call. */
  readonly terminalSize?: () => { rows: number; cols: number } | undefined;
  /** Registers a callback for our terminal's size changes; returns its removal. */
  readonly onResize?: (cb: () => void) => () => void;
}

/** How an attach session ended. */
export type AttachResult = { readonly detached: true } | { readonly detached: false; readonly exitCode: number };

function stoppedError(): TsbuildError {
  return new TsbuildError('RUN_NOT_RUNNING', 'You cannot attach to a stopped container, start it first', { exitCode: 1 });
}

/** Checks that `entry` can be attached to: running (or restarting) and not paused. Throws RUN_NOT_RUNNING / RUN_PAUSED as docker words them. */
export function requireAttachable(entry: ContainerEntry): void {
  // A container waiting to restart has its monitor: the client gets the next run.
  const restarting = entry.state.status === 'restarting' && isProcessAlive(entry.state.monitorPid, entry.state.monitorStartTime);
  if (!isContainerRunning(entry.state) && !restarting) throw stoppedError();
  if (isContainerPaused(entry)) {
    throw new TsbuildError('RUN_PAUSED', 'You cannot attach to a paused container, unpause it first', { exitCode: 1 });
  }
}

/**
 * Connects to the attach socket of monitor `monitorPid()`; while `keepTrying()` (a start in progress: the pid
 * may be unknown yet, the socket not made; or a foreground run that listens a moment after its start)
 * ENOENT/ECONNREFUSED are retried.
 */
async function connectSocket(containers: ContainerStore, id: string, monitorPid: () => number | undefined, keepTrying?: () => boolean): Promise<Socket> {
  for (;;) {
    const pid = monitorPid();
    try {
      if (pid === undefined || pid <= 0) throw Object.assign(new Error('no monitor yet'), { code: 'ENOENT' });
      return await withShortSocketPath(attachSocketPathOf(containers, id, pid), (short) => new Promise<Socket>((resolve, reject) => {
        const s = connect(short);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      }));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (keepTrying?.() !== true || (code !== 'ENOENT' && code !== 'ECONNREFUSED')) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** True until `p` has settled. */
function untilSettled(p: Promise<unknown>): () => boolean {
  let settled = false;
  void p.then(() => { settled = true; }, () => { settled = true; });
  return () => !settled;
}

/**
 * True while container `entry` is within {@link ATTACH_GRACE_MS} of its start and its owner lives: a foreground
 * `run` listens only once its container has run for a moment (FOREGROUND_ATTACH_DELAY_MS).
 */
function inStartGrace(entry: ContainerEntry): () => boolean {
  const deadline = Date.parse(entry.state.startedAt) + ATTACH_GRACE_MS;
  return () => Date.now() < deadline && isProcessAlive(entry.state.monitorPid, entry.state.monitorStartTime);
}

/**
 * A matcher of the detach key sequence over our input: bytes that might start it are held back
 * and sent when the sequence breaks (as docker's escape proxy).
 */
export function detachFilter(keys: Buffer | undefined): (chunk: Buffer) => { send: Buffer; detach: boolean } {
  let held = 0;
  return (chunk) => {
    if (keys === undefined || keys.length === 0) return { send: chunk, detach: false };
    const out: number[] = [];
    for (const b of chunk) {
      if (b === keys[held]) {
        held++;
        if (held === keys.length) return { send: Buffer.from(out), detach: true };
        continue;
      }
      out.push(...keys.subarray(0, held));
      held = 0;
      if (b === keys[0]) held = 1;
      else out.push(b);
    }
    return { send: Buffer.from(out), detach: false };
  };
}

/** Options of {@link attachContainer}. */
export interface AttachOptions {
  /** The container is being started (`start -a -i`) by monitor `monitorPid()` (undefined until spawned): retry until `done` settles. */
  readonly starting?: { readonly done: Promise<unknown>; readonly monitorPid: () => number | undefined };
  readonly signal?: AbortSignal;
}

/**
 * Attaches `io` to container `entry` (see {@link requireAttachable}, checked unless starting). A
 * foreground `run` serves the socket too (output only); one from a tsbuild before that has none:
 * CLI_NOT_SUPPORTED.
 */
export async function attachContainer(containers: ContainerStore, entry: ContainerEntry, io: AttachIo, options: AttachOptions = {}): Promise<AttachResult> {
  const id = entry.config.id;
  if (options.starting === undefined) requireAttachable(entry);
  const monitorPid = options.starting?.monitorPid ?? (() => entry.state.monitorPid);
  const socket = await connectSocket(containers, id, monitorPid, options.starting === undefined ? inStartGrace(entry) : untilSettled(options.starting.done)).catch(async (err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      // Ended meanwhile, or owned by a foreground `run` of a tsbuild without its attach socket.
      const now = await containers.inspect(id);
      if (now === undefined || !isContainerRunning(now.state)) throw stoppedError();
      throw notSupportedYet('attaching to a container run in the foreground (not with -d or start)', 'run it with -d (and -i for input), then attach');
    }
    throw new TsbuildError('RUN_ATTACH', `cannot attach to container ${id.slice(0, 12)}: ${(err as Error).message}`, { cause: err, exitCode: 1 });
  });
  socket.on('error', () => undefined);
  const cleanups: (() => void)[] = [];
  try {
    return await new Promise<AttachResult>((resolve) => {
      const filter = detachFilter(io.detachKeys);
      const sendSize = (): void => {
        const size = io.terminalSize?.();
        if (size !== undefined && size.rows > 0 && size.cols > 0) socket.write(encodeFrame(FRAME_RESIZE, `${size.rows} ${size.cols}`));
      };
      sendSize();
      if (io.onResize !== undefined) cleanups.push(io.onResize(sendSize));
      if (io.stdin !== undefined) {
        const stdin = io.stdin;
        const onData = (chunk: Buffer): void => {
          const { send, detach } = filter(chunk);
          if (send.length > 0) socket.write(encodeFrame(FRAME_STDIN, send));
          if (detach) {
            socket.end();
            resolve({ detached: true });
          }
        };
        stdin.on('data', onData);
        cleanups.push(() => {
          stdin.off('data', onData);
          stdin.pause();
        });
      }
      const onAbort = (): void => {
        socket.destroy();
        resolve({ detached: true });
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      cleanups.push(() => options.signal?.removeEventListener('abort', onAbort));
      const decoder = new FrameDecoder();
      let exitCode: number | undefined;
      socket.on('data', (chunk: Buffer) => {
        for (const f of decoder.push(chunk)) {
          if (f.type === FRAME_STDOUT) io.stdout.write(f.payload);
          else if (f.type === FRAME_STDERR) io.stderr.write(f.payload);
          else if (f.type === FRAME_EXIT) exitCode = Number(f.payload.toString('utf8'));
        }
      });
      socket.once('close', () => {
        if (exitCode !== undefined) {
          resolve({ detached: false, exitCode });
          return;
        }
        // The monitor went away without a word (killed): the recorded state tells how it ended.
        void containers.inspect(id).then((e) => resolve({ detached: false, exitCode: e !== undefined && !isContainerRunning(e.state) ? e.state.exitCode : 125 }), () => resolve({ detached: false, exitCode: 125 }));
      });
    });
  } finally {
    for (const c of cleanups) c();
    socket.destroy();
  }
}
