import test from 'ava';
import { parseBuildArgs } from '../../src/cli/commands/build.js';
import { isTsbuildError } from '../../src/core/index.js';

test('parseBuildArgs: splits on the first = and keeps the rest of the value when given KEY=VALUE', (t) => {
  const m = parseBuildArgs(['A=1', 'B=x=y', 'C=', 'D= spaced value '], {});
  t.deepEqual([...m], [['A', '1'], ['B', 'x=y'], ['C', ''], ['D', ' spaced value ']]);
});

test('parseBuildArgs: takes the value from the environment when given only KEY', (t) => {
  const m = parseBuildArgs(['HTTP_PROXY', 'EMPTY', 'MISSING'], { HTTP_PROXY: 'http://p:3128', EMPTY: '' });
  t.deepEqual([...m], [['HTTP_PROXY', 'http://p:3128'], ['EMPTY', '']]);
  t.false(m.has('MISSING'));
});

test('parseBuildArgs: lets the last occurrence win when a key repeats', (t) => {
  t.is(parseBuildArgs(['A=1', 'A=2'], {}).get('A'), '2');
});

test('parseBuildArgs: throws CLI_BAD_VALUE with exit 125 when the key is not a valid name', (t) => {
  for (const bad of ['=x', '1A=x', 'A-B=x', 'A B=x', '']) {
    const err = t.throws(() => parseBuildArgs([bad], {}), undefined, bad);
    t.true(isTsbuildError(err, 'CLI_BAD_VALUE'), bad);
    t.is((err as { exitCode?: number }).exitCode, 125);
  }
});
