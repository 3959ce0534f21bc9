import test from 'ava';
import { TsbuildError } from '../../src/core/index.js';
import type { CopyOp, ExecOp } from '../../src/plan/index.js';
import { baseConfig, execOps, graphOf } from './plan-helper.js';

function errorOf(fn: () => unknown): TsbuildError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TsbuildError) return err;
    throw err;
  }
  throw new Error('no error thrown');
}

function copyOps(text: string): CopyOp[] {
  return graphOf(text).vertices.flatMap((v) => (v.op.type === 'copy' ? [v.op] : []));
}

test('convert: shell-form RUN uses /bin/sh -c when no SHELL is set', (t) => {
  t.deepEqual(execOps(graphOf('FROM alpine\nRUN echo hi\n'))[0]?.args, ['/bin/sh', '-c', 'echo hi']);
});

test('convert: shell-form RUN, CMD and ENTRYPOINT use SHELL when set', (t) => {
  const g = graphOf('FROM alpine\nSHELL ["/bin/bash", "-eo", "pipefail", "-c"]\nRUN echo hi\nCMD run\nENTRYPOINT start\n');
  t.deepEqual(execOps(g)[0]?.args, ['/bin/bash', '-eo', 'pipefail', '-c', 'echo hi']);
  t.deepEqual(g.image.config?.Entrypoint, ['/bin/bash', '-eo', 'pipefail', '-c', 'start']);
  t.deepEqual(g.image.config?.Cmd, ['/bin/bash', '-eo', 'pipefail', '-c', 'run']);
  t.deepEqual(g.image.config?.Shell, ['/bin/bash', '-eo', 'pipefail', '-c']);
});

test('convert: exec-form RUN keeps argv and does not expand variables', (t) => {
  t.deepEqual(execOps(graphOf('FROM alpine\nENV X=1\nRUN ["echo", "$X"]\n'))[0]?.args, ['echo', '$X']);
});

test('convert: inherited SHELL from the base config applies when set there', (t) => {
  const g = graphOf('FROM base\nRUN x\n', { baseImages: { base: baseConfig({ Shell: ['pwsh', '-c'] }) } });
  t.deepEqual(execOps(g)[0]?.args, ['pwsh', '-c', 'x']);
});

test('convert: ENTRYPOINT resets an inherited CMD but keeps a CMD set in the stage', (t) => {
  const base = { baseImages: { base: baseConfig({ Cmd: ['sh'] }) } };
  t.is(graphOf('FROM base\nENTRYPOINT ["app"]\n', base).image.config?.Cmd, null);
  t.deepEqual(graphOf('FROM base\nCMD ["x"]\nENTRYPOINT ["app"]\n', base).image.config?.Cmd, ['x']);
  t.deepEqual(graphOf('FROM base\nENTRYPOINT ["app"]\nCMD ["y"]\n', base).image.config?.Cmd, ['y']);
});

test('convert: a CMD set in a parent stage is reset by ENTRYPOINT in the child stage', (t) => {
  t.is(graphOf('FROM alpine AS a\nCMD ["x"]\nFROM a\nENTRYPOINT ["e"]\n').image.config?.Cmd, null);
});

test('convert: WORKDIR resolves relative paths against the previous WORKDIR', (t) => {
  const g = graphOf('FROM alpine\nWORKDIR /a\nWORKDIR b/../c\nWORKDIR ./d/\nRUN pwd\n');
  t.is(g.image.config?.WorkingDir, '/a/c/d');
  t.is(execOps(g)[0]?.cwd, '/a/c/d');
});

test('convert: WORKDIR / makes no layer while other paths do', (t) => {
  const g = graphOf('FROM alpine\nWORKDIR /\nWORKDIR /app\n');
  t.deepEqual(g.image.history?.map((h) => h.empty_layer), [true, false]);
});

