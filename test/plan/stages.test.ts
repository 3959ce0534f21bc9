import test from 'ava';
import { TsbuildError } from '../../src/core/index.js';
import { parseDockerfile } from '../../src/dockerfile/index.js';
import { listBaseImages } from '../../src/plan/index.js';
import { graphOf, stageVertices, toPlanOptions } from './plan-helper.js';

const MULTI = `FROM alpine AS Base
RUN echo base
FROM golang AS build
RUN go build
FROM base AS test
RUN echo test
FROM scratch AS final
COPY --from=BUILD /out /out
`;

function codeOf(fn: () => unknown): { code: string; line: number | undefined; message: string } {
  try {
    fn();
  } catch (err) {
    if (err instanceof TsbuildError) return { code: err.code, line: err.loc?.line, message: err.message };
    throw err;
  }
  throw new Error('no error thrown');
}

test('stages: the last stage is the target when --target is absent', (t) => {
  const g = graphOf(MULTI);
  t.is(g.target, 3);
  t.is(g.output, 's3.1');
});

test('stages: stages the target does not need are pruned when building the last stage', (t) => {
  const g = graphOf(MULTI);
  t.deepEqual(g.stages.map((s) => s.index), [1, 3]);
  t.deepEqual(stageVertices(g, 0), []);
});

test('stages: --target selects a stage case-insensitively and prunes later ones', (t) => {
  const g = graphOf(MULTI, { target: 'TEST' });
  t.is(g.target, 2);
  t.deepEqual(g.stages.map((s) => s.index), [0, 2]);
  t.deepEqual(g.stages[1]?.base, { type: 'stage', stage: 0 });
});

test('stages: FROM a previous stage continues from its last vertex when named in another case', (t) => {
  const g = graphOf(MULTI, { target: 'test' });
  const from = g.vertices.find((v) => v.id === 's2.0');
  t.deepEqual(from?.inputs, ['s0.1']);
  t.deepEqual(from?.op, { type: 'source', source: 'stage', stage: 0 });
});

test('stages: FROM a stage inherits its image config and history', (t) => {
  const g = graphOf('FROM alpine AS a\nENV A=1\nWORKDIR /w\nFROM a\nRUN true\n');
  t.deepEqual(g.image.config?.Env, ['A=1']);
  t.is(g.image.config?.WorkingDir, '/w');
  t.deepEqual(g.image.history?.map((h) => h.created_by), ['ENV A=1', 'WORKDIR /w', 'RUN /bin/sh -c true']);
});

test('stages: COPY --from accepts a stage index when numeric', (t) => {
  const g = graphOf('FROM alpine\nRUN a\nFROM scratch\nCOPY --from=0 /a /a\n');
  t.like(g.vertices.find((v) => v.id === 's1.1')?.op, { type: 'copy', from: { kind: 'stage', stage: 0, vertex: 's0.1' } });
  t.deepEqual(g.vertices.find((v) => v.id === 's1.1')?.inputs, ['s1.0', 's0.1']);
});

test('stages: COPY --from an unknown name is an image source when no stage has that name', (t) => {
  const g = graphOf('FROM scratch\nCOPY --from=nginx:1.25 /etc/nginx /etc/nginx\n');
  const img = g.vertices.find((v) => v.id === 'image.0');
  t.deepEqual(img?.op, { type: 'source', source: 'image', ref: 'nginx:1.25', platform: 'linux/amd64' });
  t.is(img?.stage, null);
  t.deepEqual(g.vertices.find((v) => v.id === 's0.1')?.inputs, ['s0.0', 'image.0']);
});

test('stages: COPY --from the same image twice shares one image vertex', (t) => {
  const g = graphOf('FROM scratch\nCOPY --from=busybox /a /a\nCOPY --from=busybox /b /b\n');
  t.is(g.vertices.filter((v) => v.stage === null).length, 1);
});

test('stages: COPY --from and RUN --mount from= expand ARGs when in scope', (t) => {
  const g = graphOf('FROM alpine AS src\nRUN x\nFROM alpine\nARG FROM_STAGE=src\nCOPY --from=${FROM_STAGE} /a /a\nRUN --mount=type=bind,from=$FROM_STAGE,target=/m true\n');
  t.like(g.vertices.find((v) => v.id === 's1.1')?.op, { from: { kind: 'stage', stage: 0 } });
  t.like(g.vertices.find((v) => v.id === 's1.2')?.op, { type: 'exec', mounts: [{ type: 'bind', from: { kind: 'stage', stage: 0, vertex: 's0.1' } }] });
  t.deepEqual(g.vertices.find((v) => v.id === 's1.2')?.inputs, ['s1.1', 's0.1']);
});

test('stages: unknown --target is PLAN_UNKNOWN_TARGET listing the stage names', (t) => {
  const e = codeOf(() => graphOf(MULTI, { target: 'nope' }));
  t.is(e.code, 'PLAN_UNKNOWN_TARGET');
  t.true(e.message.includes('base, build, test, final'));
});

