import test from 'ava';
import { DEFAULT_PATH, mergeEnv, parseSignal, resolveProcess, SIGNALS } from '../../src/runner/index.js';

const image = { Entrypoint: ['/entry.sh'], Cmd: ['serve', '--port', '80'], Env: ['PATH=/opt/bin:/bin', 'A=1'], WorkingDir: '/app', User: 'www', StopSignal: 'SIGQUIT' };

test('resolveProcess: uses ENTRYPOINT, CMD, Env, WorkingDir, User and StopSignal when no flag overrides them', (t) => {
  t.deepEqual(resolveProcess(image, { command: [], env: [] }), {
    args: ['/entry.sh', 'serve', '--port', '80'], entrypoint: ['/entry.sh'], cmd: ['serve', '--port', '80'],
    env: ['PATH=/opt/bin:/bin', 'A=1'], cwd: '/app', userText: 'www', stopSignal: 'SIGQUIT',
  });
});

test('resolveProcess: a command replaces CMD and keeps ENTRYPOINT when given after the image', (t) => {
  t.deepEqual(resolveProcess(image, { command: ['sh'], env: [] }).args, ['/entry.sh', 'sh']);
});

test('resolveProcess: --entrypoint replaces ENTRYPOINT and drops the image CMD when set', (t) => {
  t.deepEqual(resolveProcess(image, { entrypoint: 'echo', command: [], env: [] }).args, ['echo']);
  t.deepEqual(resolveProcess(image, { entrypoint: '', command: ['ls', '/'], env: [] }).args, ['ls', '/']);
});

test('resolveProcess: flags override env, workdir, user and stop signal when given', (t) => {
  const p = resolveProcess(image, { command: [], env: ['A=2', 'B=3'], workdir: '/tmp', user: '1000:1000', stopSignal: 'SIGINT' });
  t.deepEqual(p.env, ['PATH=/opt/bin:/bin', 'A=2', 'B=3']);
  t.is(p.cwd, '/tmp');
  t.is(p.userText, '1000:1000');
  t.is(p.stopSignal, 'SIGINT');
});

test('resolveProcess: docker defaults (PATH, /, root, SIGTERM) when the image sets nothing', (t) => {
  const p = resolveProcess({ Cmd: ['sh'] }, { command: [], env: [] });
  t.deepEqual(p.env, [DEFAULT_PATH]);
  t.is(p.cwd, '/');
  t.is(p.userText, 'root');
  t.is(p.stopSignal, 'SIGTERM');
});

test('resolveProcess: RUN_NO_COMMAND when neither the image nor the flags give a command', (t) => {
  t.throws(() => resolveProcess({}, { command: [], env: [] }), { message: /no command specified/ });
  t.throws(() => resolveProcess(undefined, { entrypoint: '', command: [], env: [] }), { message: /no command specified/ });
});

test('mergeEnv: replaces keys in place and appends new ones when overriding', (t) => {
  t.deepEqual(mergeEnv(['A=1', 'B=2'], ['B=3', 'C=4', 'A=']), ['A=', 'B=3', 'C=4']);
});

test('parseSignal: accepts names with or without SIG, any case, and numbers when valid', (t) => {
  t.deepEqual(parseSignal('TERM', SIGNALS), { name: 'SIGTERM', number: 15 });
  t.deepEqual(parseSignal('sigkill', SIGNALS), { name: 'SIGKILL', number: 9 });
  t.is(parseSignal('10', SIGNALS).number, 10);
  t.throws(() => parseSignal('NOPE', SIGNALS), { message: /invalid signal/ });
  t.throws(() => parseSignal('0', SIGNALS), { message: /invalid signal/ });
});
