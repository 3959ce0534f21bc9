import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, openSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PipeWriter } from './pipe-writer.js';

// Starting a child without forking this process: build/tsbuild-spawn.node (src/sys/native/spawn.c, built by
// scripts/build-native.mjs) calls posix_spawn, which glibc does with clone(CLONE_VM|CLONE_VFORK). Node's
// child_process forks: the whole process's page tables are copied, and afterwards every page this process
// writes takes a fault; with loading node:child_process that cost `tsbuild run` ~3 ms for its launcher.
// Without the addon (no C compiler or Node headers when it was built) callers use node:child_process.

/** The addon's file name (beside the launcher in build/). */
export const SPAWN_ADDON = 'tsbuild-spawn.node';

/** The spawn addon's path in the directory of the launcher `launcherPath` (scripts/build-native.mjs builds both into build/). */
export function spawnAddonBeside(launcherPath: string): string {
  return join(dirname(launcherPath), SPAWN_ADDON);
}

/** The addon's functions (src/sys/native/spawn.c). */
export interface SpawnAddon {
  spawn(file: string, argv: readonly string[], env: readonly string[] | null, fds: readonly number[], setsid: boolean): number;
  /** [read end, write end]; the write end non-blocking when `nonblockingWrite`. */
  pipe(nonblockingWrite?: boolean): [number, number];
  /** Reaps `pid` if it has ended (WNOHANG): [exit code, signal], else undefined. */
  wait(pid: number): [number | null, number | null] | undefined;
  /** 1 when `fd` is O_NONBLOCK, 0 when not, -1 when it is not open. */
  nonblocking(fd: number): number;
  /** Whether fd 0, 1 or 2 is a terminal. */
  stdioTerminal(): boolean;
  /** Gives fds 0-2 back their O_NONBLOCK flag (1 set, 0 clear, -1 left alone), then _exit(code). */
  exitNow(code: number, nonblocking: readonly number[]): never;
}

/** How {@link spawnNative} and {@link spawnChild} start a program besides its fds. */
export interface SpawnOptions {
  /** In a new session (setsid). */
  readonly detached?: boolean;
  /** Its argv[0] (default: the file). */
  readonly argv0?: string;
  /** Its environment (default: ours). */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * What a child's fd `i` is: this process's fd of the same number, /dev/null, an fd of ours, or a pipe whose other end we
 * keep: a Socket ('pipe-in' the child reads, 'pipe-out' it writes), or a PipeWriter ('writer-in': written at once, no
 * libuv handle; for the little a child reads at its start).
 */
export type NativeStdio = 'inherit' | 'ignore' | number | 'pipe-in' | 'pipe-out' | 'writer-in';

const requireHere = createRequire(import.meta.url);
const addons = new Map<string, SpawnAddon | undefined>();

/** The addon at `path`, loaded once (undefined when it is missing or cannot be loaded). */
function addonAt(path: string): SpawnAddon | undefined {
  if (addons.has(path)) return addons.get(path);
  let addon: SpawnAddon | undefined;
  if (existsSync(path)) {
    try {
      const module = { exports: {} as SpawnAddon };
      process.dlopen(module, path);
      addon = module.exports;
    } catch {
      addon = undefined;
    }
  }
  addons.set(path, addon);
  return addon;
}

/** A spawn addon this process has loaded already (undefined: none, or none could be loaded). */
export function loadedSpawnAddon(): SpawnAddon | undefined {
  for (const addon of addons.values()) if (addon !== undefined) return addon;
  return undefined;
}

/** Children of the addon not reaped yet: a SIGCHLD checks each (Node reaps only its own children). */
const unreaped = new Set<NativeChild>();
const onChildSignal = (): void => {
  for (const child of [...unreaped]) child.poll();
};

/**
 * A child started by the addon: the subset of a ChildProcess that the launcher's callers use. Emits
 * 'exit' (code, signal) once it is reaped and 'close' (code, signal) once, besides, its pipes to us have closed.
 */
export class NativeChild extends EventEmitter {
  readonly pid: number;
  /** Our ends of its fds that are pipes (null for the others): Sockets, and PipeWriters for 'writer-in'. */
  readonly stdio: (Socket | PipeWriter | null)[];
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly #addon: SpawnAddon;
  readonly #kinds: readonly NativeStdio[];
  #closed = false;
  #open: number;
  #pollTimer: NodeJS.Timeout | undefined;
  #unref = false;

