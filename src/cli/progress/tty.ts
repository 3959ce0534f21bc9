import type { Writable } from 'node:stream';
import type { BuildEvent, EventSink } from '../../core/index.js';

/**
 * The `--progress=tty` renderer, BuildKit-like: a live area at the bottom of the terminal (a
 * header with the elapsed time, one line per running step with its timer and its last log lines,
 * transfer bars) redrawn in place with ANSI cursor movement at most every 100 ms; finished steps
 * (`=> [2/3] COPY ... 0.1s`, `=> CACHED [3/3] RUN ...`, `=> ERROR ...` followed by its last log
 * lines), warnings and messages scroll above it. Lines are cut to the stream's `columns`, control
 * characters of logs are removed, and {@link TtyRenderer.close} leaves the cursor on a clean line
 * after a final summary, also when the build failed or was interrupted.
 */

/** A renderer with a live area that must be closed when the build ends. */
export interface TtyRenderer {
  readonly sink: EventSink;
  /** Prints a whole line above the live area (a warning printed by the caller), in order with the events. */
  print(line: string): void;
  /** Draws the last frame (finished steps, the summary line) and stops redrawing. Idempotent; never throws. */
  close(outcome: 'done' | 'error' | 'cancelled'): void;
}

/** Clock, timers and terminal size (injectable for tests). */
export interface TtyRendererOptions {
  readonly now?: () => number;
  /** Runs `fn` once after `ms`; the default uses an unref'd setTimeout (never keeps the process alive). */
  readonly schedule?: (fn: () => void, ms: number) => { cancel(): void };
}

/** Frames per second at most, and log lines kept per running step. */
const INTERVAL_MS = 100;
const LOG_LINES = 6;
const ERROR_LOG_LINES = 12;

interface Step {
  readonly id: string;
  name: string;
  state: 'running' | 'done' | 'cached' | 'error' | 'cancelled';
  start: number;
  end: number;
  miss?: string;
  logs: string[];
  partial: string;
}

interface Transfer {
  readonly id: string;
  name: string;
  current: number;
  total?: number;
}

function defaultSchedule(fn: () => void, ms: number): { cancel(): void } {
  const t = setTimeout(fn, ms);
  t.unref();
  return { cancel: () => clearTimeout(t) };
}

/** Removes ANSI sequences and control characters (a log must not move our cursor). */
function sanitize(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]/g, '').replace(/\t/g, '  ').replace(/[\x00-\x1f\x7f]/g, '');
}

