import test from 'ava';
import { PassThrough } from 'node:stream';
import { createJsonRenderer } from '../../src/cli/progress/json.js';
import { createPlainRenderer } from '../../src/cli/progress/plain.js';

function capture(): { out: PassThrough; text: () => string } {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => {
    text += c.toString();
  });
  return { out, text: () => text };
}

test('plain progress: prints one numbered line per event with logs prefixed by their step when rendering a build', (t) => {
  const { out, text } = capture();
  let clock = 1000;
  const sink = createPlainRenderer(out, () => clock);
  sink({ type: 'vertex.start', vertex: 's0.0', name: '[1/3] FROM busybox', time: 1000 });
  sink({ type: 'vertex.done', vertex: 's0.0', time: 1000 });
  sink({ type: 'vertex.cached', vertex: 's0.1', name: '[2/3] RUN a', time: 1000 });
  sink({ type: 'vertex.start', vertex: 's0.2', name: '[3/3] RUN b', time: 1000 });
  sink({ type: 'vertex.miss', vertex: 's0.2', reason: 'no cache record' });
  clock = 1250;
  sink({ type: 'vertex.log', vertex: 's0.2', stream: 'stdout', data: 'hello' });
  sink({ type: 'vertex.done', vertex: 's0.2', time: 2500, error: '"b" exited 1\n  more' });
  sink({ type: 'vertex.done', vertex: 's1.1', time: 2500, error: 'cancelled' });
  sink({ type: 'warning', message: 'careful', code: 'X_Y', loc: { file: 'Dockerfile', line: 3 } });
  t.is(text(), [
    '#1 [1/3] FROM busybox',
    '#1 DONE 0.0s',
    '#2 [2/3] RUN a',
    '#2 CACHED',
    '#3 [3/3] RUN b',
    '#3 cache miss: no cache record',
    '#3 0.3 hello',
    '#3 ERROR: "b" exited 1',
    '#4 CANCELED',
    'WARNING: Dockerfile:3: X_Y: careful',
    '',
  ].join('\n'));
});

test('rawjson progress: writes every event as one JSON line when rendering a build', (t) => {
  const { out, text } = capture();
  const sink = createJsonRenderer(out);
  sink({ type: 'vertex.cached', vertex: 's0.1', name: '[2/3] RUN a', time: 5 });
  sink({ type: 'info', message: 'done' });
  t.deepEqual(text().trim().split('\n').map((l) => JSON.parse(l) as unknown), [
    { type: 'vertex.cached', vertex: 's0.1', name: '[2/3] RUN a', time: 5 },
    { type: 'info', message: 'done' },
  ]);
});