test('convert: RUN runs as the USER and in / when nothing is set', (t) => {
  const g = graphOf('FROM alpine\nRUN a\nUSER app:app\nRUN b\n');
  t.deepEqual(execOps(g).map((o) => [o.user, o.cwd]), [['', '/'], ['app:app', '/']]);
});

test('convert: ENV replaces a variable in place and keeps base env order', (t) => {
  const g = graphOf('FROM base\nENV B=2 C=3\nENV A=9\n', { baseImages: { base: baseConfig({ Env: ['A=1', 'PATH=/bin'] }) } });
  t.deepEqual(g.image.config?.Env, ['A=9', 'PATH=/bin', 'B=2', 'C=3']);
});

test('convert: ENV and LABEL expand keys and values with quotes removed', (t) => {
  const g = graphOf('FROM alpine\nARG N=name\nENV "K_$N"="a b" legacy=1\nLABEL "org.$N"="x y" z=\'$N\'\n');
  t.deepEqual(g.image.config?.Env, ['K_name=a b', 'legacy=1']);
  t.deepEqual(g.image.config?.Labels, { 'org.name': 'x y', z: '$N' });
});

test('convert: EXPOSE normalises protocols and expands ranges and variables', (t) => {
  const g = graphOf('FROM alpine\nARG P=8080\nEXPOSE 80 53/UDP $P 9000-9002/tcp\n');
  t.deepEqual(Object.keys(g.image.config?.ExposedPorts ?? {}), ['53/udp', '80/tcp', '8080/tcp', '9000/tcp', '9001/tcp', '9002/tcp']);
});

test('convert: EXPOSE with an invalid port is PLAN_BAD_PORT', (t) => {
  t.is(errorOf(() => graphOf('FROM alpine\nEXPOSE 80/xyz\n')).code, 'PLAN_BAD_PORT');
  t.is(errorOf(() => graphOf('FROM alpine\nEXPOSE 70000\n')).code, 'PLAN_BAD_PORT');
});

test('convert: VOLUME, STOPSIGNAL, USER and MAINTAINER edit the config when set', (t) => {
  const g = graphOf('FROM alpine\nARG D=/data\nVOLUME ["$D", "/logs"]\nVOLUME /x\nSTOPSIGNAL SIGINT\nUSER ${D}\nMAINTAINER Jane <j@example.com>\n');
  t.deepEqual(g.image.config?.Volumes, { '/data': {}, '/logs': {}, '/x': {} });
  t.is(g.image.config?.StopSignal, 'SIGINT');
  t.is(g.image.config?.User, '/data');
  t.is(g.image.author, 'Jane <j@example.com>');
});

test('convert: HEALTHCHECK stores CMD-SHELL/CMD tests with durations in nanoseconds', (t) => {
  const g = graphOf('FROM alpine\nHEALTHCHECK --interval=30s --timeout=5s --start-period=1m --start-interval=2s --retries=3 CMD curl -f http://x/\n');
  t.deepEqual(g.image.config?.Healthcheck, {
    Test: ['CMD-SHELL', 'curl -f http://x/'], Interval: 30e9, Timeout: 5e9, StartPeriod: 60e9, StartInterval: 2e9, Retries: 3,
  });
  t.deepEqual(graphOf('FROM alpine\nHEALTHCHECK CMD ["true"]\n').image.config?.Healthcheck, { Test: ['CMD', 'true'] });
  t.deepEqual(graphOf('FROM alpine\nHEALTHCHECK NONE\n').image.config?.Healthcheck, { Test: ['NONE'] });
});

test('convert: ONBUILD records the trigger text in the config', (t) => {
  t.deepEqual(graphOf('FROM alpine\nONBUILD RUN make\nONBUILD COPY . /src\n').image.config?.OnBuild, ['RUN make', 'COPY . /src']);
});

