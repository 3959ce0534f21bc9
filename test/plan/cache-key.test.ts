import test from 'ava';
import { sha256Of, type Digest } from '../../src/core/index.js';
import { canonicalJson, computeCacheKeys, foldContentDigests, type BuildGraph } from '../../src/plan/index.js';
import { graphOf, type TestPlanOptions } from './plan-helper.js';

const BASE = 'FROM alpine AS build\nARG V=1\nENV E=1\nWORKDIR /src\nCOPY . .\nRUN make\nLABEL l=1\nRUN make install\nFROM scratch\nCOPY --from=build /out /out\n';

function keyOf(g: BuildGraph, name: string): Digest {
  const v = g.vertices.find((x) => x.name.endsWith(name));
  if (v === undefined) throw new Error(`no vertex ${name}`);
  return v.cacheKey;
}

interface Row {
  readonly title: string;
  readonly text?: string;
  readonly options?: TestPlanOptions;
  /** Vertex (name suffix) whose key is compared. */
  readonly vertex: string;
  readonly changes: boolean;
}

const rows: readonly Row[] = [
  { title: 'an unrelated --build-arg', options: { buildArgs: { OTHER: 'x' } }, vertex: 'RUN make', changes: false },
  { title: 'a consumed --build-arg value', options: { buildArgs: { V: '2' } }, vertex: 'RUN make', changes: true },
  { title: 'a proxy --build-arg', options: { buildArgs: { HTTPS_PROXY: 'http://p' } }, vertex: 'RUN make', changes: false },
  { title: 'the ENV value', text: BASE.replace('ENV E=1', 'ENV E=2'), vertex: 'RUN make', changes: true },
  { title: 'a LABEL before a RUN', text: BASE.replace('LABEL l=1', 'LABEL l=2'), vertex: 'RUN make install', changes: false },
  { title: 'the LABEL itself', text: BASE.replace('LABEL l=1', 'LABEL l=2'), vertex: 'LABEL l=2', changes: true },
  { title: 'an earlier RUN command', text: BASE.replace('RUN make\n', 'RUN make all\n'), vertex: 'RUN make install', changes: true },
  { title: 'a later RUN command', text: BASE.replace('RUN make install', 'RUN make check'), vertex: 'RUN make', changes: false },
  { title: 'the base image', text: BASE.replace('FROM alpine', 'FROM debian'), vertex: 'COPY . .', changes: true },
  { title: 'the target platform', options: { targetPlatform: { os: 'linux', architecture: 'arm64' } }, vertex: 'FROM alpine', changes: true },
  { title: 'the WORKDIR', text: BASE.replace('WORKDIR /src', 'WORKDIR /app'), vertex: 'COPY . .', changes: true },
  { title: 'blank lines and comments (locations)', text: `# comment\n\n${BASE.replace('RUN make\n', '\n\nRUN make\n')}`, vertex: 'RUN make install', changes: false },
  { title: 'the stage name', text: BASE.replace('AS build', 'AS compile').replace('--from=build', '--from=compile'), vertex: 'COPY --from=compile /out /out', changes: false },
  { title: 'an upstream stage step', text: BASE.replace('RUN make install', 'RUN make install2'), vertex: 'COPY --from=build /out /out', changes: true },
  { title: 'the COPY --chmod flag', text: BASE.replace('COPY . .', 'COPY --chmod=600 . .'), vertex: 'RUN make', changes: true },
  { title: 'the keyword casing', text: BASE.replace('RUN make\n', 'run make\n'), vertex: 'make install', changes: false },
  { title: 'an extra unused stage', text: `FROM busybox AS unused\nRUN x\n${BASE}`, vertex: 'RUN make install', changes: false },
];

for (const row of rows) {
  test(`cache-key: ${row.changes ? 'changes' : 'stays'} when ${row.title} changes`, (t) => {
    const before = graphOf(BASE);
    const after = graphOf(row.text ?? BASE, row.options);
    const beforeKey = keyOf(before, row.vertex.replace('LABEL l=2', 'LABEL l=1').replace('--from=compile', '--from=build').replace('make install2', 'make install'));
    const afterKey = keyOf(after, row.vertex);
    if (row.changes) t.not(afterKey, beforeKey);
    else t.is(afterKey, beforeKey);
  });
}

test('cache-key: a COPY --link key ignores the parent while its descendants still chain on it', (t) => {
  const df = (base: string, chown = ''): string => `FROM ${base}\nRUN make\nCOPY --link ${chown}. /app\nRUN test\n`;
  t.is(keyOf(graphOf(df('alpine')), 'COPY --link . /app'), keyOf(graphOf(df('debian')), 'COPY --link . /app'));
  t.not(keyOf(graphOf(df('alpine')), 'RUN test'), keyOf(graphOf(df('debian')), 'RUN test'));
  t.is(keyOf(graphOf(df('alpine', '--chown=1:2 ')), 'COPY --link --chown=1:2 . /app'), keyOf(graphOf(df('debian', '--chown=1:2 ')), 'COPY --link --chown=1:2 . /app'));
  // A --chown name is looked up in the parent's /etc/passwd: the parent stays in the key.
  t.not(keyOf(graphOf(df('alpine', '--chown=app ')), 'COPY --link --chown=app . /app'), keyOf(graphOf(df('debian', '--chown=app ')), 'COPY --link --chown=app . /app'));
  t.not(keyOf(graphOf(df('alpine').replace('--link ', '')), 'COPY . /app'), keyOf(graphOf(df('debian').replace('--link ', '')), 'COPY . /app'));
});

test('cache-key: planning twice gives byte-identical JSON when inputs are equal', (t) => {
  const opts: TestPlanOptions = { buildArgs: { V: '3', HTTP_PROXY: 'x' } };
  t.is(JSON.stringify(graphOf(BASE, opts)), JSON.stringify(graphOf(BASE, opts)));
});

test('cache-key: canonical JSON sorts keys and drops undefined members', (t) => {
  t.is(canonicalJson({ b: 1, a: [undefined, { d: undefined, c: 'x' }] }), '{"a":[null,{"c":"x"}],"b":1}');
});

test('cache-key: folding content digests changes the vertex and all its descendants', (t) => {
  const g = graphOf(BASE);
  const copy = g.vertices.find((v) => v.name.endsWith('COPY . .'));
  if (copy === undefined) throw new Error('no COPY');
  const plain = computeCacheKeys(g.vertices);
  t.deepEqual([...plain.entries()], g.vertices.map((v) => [v.id, v.cacheKey]));
  const digest = sha256Of('file content');
  const folded = computeCacheKeys(g.vertices, new Map([[copy.id, [digest]]]));
  t.is(folded.get(copy.id), foldContentDigests(copy.cacheKey, [digest]));
  const changed = g.vertices.filter((v) => folded.get(v.id) !== v.cacheKey).map((v) => v.id);
  const idx = g.vertices.indexOf(copy);
  t.true(changed.includes(g.output));
  t.false(changed.some((id) => g.vertices.findIndex((v) => v.id === id) < idx));
  t.is(foldContentDigests(copy.cacheKey, []), copy.cacheKey);
});
