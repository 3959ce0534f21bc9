import type { Writable } from 'node:stream';
import type { BuildEvent, EventSink } from '../../core/index.js';

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/**
 * The `--progress=plain` renderer: one line per event, BuildKit style. Steps are numbered in the
 * order they appear (`#3 [2/4] RUN make`), logs are prefixed by their step number and the time
 * since it started, and each step ends with `#3 DONE 0.4s`, `#3 CACHED`, `#3 ERROR: ...` or
 * `#3 CANCELED`. Never throws.
 */
export function createPlainRenderer(out: Writable, now: () => number = Date.now): EventSink {
  const numbers = new Map<string, number>();
  const started = new Map<string, number>();
  const numberOf = (vertex: string): number => {
    let n = numbers.get(vertex);
    if (n === undefined) {
      n = numbers.size + 1;
      numbers.set(vertex, n);
    }
    return n;
  };
  const write = (line: string): void => {
    try {
      out.write(`${line}\n`);
    } catch {
      // a closed output must not break the build
    }
  };
  return (e: BuildEvent): void => {
    switch (e.type) {
      case 'vertex.start':
        started.set(e.vertex, e.time);
        write(`#${numberOf(e.vertex)} ${e.name}`);
        break;
      case 'vertex.cached':
        write(`#${numberOf(e.vertex)} ${e.name}`);
        write(`#${numberOf(e.vertex)} CACHED`);
        break;
      case 'vertex.miss':
        write(`#${numberOf(e.vertex)} cache miss: ${e.reason}`);
        break;
      case 'vertex.log': {
        const t = started.get(e.vertex);
        write(`#${numberOf(e.vertex)} ${t === undefined ? '' : `${seconds(now() - t)} `}${e.data}`);
        break;
      }
      case 'vertex.done': {
        const n = numberOf(e.vertex);
        const t = started.get(e.vertex);
        if (e.error === 'cancelled') write(`#${n} CANCELED`);
        else if (e.error !== undefined) write(`#${n} ERROR: ${e.error.split('\n')[0] ?? ''}`);
        else write(`#${n} DONE ${t === undefined ? '0.0' : seconds(e.time - t)}s`);
        break;
      }
      case 'transfer':
        write(`#${numberOf(e.id)} ${e.name} ${e.current}${e.total === undefined ? '' : `/${e.total}`} bytes`);
        break;
      case 'warning': {
        const where = e.loc === undefined ? '' : `${e.loc.file}:${e.loc.line}: `;
        write(`WARNING: ${where}${e.code === undefined ? '' : `${e.code}: `}${e.message}`);
        break;
      }
      case 'info':
        write(e.message);
        break;
    }
  };
}