test('convert: COPY destination resolves against WORKDIR and keeps a trailing slash', (t) => {
  const ops = copyOps('FROM alpine\nWORKDIR /app\nCOPY a .\nCOPY b sub/\nCOPY c /abs\nCOPY d e\n');
  t.deepEqual(ops.map((o) => o.dest), ['/app/', '/app/sub/', '/abs', '/app/e']);
});

test('convert: COPY with several sources needs a directory destination', (t) => {
  const e = errorOf(() => graphOf('FROM alpine\nCOPY a b /dest\n'));
  t.deepEqual([e.code, e.loc?.line], ['PLAN_COPY_DEST_NOT_DIR', 2]);
  t.notThrows(() => graphOf('FROM alpine\nCOPY a b /dest/\n'));
});

test('convert: COPY and ADD flags are expanded and carried into the op', (t) => {
  const [copy, add] = copyOps('FROM alpine\nARG U=1000\nCOPY --chown=$U:$U --chmod=0755 --link --parents --exclude=*.md ./src/ /s/\nADD --checksum=sha256:abc --keep-git-dir=true https://x/y.git /y\n');
  t.like(copy, { instruction: 'COPY', chown: '1000:1000', chmod: '0755', link: true, parents: true, exclude: ['*.md'], sources: ['./src/'] });
  t.like(add, { instruction: 'ADD', checksum: 'sha256:abc', keepGitDir: true, sources: ['https://x/y.git'], dest: '/y' });
});

test('convert: an invalid --chmod is PLAN_BAD_CHMOD', (t) => {
  t.is(errorOf(() => graphOf('FROM alpine\nCOPY --chmod=999 a /a\n')).code, 'PLAN_BAD_CHMOD');
});

test('convert: COPY heredoc bodies expand variables but keep quotes when unquoted', (t) => {
  const [op] = copyOps('FROM alpine\nARG NAME=world\nCOPY <<EOF /greeting\necho "hello $NAME" \\n\nEOF\nCOPY <<"RAW" /raw\n$NAME\nRAW\n');
  t.deepEqual(op?.heredocs, [{ name: 'EOF', content: 'echo "hello world" \\n\n' }]);
  const raw = copyOps('FROM alpine\nARG NAME=world\nCOPY <<"RAW" /raw\n$NAME\nRAW\n')[0];
  t.deepEqual(raw?.heredocs, [{ name: 'RAW', content: '$NAME\n' }]);
});

test('convert: RUN <<EOF alone runs the body as the executable /dev/pipes/EOF through the shell', (t) => {
  const plain = execOps(graphOf('FROM alpine\nRUN <<EOF\necho a\necho b\nEOF\n'))[0] as ExecOp;
  t.deepEqual(plain.args, ['/bin/sh', '-c', '/dev/pipes/EOF']);
  t.deepEqual(plain.heredocs, [{ name: 'EOF', content: 'echo a\necho b\n', executable: true }]);
  const script = execOps(graphOf('FROM alpine\nSHELL ["/bin/bash", "-c"]\nRUN <<-"PY"\n#!/usr/bin/env python3\nprint(1)\nPY\n'))[0] as ExecOp;
  t.deepEqual(script.args, ['/bin/bash', '-c', '/dev/pipes/PY']);
  t.deepEqual(script.heredocs, [{ name: 'PY', content: '#!/usr/bin/env python3\nprint(1)\n', executable: true }]);
});

test('convert: RUN with heredocs inside a longer command hands the whole script to the shell', (t) => {
  const op = execOps(graphOf('FROM alpine\nRUN cat <<A 3<<-"B" > /out\na $X\nA\n\tb\n\tB\n'))[0] as ExecOp;
  t.deepEqual(op.args, ['/bin/sh', '-c', 'cat <<A 3<<-"B" > /out\na $X\nA\nb\nB\n']);
  t.deepEqual(op.heredocs, []);
});

