import test from 'ava';
import { Writable } from 'node:stream';
import type { BuildEvent } from '../../src/core/index.js';
import { createTtyRenderer, type TtyRenderer } from '../../src/cli/progress/tty.js';
import { openBuildProgress } from '../../src/cli/progress/select.js';

/** A terminal stand-in: keeps every byte written and the number of write calls. */
class Capture extends Writable {
  text = '';
  writes = 0;
  constructor(readonly columns: number, readonly rows?: number) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    this.writes++;
    done();
  }
}

/**
 * Interprets the bytes as a terminal would (the subset a renderer may use: text, \n, \r, cursor
 * up `ESC[nA`, erase line `ESC[K`, erase below `ESC[J`) and returns the screen lines. Anything else
 * fails the test: a renderer must not emit sequences we do not expect.
 */
function screen(bytes: string, columns: number): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  for (let i = 0; i < bytes.length; i++) {
    const ch = bytes[i] as string;
    if (ch === '\x1b') {
      const m = /^\x1b\[(\d*)([AKJ])/.exec(bytes.slice(i));
      if (m === null) throw new Error(`unexpected escape at ${i}: ${JSON.stringify(bytes.slice(i, i + 8))}`);
      const [all, n, op] = m as unknown as [string, string, string];
      if (op === 'A') row = Math.max(0, row - Number(n || '1'));
      else if (op === 'K') lines[row] = (lines[row] ?? '').slice(0, col);
      else lines.splice(row + 1), (lines[row] = (lines[row] ?? '').slice(0, col));
      i += all.length - 1;
    } else if (ch === '\n') {
      row++;
      col = 0;
      if (lines[row] === undefined) lines[row] = '';
    } else if (ch === '\r') col = 0;
    else {
      if (col >= columns) throw new Error(`line ${row} wraps past ${columns} columns: ${lines[row] ?? ''}`);
      const line = (lines[row] ?? '').padEnd(col, ' ');
      lines[row] = line.slice(0, col) + ch + line.slice(col + 1);
      col++;
    }
  }
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** A renderer over a fake clock and a manual scheduler (`tick` runs what is due). */
function setup(columns = 80, rows?: number): { out: Capture; r: TtyRenderer; emit: (e: BuildEvent) => void; advance: (ms: number) => void; clock: () => number } {
  let t = 1000;
  const queue: { at: number; fn: () => void; live: boolean }[] = [];
  const out = new Capture(columns, rows);
  const r = createTtyRenderer(out, {
    now: () => t,
    schedule: (fn, ms) => {
      const entry = { at: t + ms, fn, live: true };
      queue.push(entry);
      return { cancel: () => { entry.live = false; } };
    },
  });
  const advance = (ms: number): void => {
    const end = t + ms;
    for (;;) {
      const due = queue.filter((q) => q.live && q.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      due.live = false;
      t = Math.max(t, due.at);
      due.fn();
    }
    t = end;
  };
  return { out, r, emit: r.sink, advance, clock: () => t };
}

test('tty progress: shows a running step with its timer and last log lines, then collapses them when the step ends', (t) => {
  const { out, emit, advance, clock, r } = setup();
  emit({ type: 'vertex.cached', vertex: 's0.1', name: '[2/3] RUN echo one', time: clock() });
  emit({ type: 'vertex.start', vertex: 's0.2', name: '[3/3] RUN make', time: clock() });
  emit({ type: 'vertex.miss', vertex: 's0.2', reason: 'file src/app.js changed' });
  for (let i = 1; i <= 8; i++) emit({ type: 'vertex.log', vertex: 's0.2', stream: 'stdout', data: `line ${i}` });
  advance(1500);
  const live = screen(out.text, 80);
  t.is(live[0], ' => CACHED [2/3] RUN echo one');
  t.regex(live[1] ?? '', /^\[\+\] Building 1\.5s \(1\/2\)$/);
  t.regex(live[2] ?? '', /^ => \[3\/3\] RUN make \(file src\/app\.js changed\) +1\.5s$/);
  t.deepEqual(live.slice(3), ['line 3', 'line 4', 'line 5', 'line 6', 'line 7', 'line 8'].map((l) => ` => => # ${l}`), 'the last 6 lines');
  emit({ type: 'vertex.done', vertex: 's0.2', time: clock() + 500 });
  emit({ type: 'info', message: 'writing image sha256:abc done' });
  advance(600);
  r.close('done');
  const end = screen(out.text, 80);
  t.is(end.length, 4, end.join('\n'));
  t.regex(end[1] ?? '', /^ => \[3\/3\] RUN make \(file src\/app\.js changed\) +2\.0s$/);
  t.is(end[2], ' => writing image sha256:abc done');
  t.regex(end[3] ?? '', /^\[\+\] Building 2\.1s \(2\/2\) FINISHED: 1 ran, 1 cached$/);
  t.false(end.some((l) => l.includes('line 8')), 'logs of a finished step are collapsed');
});

test('tty progress: keeps the last log lines of a failed step and marks cancelled ones when the build fails', (t) => {
  const { out, emit, clock, r } = setup();
  emit({ type: 'vertex.start', vertex: 'a', name: '[a 2/2] RUN sleep 60', time: clock() });
  emit({ type: 'vertex.start', vertex: 'b', name: '[b 2/2] RUN exit 4', time: clock() });
  emit({ type: 'vertex.log', vertex: 'b', stream: 'stderr', data: 'boom: \x1b[31mred\x1b[0m\x07 text' });
  emit({ type: 'vertex.done', vertex: 'b', time: clock() + 300, error: 'RUN_EXIT: "exit 4" exited 4' });
  emit({ type: 'vertex.done', vertex: 'a', time: clock() + 400, error: 'cancelled' });
  r.close('error');
  r.close('error');
  const end = screen(out.text, 80);
  t.regex(end[0] ?? '', /^ => ERROR \[b 2\/2\] RUN exit 4 +0\.3s$/);
  t.is(end[1], ' => => # boom: red text', 'control sequences of logs are removed');
  t.regex(end[2] ?? '', /^ => CANCELED \[a 2\/2\] RUN sleep 60 +0\.4s$/);
  t.regex(end[3] ?? '', /\(2\/2\) ERROR: 2 ran, 0 cached$/);
  t.is(end.length, 4);
  t.true(out.text.endsWith('\n\x1b[J'), 'the cursor ends on a clean line');
});

test('tty progress: cuts every line to the terminal width and stays within its height when many steps run', (t) => {
  const { out, emit, clock, advance, r } = setup(40, 6);
  for (let i = 0; i < 10; i++) emit({ type: 'vertex.start', vertex: `v${i}`, name: `[${i}/10] RUN a very long command line that does not fit ${i}`, time: clock() });
  advance(100);
  const lines = screen(out.text, 40);
  t.true(lines.every((l) => l.length <= 39), lines.join('\n'));
  t.true(lines.length <= 5, lines.join('\n'));
  t.regex(lines.at(-1) ?? '', /…\s+0\.1s$/);
  r.close('cancelled');
  t.true(screen(out.text, 40).every((l) => l.length <= 39));
});

test('tty progress: redraws at most once per 100 ms however many events arrive', (t) => {
  const { out, emit, clock, advance, r } = setup();
  emit({ type: 'vertex.start', vertex: 'x', name: '[2/2] RUN yes', time: clock() });
  const first = out.writes;
  for (let i = 0; i < 500; i++) emit({ type: 'vertex.log', vertex: 'x', stream: 'stdout', data: `y ${i}` });
  t.is(out.writes, first, 'no frame before the interval has passed');
  advance(100);
  t.is(out.writes, first + 1);
  t.true(screen(out.text, 80).includes(' => => # y 499'));
  r.close('done');
});

test('tty progress: draws a transfer bar with sizes and replaces it with a line when the transfer ends', (t) => {
  const { out, emit, advance, r } = setup(100);
  emit({ type: 'transfer', id: 'sha256:0123456789abcdef', name: 'Downloading', current: 5 * 1024 * 1024, total: 10 * 1024 * 1024 });
  advance(100);
  const live = screen(out.text, 100);
  t.regex(live[1] ?? '', /^ => => 0123456789ab Downloading \[=+> +\] +5\.0MB \/ 10\.0MB$/);
  emit({ type: 'transfer', id: 'sha256:0123456789abcdef', name: 'Pull complete', current: 10 * 1024 * 1024, total: 10 * 1024 * 1024 });
  r.close('done');
  const end = screen(out.text, 100);
  t.regex(end[0] ?? '', /^ => => 0123456789ab Pull complete +10\.0MB$/);
  t.false(end.some((l) => l.includes('[=')), end.join('\n'));
});

test('tty progress: writes nothing when closed before any event and prints lines above the live area', (t) => {
  const quiet = setup();
  quiet.r.close('error');
  t.is(quiet.out.text, '');
  const { out, emit, clock, r, advance } = setup();
  r.print('WARNING: first');
  emit({ type: 'vertex.start', vertex: 'x', name: '[2/2] RUN true', time: clock() });
  r.print('WARNING: second');
  advance(100);
  emit({ type: 'vertex.done', vertex: 'x', time: clock() });
  r.close('done');
  const end = screen(out.text, 80);
  t.is(end[0], 'WARNING: first');
  t.is(end[1], 'WARNING: second');
  t.regex(end[2] ?? '', /^ => \[2\/2\] RUN true +0\.1s$/);
});

test('openBuildProgress: picks tty for auto on a terminal and plain elsewhere, and keeps rawjson and quiet when asked', (t) => {
  const term = Object.assign(new Capture(80), { isTTY: true });
  const pipe = new Capture(80);
  const start: BuildEvent = { type: 'vertex.start', vertex: 'x', name: '[1/1] FROM busybox', time: 0 };
  const auto = openBuildProgress('auto', false, term);
  auto.events(start);
  auto.close('done');
  t.regex(term.text, /\[\+\] Building .* FINISHED/);
  const plain = openBuildProgress('auto', false, pipe);
  plain.events(start);
  plain.close('done');
  t.is(pipe.text, '#1 [1/1] FROM busybox\n');
  const json = new Capture(80);
  openBuildProgress('rawjson', false, json).events(start);
  t.deepEqual(JSON.parse(json.text), start);
  const quiet = new Capture(80);
  const q = openBuildProgress('plain', true, quiet);
  q.events(start);
  q.print('WARNING: still shown');
  t.is(quiet.text, 'WARNING: still shown\n');
});