  constructor(addon: SpawnAddon, pid: number, stdio: (Socket | PipeWriter | null)[], kinds: readonly NativeStdio[]) {
    super();
    this.#addon = addon;
    this.pid = pid;
    this.stdio = stdio;
    this.#kinds = kinds;
    const readable = stdio.filter((s, i): s is Socket => s !== null && kinds[i] === 'pipe-out');
    this.#open = readable.length;
    for (const s of readable) s.once('close', () => this.#pipeClosed());
    if (unreaped.size === 0) process.on('SIGCHLD', onChildSignal);
    unreaped.add(this);
    // It may have ended before the listener existed (a short program, while the pipes were wrapped): looked at
    // once the caller has had its turn to listen ('exit' is never emitted before spawnNative returned, as with Node's spawn).
    setImmediate(() => this.poll());
  }

  get stdin(): Socket | PipeWriter | null { return this.stdio[0] ?? null; }
  get stdout(): Socket | null { return this.#kinds[1] === 'pipe-out' ? (this.stdio[1] as Socket) : null; }
  get stderr(): Socket | null { return this.#kinds[2] === 'pipe-out' ? (this.stdio[2] as Socket) : null; }

  /** Reaps it when it has ended (a SIGCHLD, or its pipes closed). */
  poll(): void {
    if (!unreaped.has(this)) return;
    let status: [number | null, number | null] | undefined;
    try {
      status = this.#addon.wait(this.pid);
    } catch {
      status = [null, null];
    }
    if (status === undefined) return;
    unreaped.delete(this);
    if (unreaped.size === 0) process.off('SIGCHLD', onChildSignal);
    clearTimeout(this.#pollTimer);
    const [code, signal] = status;
    this.exitCode = code;
    this.signalCode = signal === null ? null : signalName(signal);
    // As Node does at a child's exit (flushStdio): what we write to it goes nowhere now, and what it wrote
    // is read to its end (a pipe nobody reads would never close), unless the owner reads it with 'readable'.
    for (const [i, s] of this.stdio.entries()) {
      if (s === null) continue;
      if (s instanceof PipeWriter || this.#kinds[i] === 'pipe-in') s.destroy();
      else if (s.readable && s.listenerCount('readable') === 0) s.resume();
    }
    this.emit('exit', this.exitCode, this.signalCode);
    this.#maybeClose();
  }

  /** Sends `signal` (SIGTERM by default); false once it has been reaped. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    if (!unreaped.has(this)) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Lets this process exit while the child runs on (its pipes and the reaping no longer keep this process alive). */
  unref(): void {
    this.#unref = true;
    // A PipeWriter has no handle that keeps this process alive.
    for (const s of this.stdio) if (s !== null && !(s instanceof PipeWriter)) s.unref();
    this.#pollTimer?.unref();
  }

  #pipeClosed(): void {
    this.#open--;
    if (this.#open === 0 && unreaped.has(this)) {
      // Its pipes closed when it exited (or it closed them): reap it now, else look again shortly (a SIGCHLD
      // may come first). The timer keeps this process alive until then: nothing else may.
      const again = (): void => {
        this.poll();
        if (unreaped.has(this)) this.#arm(again);
      };
      again();
    }
    this.#maybeClose();
  }

  #arm(fn: () => void): void {
    this.#pollTimer = setTimeout(fn, 1);
    if (this.#unref) this.#pollTimer.unref();
  }

  #maybeClose(): void {
    if (this.#open > 0 || unreaped.has(this) || this.#closed) return;
    this.#closed = true;
    this.emit('close', this.exitCode, this.signalCode);
  }
}

function signalName(signal: number): NodeJS.Signals | null {
  const { signals } = (requireHere('node:os') as typeof import('node:os')).constants;
  return (Object.keys(signals) as NodeJS.Signals[]).find((name) => signals[name] === signal) ?? null;
}

/**
 * Starts `file` with `args` (argv[0] is `argv0`, default `file`) and fds per `stdio`, in a new session
 * when `detached`, with `env` (default: ours), through the addon at `addonPath`. Undefined when the addon
 * cannot be used (the caller then spawns with node:child_process). Throws as spawn would (code ENOENT...).
 */
export function spawnNative(addonPath: string, file: string, args: readonly string[], stdio: readonly NativeStdio[], options: SpawnOptions = {}): NativeChild | undefined {
  const addon = addonAt(addonPath);
  if (addon === undefined) return undefined;
  const fds: number[] = [];
  const ours: (number | undefined)[] = [];
  const toClose: number[] = [];
  try {
    for (const [i, kind] of stdio.entries()) {
      if (kind === 'inherit') fds.push(i);
      else if (typeof kind === 'number') fds.push(kind);
      else if (kind === 'ignore') {
        const fd = openSync('/dev/null', i === 0 ? 'r' : 'w');
        toClose.push(fd);
        fds.push(fd);
      } else {
        const [r, w] = addon.pipe(kind === 'writer-in');
        // pipe-in and writer-in: the child reads (we write); pipe-out: the child writes.
        const [theirs, mine] = kind === 'pipe-out' ? [w, r] : [r, w];
        toClose.push(theirs);
        fds.push(theirs);
        ours[i] = mine;
      }
    }
    const env = options.env === undefined ? null : Object.entries(options.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v as string}`);
    const pid = addon.spawn(file, [options.argv0 ?? file, ...args], env, fds, options.detached === true);
    const { Socket: SocketClass } = requireHere('node:net') as typeof import('node:net');
    const sockets = stdio.map((kind, i) => {
      const fd = ours[i];
      if (fd === undefined) return null;
      ours[i] = undefined;
      if (kind === 'writer-in') return new PipeWriter(fd);
      return new SocketClass({ fd, readable: kind === 'pipe-out', writable: kind === 'pipe-in' });
    });
    return new NativeChild(addon, pid, sockets, stdio);
  } finally {
    for (const fd of [...toClose, ...ours]) if (fd !== undefined) closeSync(fd);
  }
}

/** What {@link spawnChild}'s callers use of the child: a NativeChild, or a ChildProcess when the addon cannot be used. */
export interface SpawnedChild {
  readonly pid?: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly stdio: readonly (Readable | Writable | null | undefined)[];
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  once(event: 'close', listener: (code: number | null) => void): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  kill(signal: NodeJS.Signals): boolean;
  unref(): void;
}

/**
 * Starts `file` through the addon at `addonPath` when it can be used (see {@link spawnNative}), else with
 * node:child_process, which also reports a program that cannot be started (its 'error' event).
 */
export function spawnChild(addonPath: string | undefined, file: string, args: readonly string[], stdio: readonly NativeStdio[], options: SpawnOptions = {}): SpawnedChild {
  try {
    const native = addonPath === undefined ? undefined : spawnNative(addonPath, file, args, stdio, options);
    if (native !== undefined) return native;
  } catch {
    // not startable (ENOENT, EACCES...): child_process reports it the usual way
  }
  return spawn(file, args, {
    stdio: stdio.map((k) => (k === 'pipe-in' || k === 'pipe-out' || k === 'writer-in' ? 'pipe' : k)),
    ...(options.detached === true ? { detached: true } : {}),
    ...(options.argv0 === undefined ? {} : { argv0: options.argv0 }),
    ...(options.env === undefined ? {} : { env: options.env }),
  });
}
