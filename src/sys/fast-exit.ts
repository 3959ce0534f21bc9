import { loadedSpawnAddon } from './spawn-native.js';

// Ending the process without Node's teardown. process.exit() first disposes of V8's platform (joins its worker
// threads), shuts the libuv pool down and runs libc's exit handlers: ~1 ms at the end of every `run` (same-run
// A/B). Once a command is done (an empty loop) nothing of that is needed: exitProcess runs the 'exit' listeners as
// process.exit() does, gives fds 0-2 back the O_NONBLOCK flag Node's streams on them changed (Node's ResetStdio
// does that at its exit: a pipe's file description is shared with whoever gave it to us), and calls _exit
// through the spawn addon. Only when the addon is loaded already (the commands that start processes through it: a
// dlopen would cost more than it saves), no fd 0-2 is a terminal (Node also restores a terminal's mode, which a
// program we started on it may have changed), and Node runs without options (a profiler or coverage writes its
// output at Node's exit).

/**
 * Per fd 0-2: its O_NONBLOCK flag before Node made its first stream (1 or 0; -1 not open, or no stream made yet:
 * left as it is); `flags` undefined: unknown.
 */
export interface StdioFlags {
  readonly flags: readonly number[] | undefined;
}

const STREAMS = ['stdin', 'stdout', 'stderr'] as const;

/**
 * Watches `proc`'s stdin, stdout and stderr getters (Node makes each stream on first use; a pipe's or socket's
 * sets O_NONBLOCK on its file description, which fds 0-2 may share: `2>&1`): at the first use of any, the flags
 * of all three are read through the spawn addon, if it is loaded (no fs call at the start of every command:
 * reading /proc/self/fdinfo cost 0.35 ms). Call it before anything uses them. Streams made before the addon
 * was loaded leave the flags unknown: no fast exit.
 */
export function watchStdioFlags(proc: NodeJS.Process): StdioFlags {
  const state: { flags: readonly number[] | undefined } = { flags: [-1, -1, -1] };
  let used = false;
  const firstUse = (): void => {
    if (used) return;
    used = true;
    const addon = loadedSpawnAddon();
    state.flags = addon === undefined ? undefined : [0, 1, 2].map((fd) => addon.nonblocking(fd));
  };
  for (const name of STREAMS) {
    const own = Object.getOwnPropertyDescriptor(proc, name);
    const get = own?.get;
    if (get === undefined || own?.configurable !== true) {
      used = true;
      state.flags = undefined;
      continue;
    }
    Object.defineProperty(proc, name, {
      configurable: true,
      enumerable: own?.enumerable === true,
      get(this: NodeJS.Process) {
        firstUse();
        return get.call(this);
      },
    });
  }
  return state;
}

/**
 * Ends the process with process.exitCode once its work is done: at once (see above) when `fast` (Node runs
 * without options), the spawn addon is loaded and the flags of `stdio` ({@link watchStdioFlags}) are known,
 * else with process.exit().
 */
export function exitProcess(stdio: StdioFlags, fast: boolean): never {
  const addon = fast ? loadedSpawnAddon() : undefined;
  if (addon !== undefined && !addon.stdioTerminal()) {
    // As process.exit(): the 'exit' listeners once (process.exit() below does not run them again), with the
    // code, which they may still change. Then the flags: a listener may have made a stream.
    (process as NodeJS.Process & { _exiting?: boolean })._exiting = true;
    process.emit('exit', Number(process.exitCode ?? 0) || 0);
    if (stdio.flags !== undefined) addon.exitNow(Number(process.exitCode ?? 0) || 0, stdio.flags);
  }
  return process.exit();
}
