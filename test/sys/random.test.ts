import test from 'ava';
import { randomBuffer, randomHex } from '../../src/sys/index.js';

test('randomHex/randomBuffer: the asked number of bytes from /dev/urandom, different each call', (t) => {
  t.is(randomBuffer(0).length, 0);
  t.is(randomBuffer(300).length, 300);
  const a = randomHex(32);
  t.regex(a, /^[0-9a-f]{64}$/);
  const seen = new Set(Array.from({ length: 50 }, () => randomHex(8)));
  t.is(seen.size, 50, 'no repeats among 50 draws of 64 bits');
  // Not all zero bytes (a buffer that was never filled).
  t.true(randomBuffer(64).some((b) => b !== 0));
});
