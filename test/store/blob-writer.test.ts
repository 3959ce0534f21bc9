import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openStore } from '../../src/store/index.js';
import { WRITE_BUFFER, writeHashedFile } from '../../src/store/blob-writer.js';
import { tempDir } from '../helpers/tmp.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test('blob writer: mixed small, buffer-sized and huge chunks keep their order in the file and the digest', async (t) => {
  const dir = await tempDir(t);
  // Tiny chunks fill a buffer partly, then chunks of a buffer or more arrive on a full, partial and empty buffer.
  const sizes = [1, 10, 65536, WRITE_BUFFER, 7, 3 * WRITE_BUFFER + 5, WRITE_BUFFER - 18, 18, WRITE_BUFFER, 2 * WRITE_BUFFER, 3];
  const parts = sizes.map((n) => randomBytes(n));
  const whole = Buffer.concat(parts);
  const seen: number[] = [];
  const r = await writeHashedFile(Readable.from(parts), join(dir, 'blob'), { onProgress: (n) => seen.push(n) });
  t.is(r.size, whole.length);
  t.is(r.digest as string, sha(whole));
  t.true((await readFile(join(dir, 'blob'))).equals(whole));
  t.is(seen.at(-1), whole.length);
});

test('blob writer: an empty stream gives the empty file and the digest of nothing', async (t) => {
  const dir = await tempDir(t);
  const r = await writeHashedFile(Readable.from([]), join(dir, 'blob'));
  t.deepEqual(r, { digest: sha(Buffer.alloc(0)) as typeof r.digest, size: 0 });
  t.is((await readFile(join(dir, 'blob'))).length, 0);
});

test('blob writer: refuses to overwrite an existing file', async (t) => {
  const dir = await tempDir(t);
  await writeHashedFile(Readable.from([Buffer.from('a')]), join(dir, 'blob'));
  await t.throwsAsync(writeHashedFile(Readable.from([Buffer.from('b')]), join(dir, 'blob')), { code: 'EEXIST' });
  t.is(await readFile(join(dir, 'blob'), 'utf8'), 'a');
});

test('blob store: an abort in the middle of a put destroys the source and leaves nothing behind', async (t) => {
  const store = await openStore(await tempDir(t));
  const stop = new AbortController();
  let sent = 0;
  // An endless source: only the abort ends the put.
  const s = new Readable({
    read() {
      sent++;
      if (sent === 40) stop.abort();
      this.push(Buffer.alloc(64 * 1024, sent & 0xff));
    },
  });
  await t.throwsAsync(store.blobs.put(s, {}, { signal: stop.signal }), { code: 'STORE_ABORTED' });
  t.true(s.destroyed);
  t.deepEqual(await readdir(store.paths.blobs), []);
  t.deepEqual(await readdir(store.paths.tmp), []);
});

test('blob store: a put into a store whose tmp directory is gone fails with STORE_IO and destroys the source', async (t) => {
  const store = await openStore(await tempDir(t));
  const { rm } = await import('node:fs/promises');
  await rm(store.paths.tmp, { recursive: true });
  const s = Readable.from([Buffer.from('x')]);
  await t.throwsAsync(store.blobs.put(s), { code: 'STORE_IO' });
  t.true(s.destroyed);
});

test('blob writer: a stream that fails while the file is being opened rejects with its error (no uncaught error event)', async (t) => {
  const dir = await tempDir(t);
  const failing = new Readable({ read() { /* never produces */ } });
  // Fails before the writer starts reading: the open of the file is still in flight.
  process.nextTick(() => failing.destroy(new Error('compressor died')));
  await t.throwsAsync(writeHashedFile(failing, join(dir, 'blob')), { message: 'compressor died' });
});

test('blob writer: hashOnThread hashes on a worker thread with the same bytes and digest (chunks of every size, more than its buffers)', async (t) => {
  const dir = await tempDir(t);
  const sizes = [1, 10, 65536, WRITE_BUFFER, 7, 3 * WRITE_BUFFER + 5, WRITE_BUFFER - 18, 18, WRITE_BUFFER, 2 * WRITE_BUFFER, 3];
  const parts = sizes.map((n) => randomBytes(n));
  const whole = Buffer.concat(parts);
  const seen: number[] = [];
  const r = await writeHashedFile(Readable.from(parts), join(dir, 'blob'), { hashOnThread: true, onProgress: (n) => seen.push(n) });
  t.true(r.hashedOnThread);
  t.is(r.size, whole.length);
  t.is(r.digest as string, sha(whole));
  t.true((await readFile(join(dir, 'blob'))).equals(whole));
  t.is(seen.at(-1), whole.length);
  // Inline (the default) says nothing of a thread.
  t.is((await writeHashedFile(Readable.from([Buffer.from('x')]), join(dir, 'inline'))).hashedOnThread, undefined);
});

test('blob writer: hashOnThread with an empty stream and with a failing stream (the thread is stopped either way)', async (t) => {
  const dir = await tempDir(t);
  const r = await writeHashedFile(Readable.from([]), join(dir, 'empty'), { hashOnThread: true });
  t.deepEqual(r, { digest: sha(Buffer.alloc(0)) as typeof r.digest, size: 0, hashedOnThread: true });
  let n = 0;
  const failing = new Readable({
    read() {
      if (++n === 5) this.destroy(new Error('source died'));
      else this.push(Buffer.alloc(WRITE_BUFFER, n));
    },
  });
  await t.throwsAsync(writeHashedFile(failing, join(dir, 'failed'), { hashOnThread: true }), { message: 'source died' });
});

test('blob store: put with hashOnThread stores the blob under the digest of its bytes', async (t) => {
  const store = await openStore(await tempDir(t));
  const data = randomBytes(5 * WRITE_BUFFER + 123);
  const info = await store.blobs.put(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), {}, { hashOnThread: true });
  t.is(info.digest as string, sha(data));
  t.true((await readFile(store.blobs.pathOf(info.digest))).equals(data));
});

test('blob writer: release gives back every chunk of the stream once it is no longer read (inline and hashed on a thread)', async (t) => {
  const dir = await tempDir(t);
  for (const hashOnThread of [false, true]) {
    const parts = [10, WRITE_BUFFER, 3 * WRITE_BUFFER + 5, 7, WRITE_BUFFER].map((n) => randomBytes(n));
    const released: Buffer[] = [];
    const r = await writeHashedFile(Readable.from(parts), join(dir, `blob-${hashOnThread}`), { hashOnThread, release: (c) => released.push(c) });
    t.is(r.digest as string, sha(Buffer.concat(parts)));
    t.is(released.length, parts.length);
    t.true(parts.every((p) => released.includes(p)));
  }
});
