import type { Writable } from 'node:stream';
import type { EventSink } from '../../core/index.js';
import { createJsonRenderer } from './json.js';
import { createPlainRenderer } from './plain.js';
import { createTtyRenderer } from './tty.js';

/** The progress output of one build: its event sink and how to end it. */
export interface BuildProgress {
  readonly events: EventSink;
  /** Prints a whole line of text (a warning) in order with the events. */
  print(line: string): void;
  /** Ends the output (the tty renderer draws its last frame); call once when the build ends, also on failure. */
  close(outcome: 'done' | 'error' | 'cancelled'): void;
}

/**
 * Picks the renderer of `--progress=MODE` for `stderr`: quiet (nothing), rawjson, plain, tty, or
 * auto (tty when `stderr` is a terminal, else plain).
 */
export function openBuildProgress(mode: string, quiet: boolean, stderr: Writable): BuildProgress {
  const none = (): void => undefined;
  const print = (line: string): void => {
    stderr.write(`${line}\n`);
  };
  if (mode === 'rawjson') return { events: quiet ? none : createJsonRenderer(stderr), print, close: none };
  if (quiet || mode === 'quiet') return { events: none, print, close: none };
  const isTty = (stderr as { isTTY?: boolean }).isTTY === true;
  if (mode === 'tty' || (mode === 'auto' && isTty)) {
    const tty = createTtyRenderer(stderr);
    return { events: tty.sink, print: (line) => tty.print(line), close: (outcome) => tty.close(outcome) };
  }
  return { events: createPlainRenderer(stderr), print, close: none };
}
