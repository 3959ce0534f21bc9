import test from 'ava';
import { TsbuildError } from '../../src/core/index.js';
import { parseDockerfile } from '../../src/dockerfile/index.js';
import { listBaseImages } from '../../src/plan/index.js';
import { baseConfig, execOps, graphOf, toPlanOptions } from './plan-helper.js';

const onbuildBase = baseConfig({ Env: ['APP=/app'], OnBuild: ['COPY . $APP', 'RUN make -C $APP', 'ARG MODE=release', 'ENV MODE=$MODE'] });

test('onbuild: base image triggers are spliced in right after FROM when its config is given', (t) => {
  const g = graphOf('FROM builder\nRUN echo after\n', { baseImages: { builder: onbuildBase } });
  t.deepEqual(g.vertices.map((v) => v.name), [
    '[1/5] FROM builder',
    '[2/5] ONBUILD COPY . $APP',
    '[3/5] ONBUILD RUN make -C $APP',
    '[4/5] ONBUILD ENV MODE=$MODE',
    '[5/5] RUN echo after',
  ]);
  t.true(g.vertices[1]?.onbuild);
  t.is(g.vertices[4]?.onbuild, undefined);
  t.like(g.vertices[1]?.op, { type: 'copy', dest: '/app' });
  t.is(g.vertices[1]?.loc?.line, 1);
});

test('onbuild: triggers are expanded in the child with the base ENV and trigger ARGs', (t) => {
  const g = graphOf('FROM builder\nRUN true\n', { baseImages: { builder: onbuildBase }, buildArgs: { MODE: 'debug' } });
  t.deepEqual(g.image.config?.Env, ['APP=/app', 'MODE=debug']);
});

test('onbuild: triggers are cleared from the child config once run', (t) => {
  const g = graphOf('FROM builder\n', { baseImages: { builder: onbuildBase } });
  t.is(g.image.config?.OnBuild, undefined);
});

test('onbuild: nothing is spliced when the base config is not given', (t) => {
  const g = graphOf('FROM builder\nRUN x\n');
  t.is(g.vertices.length, 2);
});

test('onbuild: ONBUILD set in an earlier stage runs in a stage built FROM it', (t) => {
  const g = graphOf('FROM alpine AS base\nONBUILD RUN echo triggered\nFROM base\nRUN echo child\n');
  t.deepEqual(execOps(g).map((o) => o.args[2]), ['echo triggered', 'echo child']);
  t.is(g.image.config?.OnBuild, undefined);
});

test('onbuild: a trigger naming an image makes listBaseImages report it once the base is resolved', (t) => {
  const df = parseDockerfile('FROM builder\n', 'Dockerfile');
  const base = baseConfig({ OnBuild: ['COPY --from=tools:1 /bin/t /bin/t'] });
  t.deepEqual(listBaseImages(df, toPlanOptions()), ['builder']);
  t.deepEqual([...listBaseImages(df, toPlanOptions({ baseImages: { builder: base } }))].sort(), ['builder', 'tools:1']);
});

test('onbuild: an invalid trigger is PLAN_BAD_ONBUILD at the FROM line', (t) => {
  const err = t.throws(() => graphOf('\nFROM builder\n', { baseImages: { builder: baseConfig({ OnBuild: ['RUNN make'] }) } }));
  t.true(err instanceof TsbuildError && err.code === 'PLAN_BAD_ONBUILD' && err.loc?.line === 2);
});

test('onbuild: FROM or MAINTAINER as a trigger is PLAN_BAD_ONBUILD', (t) => {
  for (const trig of ['FROM alpine', 'MAINTAINER me']) {
    const err = t.throws(() => graphOf('FROM builder\n', { baseImages: { builder: baseConfig({ OnBuild: [trig] }) } }));
    t.true(err instanceof TsbuildError && err.code === 'PLAN_BAD_ONBUILD', trig);
  }
});

test('onbuild: base config env, user, workdir and history are inherited when given', (t) => {
  const base = baseConfig({ Env: ['PATH=/usr/bin'], User: 'nobody', WorkingDir: '/srv', Labels: { a: '1' } }, [{ created_by: 'ADD rootfs' }]);
  const g = graphOf('FROM b\nRUN id\n', { baseImages: { b: base } });
  const op = execOps(g)[0];
  t.deepEqual([op?.env, op?.user, op?.cwd], [['PATH=/usr/bin'], 'nobody', '/srv']);
  t.deepEqual(g.image.config?.Labels, { a: '1' });
  t.is(g.image.history?.[0]?.created_by, 'ADD rootfs');
});
