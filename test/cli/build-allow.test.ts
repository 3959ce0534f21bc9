import test from 'ava';
import { parseAllow } from '../../src/cli/commands/build.js';
import { isTsbuildError } from '../../src/core/index.js';

test('parseAllow: repeated and comma-separated entitlements, once each, when given', (t) => {
  t.deepEqual(parseAllow(['security.insecure', 'network.host,security.insecure']), ['security.insecure', 'network.host']);
  t.deepEqual(parseAllow([]), []);
});

test('parseAllow: an unknown entitlement is CLI_BAD_VALUE (exit 125) naming the known ones', (t) => {
  const err: unknown = t.throws(() => parseAllow(['device']));
  if (!isTsbuildError(err, 'CLI_BAD_VALUE')) return t.fail(String(err));
  t.regex(err.message, /network\.host and security\.insecure/);
  t.is(err.exitCode, 125);
});
