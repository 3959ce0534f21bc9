import type { Writable } from 'node:stream';
import type { BuildEvent, EventSink } from '../../core/index.js';

/** The `--progress=rawjson` renderer: every event as one JSON line. Never throws. */
export function createJsonRenderer(out: Writable): EventSink {
  return (e: BuildEvent): void => {
    try {
      out.write(`${JSON.stringify(e)}\n`);
    } catch {
      // a closed output must not break the build
    }
  };
}
