import test from 'ava';
import { isTsbuildError } from '../../src/core/index.js';
import { graphOf, planText, runEnv, execOps } from './plan-helper.js';

const linuxArm = { os: 'linux', architecture: 'arm', variant: 'v7' };

test('args: global ARG is visible in FROM when used before the first FROM', (t) => {
  const g = graphOf('ARG TAG=3.19\nFROM alpine:${TAG}\nRUN true\n');
  t.deepEqual(g.stages[0]?.base, { type: 'image', ref: 'alpine:3.19' });
});

test('args: global ARG is not visible inside a stage when not re-declared', (t) => {
  const g = graphOf('ARG TAG=3.19\nFROM alpine\nENV T=${TAG}x\nRUN true\n');
  t.is(runEnv(g).T, 'x');
  t.is(runEnv(g).TAG, undefined);
});

test('args: re-declared ARG without default inherits the global value when in a stage', (t) => {
  const g = graphOf('ARG TAG=3.19\nFROM alpine\nARG TAG\nENV T=${TAG}\nRUN true\n');
  t.is(runEnv(g).T, '3.19');
  t.is(runEnv(g).TAG, '3.19');
});

test('args: --build-arg overrides the global default when given', (t) => {
  const g = graphOf('ARG TAG=3.19\nFROM alpine:${TAG}\nARG TAG\nRUN true\n', { buildArgs: { TAG: 'edge' } });
  t.deepEqual(g.stages[0]?.base, { type: 'image', ref: 'alpine:edge' });
  t.is(runEnv(g).TAG, 'edge');
});

test('args: stage default is used when no --build-arg is given', (t) => {
  const g = graphOf('ARG V=global\nFROM alpine\nARG V=stage\nRUN true\n');
  t.is(runEnv(g).V, 'stage');
});

test('args: --build-arg overrides the stage default when given', (t) => {
  const g = graphOf('FROM alpine\nARG V=stage\nRUN true\n', { buildArgs: { V: 'cli' } });
  t.is(runEnv(g).V, 'cli');
});

test('args: ARG declared without value and no --build-arg is unset when used', (t) => {
  const g = graphOf('FROM alpine\nARG V\nENV X=${V:-unset}\nRUN true\n');
  t.is(runEnv(g).X, 'unset');
  t.false('V' in runEnv(g));
});

test('args: ENV wins over ARG of the same name when expanding', (t) => {
  const g = graphOf('FROM alpine\nARG V=arg\nENV V=env\nENV W=$V\nRUN true\n', { buildArgs: { V: 'cli' } });
  t.is(runEnv(g).W, 'env');
  t.is(runEnv(g).V, 'env');
  t.is(execOps(g)[0]?.env.filter((e) => e.startsWith('V=')).length, 1);
});

test('args: ARG default can reference earlier ARGs and ENV when in a stage', (t) => {
  const g = graphOf('FROM alpine\nENV BASE=/opt\nARG A=1\nARG B=${BASE}/${A}\nRUN true\n');
  t.is(runEnv(g).B, '/opt/1');
});

test('args: global ARG default can reference an earlier global ARG when before FROM', (t) => {
  const g = graphOf('ARG REG=r.example\nARG IMG=${REG}/app\nFROM ${IMG}\n');
  t.deepEqual(g.stages[0]?.base, { type: 'image', ref: 'r.example/app' });
});

test('args: stage ARG is not visible in the next stage when not re-declared', (t) => {
  const g = graphOf('FROM alpine AS a\nARG V=1\nRUN true\nFROM a\nRUN echo\n');
  t.is(runEnv(g, 1).V, undefined);
});

test('args: an ARG is only in scope after its declaration', (t) => {
  const g = graphOf('FROM alpine\nENV X=${V:-before}\nARG V=1\nENV Y=${V}\nRUN true\n');
  t.is(runEnv(g).X, 'before');
  t.is(runEnv(g).Y, '1');
});

test('args: ENV values see the previous environment when several pairs are set at once', (t) => {
  const g = graphOf('FROM alpine\nENV A=old\nENV A=new B=$A\nRUN true\n');
  t.is(runEnv(g).B, 'old');
});

test('args: undeclared proxy build-args reach RUN as proxyEnv only when given', (t) => {
  const g = graphOf('FROM alpine\nRUN true\n', { buildArgs: { HTTP_PROXY: 'http://proxy:3128', no_proxy: 'localhost' } });
  const op = execOps(g)[0];
  t.deepEqual(op?.proxyEnv, ['HTTP_PROXY=http://proxy:3128', 'no_proxy=localhost']);
  t.false(op?.env.some((e) => e.startsWith('HTTP_PROXY')));
  t.false(g.image.history?.some((h) => h.created_by?.includes('proxy:3128')));
});