test('convert: RUN mounts get defaults and absolute targets when options are omitted', (t) => {
  const op = execOps(graphOf('FROM alpine\nWORKDIR /w\nRUN --mount=type=cache,target=cache --mount=type=secret,id=tok --mount=type=ssh --mount=type=tmpfs,target=/tmp --mount=target=/src x\n'))[0] as ExecOp;
  t.deepEqual(op.mounts, [
    { type: 'cache', target: '/w/cache', id: '/w/cache', readonly: false, sharing: 'shared', mode: 0o755, uid: 0, gid: 0 },
    { type: 'secret', id: 'tok', target: '/run/secrets/tok', required: false, mode: 0o400, uid: 0, gid: 0 },
    { type: 'ssh', id: 'default', target: '/run/buildkit/ssh_agent.0', required: false, mode: 0o600, uid: 0, gid: 0 },
    { type: 'tmpfs', target: '/tmp' },
    { type: 'bind', target: '/src', source: '/', from: { kind: 'context' }, readwrite: false },
  ]);
});

test('convert: RUN --network and --security are carried when given', (t) => {
  const op = execOps(graphOf('FROM alpine\nRUN --network=none --security=insecure x\n'))[0] as ExecOp;
  t.deepEqual([op.network, op.security], ['none', 'insecure']);
});

test('convert: metadata instructions add empty-layer history while RUN/COPY add layers', (t) => {
  const g = graphOf('FROM base\nENV A=1\nRUN x\nCOPY a /a\nLABEL l=1\n', { baseImages: { base: baseConfig({}, [{ created_by: 'base layer' }]) } });
  t.deepEqual(g.image.history, [
    { created_by: 'base layer' },
    { created_by: 'ENV A=1', empty_layer: true },
    { created_by: 'RUN /bin/sh -c x', empty_layer: false },
    { created_by: 'COPY a /a', empty_layer: false },
    { created_by: 'LABEL l=1', empty_layer: true },
  ]);
});

test('convert: ARG makes no vertex and no history entry', (t) => {
  const g = graphOf('FROM alpine\nARG A=1\nARG B\n');
  t.is(g.vertices.length, 1);
  t.deepEqual(g.image.history, []);
});

test('convert: the escape directive applies to expansion and continuations when set to backtick', (t) => {
  const g = graphOf('# escape=`\nFROM alpine\nENV P=C:\\dir `\n    Q=`$x\nRUN echo `\n  hi\n');
  t.deepEqual(g.image.config?.Env, ['P=C:\\dir', 'Q=$x']);
  t.is(g.vertices[2]?.name, '[3/3] RUN echo hi');
});

test('convert: values that are invalid after expansion fail with a PLAN_ code and the line', (t) => {
  const cases: readonly [string, string][] = [
    ['FROM alpine\nARG S="bad signal"\nSTOPSIGNAL $S\n', 'PLAN_BAD_SIGNAL'],
    ['FROM alpine\nARG E\nVOLUME /ok $E\n', 'PLAN_BAD_VOLUME'],
    ['FROM alpine\nARG E\nWORKDIR $E\n', 'PLAN_BAD_WORKDIR'],
    ['FROM alpine\nARG E\nENV ${E}=x\n', 'PLAN_EMPTY_KEY'],
    ['FROM alpine\nARG E\nCOPY a $E\n', 'PLAN_BAD_COPY'],
  ];
  for (const [text, code] of cases) {
    const e = errorOf(() => graphOf(text));
    t.deepEqual([e.code, e.loc?.line], [code, 3], text);
  }
});

test('convert: WORKDIR records the USER in effect for the directory it creates', (t) => {
  const g = graphOf('FROM alpine\nWORKDIR /a\nUSER app\nWORKDIR /b\n');
  const edits = g.vertices.flatMap((v) => (v.op.type === 'meta' && v.op.edit.kind === 'workdir' ? [v.op.edit] : []));
  t.deepEqual(edits, [{ kind: 'workdir', path: '/a', mkdir: true, user: '' }, { kind: 'workdir', path: '/b', mkdir: true, user: 'app' }]);
});
