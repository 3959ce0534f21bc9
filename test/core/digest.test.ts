import test from 'ava';
import { createHash } from 'node:crypto';
import { digestHex, isDigest, isTsbuildError, parseDigest, sha256Of, type Digest } from '../../src/core/index.js';

/** Widens a Digest to a plain string for comparisons. */
const str = (d: Digest): string => d;

const EMPTY = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

test('sha256Of: returns the well-known digest when hashing the empty string', (t) => {
  t.is(str(sha256Of('')), EMPTY);
  t.is(str(sha256Of(new Uint8Array())), EMPTY);
});

test('sha256Of: hashes strings as UTF-8 when given non-ASCII text', (t) => {
  const expected = `sha256:${createHash('sha256').update(Buffer.from('grüße 😀', 'utf8')).digest('hex')}`;
  t.is(str(sha256Of('grüße 😀')), expected);
  t.is(str(sha256Of(Buffer.from('grüße 😀', 'utf8'))), expected);
});

test('isDigest: accepts only sha256 with 64 lowercase hex digits when checking strings', (t) => {
  t.true(isDigest(EMPTY));
  t.false(isDigest(EMPTY.toUpperCase()));
  t.false(isDigest(EMPTY.replace('sha256:', 'sha512:')));
  t.false(isDigest(EMPTY.slice(0, -1)));
  t.false(isDigest(`${EMPTY}0`));
  t.false(isDigest(`${EMPTY}\n`));
  t.false(isDigest(EMPTY.slice('sha256:'.length)));
  t.false(isDigest(42));
  t.false(isDigest(undefined));
});

test('parseDigest: returns the digest unchanged when it is well-formed', (t) => {
  t.is(str(parseDigest(EMPTY)), EMPTY);
});

test('parseDigest: throws CORE_BAD_DIGEST with a truncated value when the input is malformed', (t) => {
  const long = `sha256:${'z'.repeat(500)}`;
  const err = t.throws(() => parseDigest(long));
  t.true(isTsbuildError(err, 'CORE_BAD_DIGEST'));
  t.true((err?.message.length ?? 0) < 200, 'message should not echo 500 characters');
  t.true(isTsbuildError(t.throws(() => parseDigest('sha256:../../etc/passwd')), 'CORE_BAD_DIGEST'));
});

test('digestHex: returns the 64 hex digits when given a digest', (t) => {
  const hex = digestHex(sha256Of('x'));
  t.regex(hex, /^[0-9a-f]{64}$/);
  t.is(`sha256:${hex}`, str(sha256Of('x')));
});
