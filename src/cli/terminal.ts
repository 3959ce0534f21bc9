import type { Readable, Writable } from 'node:stream';

/** A stream that is a terminal: its file descriptor (handed to the launcher as it is), else undefined. */
export function terminalFdOf(s: Readable | Writable): number | undefined {
  return 'isTTY' in s && s.isTTY === true && 'fd' in s && typeof s.fd === 'number' ? s.fd : undefined;
}

/** The part of node's tty.ReadStream that switches raw mode. */
interface RawModeStream {
  setRawMode(raw: boolean): unknown;
}

function isRawModeStream(s: Readable): s is Readable & RawModeStream {
  return 'setRawMode' in s && typeof s.setRawMode === 'function';
}

/**
 * Runs `fn` with the caller's terminal `stdin` in raw mode (keys go to the container as typed,
 * ^C included) and always restores the saved mode afterwards, also when `fn` throws or the run
 * is aborted by a signal. The launcher sets raw mode too and restores it itself; this covers a
 * launcher that dies without restoring (node resets the terminal at process exit as a last
 * resort). An undefined `stdin` or one that is not a terminal runs `fn` unchanged.
 */
export async function withRawTerminal<T>(stdin: Readable | undefined, fn: () => Promise<T>): Promise<T> {
  if (stdin === undefined || terminalFdOf(stdin) === undefined || !isRawModeStream(stdin)) return fn();
  stdin.setRawMode(true);
  try {
    return await fn();
  } finally {
    stdin.setRawMode(false);
  }
}
