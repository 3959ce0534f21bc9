import test from 'ava';
import { isTsbuildError, notSupportedYet, TsbuildError } from '../../src/core/index.js';

test('TsbuildError: carries code, loc, hint and cause when constructed with options', (t) => {
  const cause = new Error('ENOENT');
  const loc = { file: 'Dockerfile', line: 3 };
  const err = new TsbuildError('DF_NOT_FOUND', 'cannot find it', { loc, hint: 'pass -f', cause, exitCode: 125 });
  t.true(err instanceof Error);
  t.is(err.name, 'TsbuildError');
  t.is(err.code, 'DF_NOT_FOUND');
  t.is(err.message, 'cannot find it');
  t.deepEqual(err.loc, loc);
  t.is(err.hint, 'pass -f');
  t.is(err.cause, cause);
  t.is(err.exitCode, 125);
  t.truthy(err.stack);
});

test('TsbuildError: defaults exit code 1 and no loc, hint or cause when given no options', (t) => {
  const err = new TsbuildError('CLI_X', 'boom');
  t.is(err.exitCode, 1);
  t.is(err.loc, undefined);
  t.is(err.hint, undefined);
  t.false('cause' in err && err.cause !== undefined);
});

test('isTsbuildError: matches by type and optionally by code when given any value', (t) => {
  const err = new TsbuildError('STORE_CORRUPT', 'bad');
  t.true(isTsbuildError(err));
  t.true(isTsbuildError(err, 'STORE_CORRUPT'));
  t.false(isTsbuildError(err, 'STORE_MISSING'));
  t.false(isTsbuildError(new Error('plain')));
  t.false(isTsbuildError({ code: 'STORE_CORRUPT', message: 'duck' }));
  t.false(isTsbuildError(undefined));
});

test('notSupportedYet: builds a CLI_NOT_SUPPORTED error naming the feature when called', (t) => {
  const err = notSupportedYet('--push', 'arrives with the registry client');
  t.true(isTsbuildError(err, 'CLI_NOT_SUPPORTED'));
  t.is(err.message, '--push is not supported yet');
  t.is(err.hint, 'arrives with the registry client');
  t.is(notSupportedYet('x').hint, undefined);
});
