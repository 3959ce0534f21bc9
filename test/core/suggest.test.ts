import test from 'ava';
import { editDistance, suggest } from '../../src/core/index.js';

test('editDistance: computes Levenshtein distances when given known pairs', (t) => {
  t.is(editDistance('', ''), 0);
  t.is(editDistance('abc', ''), 3);
  t.is(editDistance('', 'abc'), 3);
  t.is(editDistance('kitten', 'sitting'), 3);
  t.is(editDistance('flaw', 'lawn'), 2);
  t.is(editDistance('RUN', 'run'), 0);
});

test('editDistance: is symmetric when arguments are swapped', (t) => {
  for (const [a, b] of [['build', 'biuld'], ['--no-cache', '--no-cach'], ['x', 'yyyy']] as const) {
    t.is(editDistance(a, b), editDistance(b, a));
  }
});

test('suggest: returns the closest candidate when one is near', (t) => {
  const instructions = ['FROM', 'RUN', 'CMD', 'COPY', 'ADD', 'ENV', 'WORKDIR', 'ENTRYPOINT'];
  t.is(suggest('RUNN', instructions), 'RUN');
  t.is(suggest('workdri', instructions), 'WORKDIR');
  t.is(suggest('entrypiont', instructions), 'ENTRYPOINT');
  t.is(suggest('--no-cach', ['--no-cache', '--pull', '--push']), '--no-cache');
  t.is(suggest('biuld', ['build', 'run', 'push']), 'build');
});

test('suggest: returns undefined when nothing is close enough', (t) => {
  t.is(suggest('xyzzy', ['build', 'run', 'push']), undefined);
  t.is(suggest('anything', []), undefined);
  t.is(suggest('completely-different-long-word', ['--tag']), undefined);
});

test('suggest: prefers the first of equally close candidates when distances tie', (t) => {
  t.is(suggest('pul', ['pull', 'push']), 'pull');
});