function secondsOf(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

function bytesOf(n: number): string {
  if (n < 1024) return `${n}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)}kB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)}MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)}GB`;
}

/** Cuts `text` to `width` characters (code points), marking the cut with `…`. */
function clip(text: string, width: number): string {
  const chars = [...text];
  return chars.length <= width ? text : `${chars.slice(0, Math.max(0, width - 1)).join('')}…`;
}

/** `left` and `right` on one line of `width`, `left` cut to make room. */
function spread(left: string, right: string, width: number): string {
  const room = width - right.length - 1;
  if (right === '' || room < 8) return clip(left, width);
  const l = clip(left, room);
  return `${l}${' '.repeat(Math.max(1, width - [...l].length - right.length))}${right}`;
}

/**
 * Creates a tty renderer writing to `out` (a terminal: its `columns` are read at every frame,
 * 80 when unknown). Never throws into the build.
 */
export function createTtyRenderer(out: Writable & { columns?: number; rows?: number }, options: TtyRendererOptions = {}): TtyRenderer {
  const now = options.now ?? Date.now;
  const schedule = options.schedule ?? defaultSchedule;
  const steps = new Map<string, Step>();
  const transfers = new Map<string, Transfer>();
  const pending: string[] = [];
  let started: number | undefined;
  let liveLines = 0;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let timer: { cancel(): void } | undefined;
  let closed = false;

  const width = (): number => Math.max(20, (out.columns ?? 80) - 1);
  const write = (text: string): void => {
    try {
      out.write(text);
    } catch {
      // a closed terminal must not break the build
    }
  };
  const counts = (): { finished: number; seen: number; cached: number; ran: number } => {
    let finished = 0;
    let cached = 0;
    let ran = 0;
    for (const s of steps.values()) {
      if (s.state !== 'running') finished++;
      if (s.state === 'cached') cached++;
      else if (s.state !== 'running') ran++;
    }
    return { finished, seen: steps.size, cached, ran };
  };
  const header = (t: number, suffix = ''): string => {
    const c = counts();
    return `[+] Building ${secondsOf(t - (started ?? t))} (${c.finished}/${c.seen})${suffix}`;
  };
  const stepLine = (s: Step, t: number): string => {
    const mark = s.state === 'cached' ? 'CACHED ' : s.state === 'error' ? 'ERROR ' : s.state === 'cancelled' ? 'CANCELED ' : '';
    const miss = s.miss === undefined || s.state === 'cached' ? '' : ` (${s.miss})`;
    const time = s.state === 'cached' ? '' : secondsOf((s.state === 'running' ? t : s.end) - s.start);
    return spread(` => ${mark}${s.name}${miss}`, time, width());
  };
  const transferLine = (x: Transfer): string => {
    const w = width();
    const size = x.total === undefined ? bytesOf(x.current) : `${bytesOf(x.current)} / ${bytesOf(x.total)}`;
    const label = ` => => ${x.id.replace(/^sha256:/, '').slice(0, 12)} ${x.name}`;
    if (x.total === undefined || x.total <= 0) return spread(label, size, w);
    const barWidth = Math.min(30, w - [...label].length - size.length - 5);
    if (barWidth < 5) return spread(label, size, w);
    const filled = Math.min(barWidth, Math.floor((x.current / x.total) * barWidth));
    const bar = `[${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? (filled === barWidth ? '=' : '>') : ''}${' '.repeat(barWidth - filled)}]`;
    return spread(`${label} ${bar}`, size, w);
  };
  const liveArea = (t: number): string[] => {
    const lines = [header(t)];
    for (const s of steps.values()) {
      if (s.state !== 'running') continue;
      lines.push(stepLine(s, t));
      const logs = s.partial === '' ? s.logs : [...s.logs, s.partial];
      for (const l of logs.slice(-LOG_LINES)) lines.push(clip(` => => # ${l}`, width()));
    }
    for (const x of transfers.values()) lines.push(transferLine(x));
    const rows = out.rows;
    // Never taller than the terminal: cursor-up cannot reach lines scrolled out of the screen.
    return rows !== undefined && rows > 2 && lines.length > rows - 1 ? [lines[0] as string, ...lines.slice(lines.length - (rows - 2))] : lines;
  };
  const frame = (live: readonly string[]): string => {
    let s = liveLines > 0 ? `\r\x1b[${liveLines}A` : '\r';
    for (const l of pending) s += `${clip(l, width())}\x1b[K\n`;
    pending.length = 0;
    for (const l of live) s += `${l}\x1b[K\n`;
    liveLines = live.length;
    return `${s}\x1b[J`;
  };
  const draw = (): void => {
    timer?.cancel();
    timer = undefined;
    if (closed) return;
    const t = now();
    lastDraw = t;
    write(frame(liveArea(t)));
    const busy = [...steps.values()].some((s) => s.state === 'running') || transfers.size > 0;
    if (busy) timer = schedule(draw, INTERVAL_MS);
  };
  const request = (): void => {
    if (closed || timer !== undefined) return;
    const wait = lastDraw + INTERVAL_MS - now();
    if (wait <= 0) draw();
    else timer = schedule(draw, wait);
  };
  const finish = (s: Step, state: Step['state'], t: number): void => {
    s.state = state;
    s.end = t;
    const line = stepLine(s, t);
    const miss = s.miss;
    if (miss !== undefined && line.includes('…')) {
      // The reason does not fit on the step's line: give it a line of its own.
      delete s.miss;
      pending.push(stepLine(s, t), clip(` => => cache miss: ${miss}`, width()));
      s.miss = miss;
    } else pending.push(line);
    if (state === 'error') {
      // A failed step keeps its last lines of output.
      const logs = s.partial === '' ? s.logs : [...s.logs, s.partial];
      for (const l of logs.slice(-ERROR_LOG_LINES)) pending.push(` => => # ${l}`);
    }
    s.logs = [];
    s.partial = '';
  };

  const sink: EventSink = (e: BuildEvent): void => {
    if (closed) return;
    try {
      const t = now();
      started ??= t;
      switch (e.type) {
        case 'vertex.start': {
          const s = steps.get(e.vertex);
          if (s === undefined) steps.set(e.vertex, { id: e.vertex, name: e.name, state: 'running', start: e.time, end: e.time, logs: [], partial: '' });
          else Object.assign(s, { name: e.name, state: 'running', start: e.time });
          break;
        }
        case 'vertex.cached': {
          const s: Step = steps.get(e.vertex) ?? { id: e.vertex, name: e.name, state: 'running', start: e.time, end: e.time, logs: [], partial: '' };
          steps.set(e.vertex, s);
          finish(s, 'cached', e.time);
          break;
        }
        case 'vertex.miss': {
          const s = steps.get(e.vertex);
          if (s !== undefined) s.miss = sanitize(e.reason);
          break;
        }
        case 'vertex.log': {
          const s = steps.get(e.vertex);
          if (s === undefined || s.state !== 'running') break;
          const parts = `${s.partial}${e.data.endsWith('\n') || e.data.includes('\n') ? e.data : `${e.data}\n`}`.split('\n');
          s.partial = sanitize(parts.pop() ?? '');
          for (const p of parts) s.logs.push(sanitize(p));
          if (s.logs.length > ERROR_LOG_LINES) s.logs.splice(0, s.logs.length - ERROR_LOG_LINES);
          break;
        }
        case 'vertex.done': {
          const s = steps.get(e.vertex);
          if (s === undefined) break;
          finish(s, e.error === 'cancelled' ? 'cancelled' : e.error !== undefined ? 'error' : 'done', e.time);
          break;
        }
        case 'transfer': {
          const x = transfers.get(e.id) ?? { id: e.id, name: e.name, current: 0 };
          x.name = sanitize(e.name);
          x.current = e.current;
          if (e.total !== undefined) x.total = e.total;
          transfers.set(e.id, x);
          if (x.total !== undefined && x.current >= x.total && !/^Downloading/.test(x.name)) {
            transfers.delete(e.id);
            pending.push(spread(` => => ${e.id.replace(/^sha256:/, '').slice(0, 12)} ${x.name}`, bytesOf(x.total), width()));
          }
          break;
        }
        case 'warning': {
          const where = e.loc === undefined ? '' : `${e.loc.file}:${e.loc.line}: `;
          pending.push(`WARNING: ${where}${e.code === undefined ? '' : `${e.code}: `}${sanitize(e.message)}`);
          break;
        }
        case 'info':
          pending.push(` => ${sanitize(e.message)}`);
          break;
      }
      request();
    } catch {
      // rendering must never break the build
    }
  };

  return {
    sink,
    print(line) {
      if (closed) return;
      if (started === undefined) {
        write(`${line}\n`); // nothing drawn yet: no live area to keep below
        return;
      }
      pending.push(sanitize(line));
      request();
    },
    close(outcome) {
      if (closed) return;
      timer?.cancel();
      timer = undefined;
      if (started === undefined) {
        closed = true;
        return; // nothing was drawn: leave the terminal alone
      }
      const t = now();
      for (const s of steps.values()) if (s.state === 'running') finish(s, outcome === 'done' ? 'done' : 'cancelled', t);
      transfers.clear();
      const c = counts();
      const word = outcome === 'done' ? 'FINISHED' : outcome === 'error' ? 'ERROR' : 'CANCELED';
      pending.push(`${header(t, ` ${word}`)}: ${c.ran} ran, ${c.cached} cached`);
      write(frame([]));
      closed = true;
    },
  };
}
