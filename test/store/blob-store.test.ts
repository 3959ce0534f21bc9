import test from 'ava';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { sha256Of, type Digest } from '../../src/core/index.js';
import { openStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

function chunks(total: number, seed: number): Readable {
  let left = total;
  let n = seed;
  return new Readable({
    read() {
      if (left === 0) return void this.push(null);
      const size = Math.min(left, 65536);
      const b = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4) b.writeUInt32LE((n = (n * 1103515245 + 12345) >>> 0), i);
      left -= size;
      this.push(b);
    },
  });
}

async function digestOf(s: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of s) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

test('blob store: put stores content under its digest when no expectation is given', async (t) => {
  const store = await openStore(await tempDir(t));
  const info = await store.blobs.put(chunks(300_000, 1));
  t.is(info.size, 300_000);
  t.is(info.digest as string, await digestOf(chunks(300_000, 1)));
  t.is(await digestOf(await store.blobs.open(info.digest)), info.digest as string);
  t.deepEqual(await readdir(store.paths.tmp), []);
  t.true(await store.blobs.has(info.digest));
  t.deepEqual(await store.blobs.stat(info.digest), info);
});

test('blob store: put rejects and leaves nothing when the digest does not match', async (t) => {
  const store = await openStore(await tempDir(t));
  const wrong = sha256Of('something else');
  await t.throwsAsync(store.blobs.put(chunks(1000, 2), { digest: wrong }), { message: /digest mismatch/ });
  t.deepEqual(await readdir(store.paths.blobs), []);
  t.deepEqual(await readdir(store.paths.tmp), []);
});

test('blob store: put rejects when the size does not match', async (t) => {
  const store = await openStore(await tempDir(t));
  await t.throwsAsync(store.blobs.put(chunks(1000, 2), { size: 999 }), { message: /size mismatch/ });
  t.deepEqual(await readdir(store.paths.blobs), []);
});

test('blob store: put is idempotent and drains the stream when the blob exists', async (t) => {
  const store = await openStore(await tempDir(t));
  const a = await store.blobs.putBytes('hello');
  let read = false;
  const s = Readable.from((function* () { read = true; yield Buffer.from('hello'); })());
  const b = await store.blobs.put(s, { digest: a.digest });
  t.deepEqual(a, b);
  t.true(read);
  t.true(s.readableEnded || s.destroyed);
});

test('blob store: a failing source stream leaves no partial blob when it errors', async (t) => {
  const store = await openStore(await tempDir(t));
  let sent = 0;
  const s = new Readable({
    read() {
      if (sent++ < 3) this.push(Buffer.alloc(1000, 1));
      else this.destroy(new Error('network reset'));
    },
  });
  await t.throwsAsync(store.blobs.put(s), { message: /network reset/ });
  t.deepEqual(await readdir(store.paths.blobs), []);
  t.deepEqual(await readdir(store.paths.tmp), []);
});

test('blob store: a source stream that errors while put checks for an existing blob rejects put, not the process', async (t) => {
  const store = await openStore(await tempDir(t));
  for (const exists of [false, true]) {
    const data = Buffer.from(`early ${exists}`);
    if (exists) await store.blobs.putBytes(data);
    // Errors on the next tick, while put() still awaits its stat of the expected digest.
    const s = new Readable({ read() { /* never pushes */ } });
    process.nextTick(() => s.destroy(new Error('reset before the first byte')));
    await t.throwsAsync(store.blobs.put(s, { digest: sha256Of(data), size: data.length }), { message: /reset before the first byte/ });
  }
  t.deepEqual(await readdir(store.paths.tmp), []);
});

test('blob store: concurrent puts of the same blob from two processes both succeed when racing', async (t) => {
  const root = await tempDir(t);
  const store = await openStore(root);
  const script = `
    import { openStore } from './src/store/index.ts';
    import { Readable } from 'node:stream';
    const s = await openStore(process.argv[1]);
    const buf = Buffer.alloc(4 << 20, 7);
    const r = await s.blobs.put(Readable.from([buf.subarray(0, 1 << 20), buf.subarray(1 << 20)]));
    console.log(r.digest);`;
  const run = (): Promise<string> => new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, root], { cwd: process.cwd() });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(err))));
  });
  const [a, b, c] = await Promise.all([run(), run(), store.blobs.put(Readable.from([Buffer.alloc(4 << 20, 7)]))]);
  const want = sha256Of(Buffer.alloc(4 << 20, 7));
  t.is(a, want);
  t.is(b, want);
  t.is(c.digest, want);
  t.deepEqual(await readdir(store.paths.blobs), [want.slice(7)]);
  t.is(sha256Of(await readFile(store.blobs.pathOf(want as Digest))), want);
});

test('blob store: readJson parses documents and open fails with STORE_BLOB_NOT_FOUND when absent', async (t) => {
  const store = await openStore(await tempDir(t));
  const info = await store.blobs.putBytes(JSON.stringify({ a: 1 }));
  t.deepEqual((await store.blobs.readJson(info.digest)).value, { a: 1 });
  const missing = sha256Of('missing');
  await t.throwsAsync(store.blobs.open(missing), { message: /not in the store/ });
  t.false(await store.blobs.delete(missing));
  t.true(await store.blobs.delete(info.digest));
  t.false(await store.blobs.has(info.digest));
});

test('blob store: list yields only digest-named files when foreign files exist', async (t) => {
  const store = await openStore(await tempDir(t));
  const a = await store.blobs.putBytes('a');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(`${store.paths.blobs}/not-a-digest`, 'x');
  const seen: string[] = [];
  for await (const d of store.blobs.list()) seen.push(d);
  t.deepEqual(seen, [a.digest]);
});
