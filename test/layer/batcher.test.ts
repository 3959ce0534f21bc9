import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Batcher } from '../../src/layer/batcher.js';

const MiB = 1024 * 1024;

/** Puts `data` into `out` in pieces and returns the chunks it made ready, in order. */
function fill(out: Batcher, data: Buffer): Buffer[] {
  for (let at = 0; at < data.length; at += 1024) out.put(data.subarray(at, Math.min(at + 1024, data.length)));
  return out.ready.splice(0);
}

test('batcher: a recycled chunk is filled again by a later flush (once, however often it is given back), the bytes stay in order', (t) => {
  const out = new Batcher();
  const a = randomBytes(MiB + 10);
  const first = fill(out, a);
  t.is(first.length, 1);
  const chunk = first[0] as Buffer;
  t.true(chunk.equals(a.subarray(0, MiB)));
  out.recycle(chunk);
  out.recycle(chunk);
  const b = randomBytes(3 * MiB);
  const next = fill(out, b);
  t.is(next.length, 3);
  t.is(next.filter((c) => c.buffer === chunk.buffer).length, 1);
  t.is(new Set(next.map((c) => c.buffer)).size, 3);
  out.flush(0);
  t.true(Buffer.concat([...next, ...out.ready.splice(0)]).equals(Buffer.concat([a.subarray(MiB), b])));
});

test('batcher: copies, parts of chunks and chunks never handed out are not taken back', (t) => {
  const out = new Batcher();
  const chunk = fill(out, randomBytes(MiB + 1))[0] as Buffer;
  out.recycle(Buffer.from(chunk));
  out.recycle(chunk.subarray(10));
  out.recycle(Buffer.allocUnsafeSlow(MiB));
  const next = fill(out, randomBytes(2 * MiB));
  t.false(next.some((c) => c.buffer === chunk.buffer));
});