test('stages: COPY --from a later stage is PLAN_FORWARD_REFERENCE with its line', (t) => {
  const e = codeOf(() => graphOf('FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\n', { target: 'a' }));
  t.deepEqual([e.code, e.line], ['PLAN_FORWARD_REFERENCE', 2]);
});

test('stages: FROM a later stage name is PLAN_FORWARD_REFERENCE', (t) => {
  const e = codeOf(() => graphOf('FROM b AS a\nFROM alpine AS b\n', { target: 'a' }));
  t.deepEqual([e.code, e.line], ['PLAN_FORWARD_REFERENCE', 1]);
});

test('stages: a stage copying from itself is PLAN_STAGE_CYCLE', (t) => {
  t.is(codeOf(() => graphOf('FROM alpine AS a\nRUN x\nCOPY --from=a /x /y\n')).code, 'PLAN_STAGE_CYCLE');
  t.is(codeOf(() => graphOf('FROM alpine\nCOPY --from=0 /x /y\n')).code, 'PLAN_STAGE_CYCLE');
  t.is(codeOf(() => graphOf('FROM alpine AS a\nRUN --mount=from=a,target=/m x\n')).code, 'PLAN_STAGE_CYCLE');
});

test('stages: a numeric --from beyond the stages is PLAN_BAD_STAGE_INDEX', (t) => {
  t.is(codeOf(() => graphOf('FROM alpine\nFROM alpine\nCOPY --from=7 /x /y\n')).code, 'PLAN_BAD_STAGE_INDEX');
  t.is(codeOf(() => graphOf('FROM alpine\nFROM alpine\nCOPY --from=2 /x /y\n')).code, 'PLAN_BAD_STAGE_INDEX');
});

test('stages: duplicate stage names are PLAN_DUPLICATE_STAGE when names differ only in case', (t) => {
  const e = codeOf(() => graphOf('FROM alpine AS app\nFROM alpine AS APP\n'));
  t.deepEqual([e.code, e.line], ['PLAN_DUPLICATE_STAGE', 2]);
});

test('stages: unnamed stages are shown as stage-N when there are several', (t) => {
  const g = graphOf('FROM alpine\nRUN a\nFROM alpine\nCOPY --from=0 /a /a\n');
  t.deepEqual(g.vertices.map((v) => v.name), ['[stage-0 1/2] FROM alpine', '[stage-0 2/2] RUN a', '[stage-1 1/2] FROM alpine', '[stage-1 2/2] COPY --from=0 /a /a']);
});

test('stages: a single unnamed stage has no prefix and padded step numbers when there are 10+ steps', (t) => {
  const g = graphOf(`FROM alpine\n${'RUN x\n'.repeat(10)}`);
  t.is(g.vertices[0]?.name, '[ 1/11] FROM alpine');
  t.is(g.vertices[10]?.name, '[11/11] RUN x');
});

test('stages: listBaseImages names FROM and --from images of needed stages after expansion', (t) => {
  const df = parseDockerfile('ARG V=3\nFROM alpine:${V} AS a\nFROM golang AS unused\nFROM a\nCOPY --from=busybox:1 /bin /bin\nRUN --mount=from=tools:2,target=/t x\n', 'Dockerfile');
  const refs = listBaseImages(df, toPlanOptions());
  t.deepEqual([...refs].sort(), ['alpine:3', 'busybox:1', 'tools:2']);
});

test('stages: every vertex input precedes its consumer when ordered', (t) => {
  const g = graphOf('FROM alpine AS a\nRUN a\nFROM alpine AS b\nRUN b\nFROM scratch\nCOPY --from=b / /\nCOPY --from=a / /\nCOPY --from=img / /\n');
  const seen = new Set<string>();
  for (const v of g.vertices) {
    for (const i of v.inputs) t.true(seen.has(i), `${v.id} needs ${i}`);
    seen.add(v.id);
  }
});

test('stages: FROM scratch has an empty config and a scratch source', (t) => {
  const g = graphOf('FROM scratch\n');
  t.deepEqual(g.vertices[0]?.op, { type: 'source', source: 'scratch' });
  t.deepEqual(g.image.config, {});
  t.deepEqual(g.stages[0]?.base, { type: 'scratch' });
});

test('stages: a chain of thousands of stages plans without exhausting the stack', (t) => {
  const n = 6000;
  let text = 'FROM alpine AS s0\n';
  for (let i = 1; i < n; i++) text += i % 2 === 0 ? `FROM s${i - 1} AS s${i}\n` : `FROM scratch AS s${i}\nCOPY --from=s${i - 1} / /\n`;
  const g = graphOf(text);
  t.is(g.stages.length, n);
  t.is(g.target, n - 1);
});
