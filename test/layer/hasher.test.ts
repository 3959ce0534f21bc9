import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { StreamHasher } from '../../src/layer/index.js';

const MiB = 1024 * 1024;

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Feeds `data` to a new hasher in pieces of the sizes `sizes` (cycled) and returns its digest. */
async function hashInPieces(data: Buffer, sizes: readonly number[]): Promise<string> {
  const hasher = new StreamHasher();
  try {
    for (let at = 0, i = 0; at < data.length; i++) {
      const n = sizes[i % sizes.length] as number;
      await hasher.update(data.subarray(at, at + n));
      at += n;
    }
    return await hasher.digest();
  } finally {
    hasher.dispose();
  }
}

test('a stream past the worker threshold hashes right whatever its chunk sizes (slots filled across chunks, a partial last slot)', async (t) => {
  // 40 MiB + 12345 bytes: past the 16 MiB switch to the worker, several times round its 8 MiB ring,
  // chunks that straddle slot boundaries, and a last slot that is only partly filled.
  const data = randomBytes(40 * MiB + 12345);
  const expected = sha256(data);
  t.is(await hashInPieces(data, [256 * 1024]), expected);
  t.is(await hashInPieces(data, [300 * 1024 + 1, 7, 2 * MiB + 3]), expected);
  t.is(await hashInPieces(data, [3 * MiB]), expected);
});

test('a stream that ends exactly on a slot boundary, and a small one hashed inline', async (t) => {
  const big = randomBytes(20 * MiB);
  t.is(await hashInPieces(big, [MiB]), sha256(big));
  const small = randomBytes(100_000);
  t.is(await hashInPieces(small, [4096]), sha256(small));
  t.is(await hashInPieces(Buffer.alloc(0), [1]), sha256(Buffer.alloc(0)));
});

test('workerAfter moves the hashing to the worker sooner (less held), and the digest is the same', async (t) => {
  const data = randomBytes(3 * MiB);
  const early = new StreamHasher({ workerAfter: 2 * MiB });
  const late = new StreamHasher();
  try {
    for (let at = 0; at < data.length; at += 256 * 1024) {
      await early.update(data.subarray(at, at + 256 * 1024));
      await late.update(data.subarray(at, at + 256 * 1024));
    }
    t.true(early.threaded, 'past 2 MiB the early one hashes on its worker');
    t.false(late.threaded, 'the default one still holds 3 MiB');
    t.is(String(await early.digest()), sha256(data));
    t.is(String(await late.digest()), sha256(data));
  } finally {
    early.dispose();
    late.dispose();
  }
});
