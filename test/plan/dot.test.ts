import test from 'ava';
import { graphToDot } from '../../src/plan/index.js';
import { graphOf } from './plan-helper.js';

const TEXT = 'FROM alpine AS build\nRUN make\nLABEL x=1\nFROM scratch\nCOPY --from=build /out /out\nCOPY --from=busybox /bin/sh /sh\n';

test('dot: stages become clusters and image sources stay outside when rendered', (t) => {
  const dot = graphToDot(graphOf(TEXT));
  t.true(dot.startsWith('digraph build {\n'));
  t.true(dot.trimEnd().endsWith('}'));
  t.regex(dot, /subgraph "cluster_0" \{\n {4}label="stage 0: build \(linux\/amd64\)";/);
  t.regex(dot, /subgraph "cluster_1" \{\n {4}label="stage 1 \(linux\/amd64\)";/);
  t.regex(dot, /"image\.0" \[label="\[internal\] load image busybox \(linux\/amd64\)", shape=cylinder\];/);
  const clusterStart = dot.indexOf('subgraph');
  t.true(dot.indexOf('"image.0" [') < clusterStart);
});

test('dot: every input becomes an edge, cross-stage edges dashed', (t) => {
  const g = graphOf(TEXT);
  const dot = graphToDot(g);
  const edges = dot.split('\n').filter((l) => l.includes('->'));
  t.is(edges.length, g.vertices.reduce((n, v) => n + v.inputs.length, 0));
  t.true(edges.includes('  "s0.2" -> "s1.1" [style=dashed];'));
  t.true(edges.includes('  "s0.0" -> "s0.1";'));
});

test('dot: quotes and backslashes in names are escaped', (t) => {
  const dot = graphToDot(graphOf('FROM alpine\nRUN echo "a\\\\b"\n'));
  t.true(dot.includes('[label="[2/2] RUN echo \\"a\\\\\\\\b\\"", style=bold];'));
});

test('graph: the graph survives a JSON round trip unchanged', (t) => {
  const g = graphOf(TEXT, { buildArgs: { HTTP_PROXY: 'p' } });
  t.deepEqual(JSON.parse(JSON.stringify(g)), g);
});