test('args: proxy build-args are kept out of the cache key when undeclared', (t) => {
  const a = graphOf('FROM alpine\nRUN true\n', { buildArgs: { HTTP_PROXY: 'http://a' } });
  const b = graphOf('FROM alpine\nRUN true\n', { buildArgs: { HTTP_PROXY: 'http://b' } });
  t.is(a.vertices[1]?.cacheKey, b.vertices[1]?.cacheKey);
});

test('args: a declared proxy ARG becomes an ordinary argument when declared', (t) => {
  const g = graphOf('FROM alpine\nARG HTTP_PROXY\nRUN true\n', { buildArgs: { HTTP_PROXY: 'http://p' } });
  t.deepEqual(execOps(g)[0]?.proxyEnv, []);
  t.is(runEnv(g).HTTP_PROXY, 'http://p');
});

test('args: platform ARGs are automatic in FROM and need re-declaration in a stage', (t) => {
  const g = graphOf('FROM --platform=$BUILDPLATFORM golang AS b\nARG TARGETARCH\nARG TARGETPLATFORM\nENV X=${TARGETOS:-none}\nRUN true\n', {
    buildPlatform: { os: 'linux', architecture: 'amd64' },
    targetPlatform: linuxArm,
  });
  t.is(g.stages[0]?.platform, 'linux/amd64');
  t.is(runEnv(g).TARGETARCH, 'arm');
  t.is(runEnv(g).TARGETPLATFORM, 'linux/arm/v7');
  t.is(runEnv(g).X, 'none');
});

test('args: all eight platform ARGs get their values when declared', (t) => {
  const g = graphOf('FROM alpine\nARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT\nRUN true\n', {
    buildPlatform: { os: 'linux', architecture: 'arm64' },
    targetPlatform: linuxArm,
  });
  t.like(runEnv(g), {
    TARGETPLATFORM: 'linux/arm/v7', TARGETOS: 'linux', TARGETARCH: 'arm', TARGETVARIANT: 'v7',
    BUILDPLATFORM: 'linux/arm64', BUILDOS: 'linux', BUILDARCH: 'arm64', BUILDVARIANT: '',
  });
});

test('args: FROM without --platform uses the target platform', (t) => {
  const g = graphOf('FROM alpine\n', { targetPlatform: linuxArm });
  t.like(g.vertices[0]?.op, { source: 'image', platform: 'linux/arm/v7' });
  t.like(g.image, { architecture: 'arm', variant: 'v7' });
});

test('args: unused --build-arg yields a PLAN_UNUSED_BUILD_ARG warning when nothing declares it', (t) => {
  const r = planText('ARG USED\nFROM alpine\nARG ALSO\nRUN true\n', { buildArgs: { USED: '1', ALSO: '2', EXTRA: '3', HTTP_PROXY: 'x', TARGETARCH: 'y', SOURCE_DATE_EPOCH: '0', BUILDKIT_INLINE_CACHE: '1' } });
  t.deepEqual(r.warnings.map((w) => (w.type === 'warning' ? [w.code, w.message.includes('EXTRA')] : [])), [['PLAN_UNUSED_BUILD_ARG', true]]);
});

test('args: build-arg declared only in a pruned stage is reported unused when that stage is not built', (t) => {
  const r = planText('FROM alpine AS a\nARG ONLY_A\nFROM alpine AS b\nRUN true\n', { buildArgs: { ONLY_A: '1' }, target: 'b' });
  t.is(r.warnings.length, 1);
});

test('args: build-args are prefixed to the RUN history entry when in scope', (t) => {
  const g = graphOf('FROM alpine\nARG A=1\nARG B=2\nRUN make\n');
  t.is(g.image.history?.[0]?.created_by, 'RUN |2 A=1 B=2 /bin/sh -c make');
});

test('args: ${VAR:?msg} fails with the instruction location when unset', (t) => {
  const err = t.throws(() => graphOf('FROM alpine\n\nWORKDIR ${DIR:?DIR is required}\n'));
  t.true(isTsbuildError(err));
  t.is((err as { loc?: { line: number } }).loc?.line, 3);
});

test('args: invalid FROM --platform is a PLAN_BAD_PLATFORM error with the FROM line', (t) => {
  const err = t.throws(() => graphOf('\nFROM --platform=linux//x alpine\n'));
  t.true(isTsbuildError(err, 'PLAN_BAD_PLATFORM'));
  t.is((err as { loc?: { line: number } }).loc?.line, 2);
});

test('args: a blank base name after expansion is an error when FROM uses an unset ARG', (t) => {
  const err = t.throws(() => graphOf('ARG IMG\nFROM ${IMG}\n'));
  t.true(isTsbuildError(err, 'PLAN_EMPTY_BASE'));
});
