import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { compressGzip, compressGzipFile, decompress, decompressFile, detectCompression, findCompressionTools } from '../../src/layer/index.js';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { testIf } from '../helpers/capability.js';
import { collect } from './helpers.js';

const tools = findCompressionTools(process.env.PATH);

function payload(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i % 251) ^ ((i >> 10) & 0xff);
  return b;
}

function chunks(buf: Buffer, size = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts, { objectMode: false });
}

/** Child processes of this process running `name` (from /proc). */
function childrenNamed(name: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (comm === name && ppid === process.pid) out.push(Number(pid));
    } catch {
      // the process went away
    }
  }
  return out;
}

test('detectCompression: recognises gzip, zstd and plain data when given their first bytes', (t) => {
  t.is(detectCompression(gzipSync('x')), 'gzip');
  t.is(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0])), 'zstd');
  t.is(detectCompression(Buffer.from('ustar')), 'none');
  t.is(detectCompression(Buffer.alloc(0)), 'none');
});

test('compressGzip: zlib output decompresses to the input when no tools are given', async (t) => {
  const data = payload(3 * 1024 * 1024 + 17);
  const gz = await collect(compressGzip(chunks(data)));
  t.is(detectCompression(gz), 'gzip');
  t.true((await collect(decompress(chunks(gz, 1000)))).equals(data));
});

testIf(tools.pigz === undefined ? 'pigz not on PATH' : undefined, 'compressGzip: pigz output is gzip that zlib and gunzip read when pigz is on the PATH', async (t) => {
  const data = payload(5 * 1024 * 1024);
  const gz = await collect(compressGzip(chunks(data), { tools, threads: 2 }));
  t.is(gz[3], 0, 'no name stored');
  t.is(gz.readUInt32LE(4), 0, 'no mtime stored');
  t.true((await collect(decompress(chunks(gz)))).equals(data));
  t.is(createHash('sha256').update(execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 * 1024 * 1024 })).digest('hex'), createHash('sha256').update(data).digest('hex'));
});

testIf(tools.pigz === undefined ? 'pigz not on PATH' : undefined, 'compressGzip: pigz is killed when the consumer stops reading early', async (t) => {
  const data = payload(32 * 1024 * 1024);
  const out = compressGzip(chunks(data), { tools });
  for await (const _ of out) break;
  for (let i = 0; i < 500 && childrenNamed('pigz').length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(childrenNamed('pigz'), []);
});

test('compressGzip: fails with LAYER_COMPRESS_FAILED when the compressor exits non-zero', async (t) => {
  await t.throwsAsync(collect(compressGzip(chunks(payload(1000)), { tools: { pigz: '/bin/false' } })), { code: 'LAYER_COMPRESS_FAILED' } as never);
  await t.throwsAsync(collect(compressGzip(chunks(payload(1000)), { tools: { pigz: '/nonexistent/pigz' } })), { code: 'LAYER_COMPRESS_FAILED' } as never);
});

test('compressGzip: an error of the input surfaces with its own code when packing fails upstream', async (t) => {
  const failing = new Readable({ read() { this.destroy(Object.assign(new Error('disk on fire'), { code: 'EIO' })); } });
  const err = await t.throwsAsync(collect(compressGzip(failing)));
  t.regex(err?.message ?? '', /disk on fire/);
});

test('decompress: uncompressed input passes through unchanged when it has no magic', async (t) => {
  const data = payload(100_000);
  t.true((await collect(decompress(chunks(data, 3)))).equals(data));
  t.deepEqual(await collect(decompress(Readable.from([], { objectMode: false }))), Buffer.alloc(0));
});

testIf(tools.zstd === undefined ? 'zstd not on PATH' : undefined, 'decompress: zstd input is decoded through the zstd binary when it is on the PATH', async (t) => {
  const data = payload(2 * 1024 * 1024);
  const zst = execFileSync(tools.zstd as string, ['-c', '-q'], { input: data, maxBuffer: 64 * 1024 * 1024 });
  t.true((await collect(decompress(chunks(zst), { tools }))).equals(data));
});

test('decompress: zstd input fails with LAYER_ZSTD_UNAVAILABLE when the binary is missing', async (t) => {
  const zst = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4]);
  await t.throwsAsync(collect(decompress(chunks(zst), { tools: {} })), { code: 'LAYER_ZSTD_UNAVAILABLE' } as never);
});

test('decompress: corrupt gzip fails with LAYER_DECOMPRESS_FAILED when the deflate data is damaged', async (t) => {
  const gz = gzipSync(payload(200_000));
  gz.fill(0xff, 100, 400);
  await t.throwsAsync(collect(decompress(chunks(gz, 1000))), { code: 'LAYER_DECOMPRESS_FAILED' } as never);
  const cut = gzipSync(payload(200_000)).subarray(0, 5000);
  await t.throwsAsync(collect(decompress(chunks(cut, 1000))), { code: 'LAYER_DECOMPRESS_FAILED' } as never);
});

testIf(tools.zstd === undefined ? 'zstd not on PATH' : undefined, 'decompress: corrupt zstd fails with LAYER_DECOMPRESS_FAILED and the tool message', async (t) => {
  const zst = execFileSync(tools.zstd as string, ['-c', '-q'], { input: payload(100_000) });
  zst.fill(0x11, 20, 200);
  const err = await t.throwsAsync(collect(decompress(chunks(zst, 100), { tools })), { code: 'LAYER_DECOMPRESS_FAILED' } as never);
  t.regex(err?.message ?? '', /zstd/);
});

test('findCompressionTools: finds nothing when the PATH is empty', (t) => {
  t.deepEqual(findCompressionTools(''), {});
  t.deepEqual(findCompressionTools(undefined), {});
});

test('decompressFile: gzip, zstd and plain files decode when the tools read the file directly', async (t) => {
  const dir = await tempDir(t);
  const data = payload(3 * 1024 * 1024 + 1);
  writeFileSync(join(dir, 'plain'), data);
  writeFileSync(join(dir, 'gz'), gzipSync(data));
  for (const opts of [{ tools }, { tools: {} }]) {
    t.true((await collect(decompressFile(join(dir, 'plain'), opts))).equals(data));
    t.true((await collect(decompressFile(join(dir, 'gz'), opts))).equals(data));
  }
  if (tools.zstd !== undefined) {
    writeFileSync(join(dir, 'zst'), execFileSync(tools.zstd, ['-c', '-q'], { input: data, maxBuffer: 64 * 1024 * 1024 }));
    t.true((await collect(decompressFile(join(dir, 'zst'), { tools }))).equals(data));
  }
});

/** File system requests issued and not yet completed (their callbacks run only in the poll phase). */
function pendingFsRequests(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'FSReqCallback').length;
}

testIf(tools.pigz === undefined ? 'pigz is not installed' : undefined, 'decompress: opens an uncompressed blob file once when pigz could read files', async (t) => {
  const dir = await tempDir(t);
  const data = payload(64 * 1024);
  writeFileSync(join(dir, 'plain'), data);
  for (const open of [() => decompressFile(join(dir, 'plain'), { tools }), () => decompress(createReadStream(join(dir, 'plain')), { tools })]) {
    const before = pendingFsRequests();
    const out = open();
    // The streams' opens start on the next tick; none can complete before this callback runs.
    await new Promise<void>((resolve) => process.nextTick(resolve));
    // Before the fix decompressFile and decompress handed the file back and forth until the stack overflowed (thousands of opens).
    t.true(pendingFsRequests() - before <= 2, `${pendingFsRequests() - before} file system requests in flight`);
    t.true((await collect(out)).equals(data));
  }
});

// Serial: other tests' streams open and close descriptors on the thread pool while this one counts them.
test.serial('decompressFile: closes the file descriptor when the path opens but cannot be read (a directory)', async (t) => {
  const dir = await tempDir(t);
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  for (let i = 0; i < 20; i++) t.throws(() => decompressFile(dir, { tools }), { code: 'LAYER_READ_FAILED' } as never);
  t.is(fds(), before, 'no descriptor leaked');
});

test('decompressFile: fails with LAYER_READ_FAILED or LAYER_DECOMPRESS_FAILED when the file is missing or corrupt', async (t) => {
  const dir = await tempDir(t);
  t.throws(() => decompressFile(join(dir, 'missing'), { tools }), { code: 'LAYER_READ_FAILED' } as never);
  const gz = gzipSync(payload(300_000));
  gz.fill(0xee, 50, 2000);
  writeFileSync(join(dir, 'bad.gz'), gz);
  await t.throwsAsync(collect(decompressFile(join(dir, 'bad.gz'), { tools })), { code: 'LAYER_DECOMPRESS_FAILED' } as never);
  await t.throwsAsync(collect(decompressFile(join(dir, 'bad.gz'), { tools: {} })), { code: 'LAYER_DECOMPRESS_FAILED' } as never);
});

test('compressGzipFile: a file compresses to gzip that decodes to it with and without pigz', async (t) => {
  const dir = await tempDir(t);
  const data = payload(2 * 1024 * 1024 + 3);
  writeFileSync(join(dir, 'blob'), data);
  for (const opts of [{ tools }, { tools: {} }]) {
    const gz = await collect(compressGzipFile(join(dir, 'blob'), opts));
    t.is(detectCompression(gz), 'gzip');
    t.true(gunzipSync(gz).equals(data));
  }
  t.throws(() => compressGzipFile(join(dir, 'missing'), { tools: { pigz: '/usr/bin/pigz' } }), { code: 'LAYER_READ_FAILED' } as never);
});

testIf(tools.pigz === undefined ? 'pigz not on PATH' : undefined, 'decompress: a file stream decodes to the input when pigz reads the file directly or the stream was already read from', async (t) => {
  const dir = await tempDir(t);
  const data = payload(3 * 1024 * 1024 + 17);
  const file = join(dir, 'blob.gz');
  writeFileSync(file, gzipSync(data));
  // Untouched: pigz gets the file itself.
  t.true((await collect(decompress(createReadStream(file, { highWaterMark: 1 << 20 }), { tools }))).equals(data));
  // A stream over part of the file must not be replaced by the whole file (from byte 10 it has no gzip magic).
  t.true((await collect(decompress(createReadStream(file, { start: 10 }), { tools }))).equals(readFileSync(file).subarray(10)));
  // A stream whose first chunk was already taken goes through Node with the chunk put back.
  const rs = createReadStream(file, { highWaterMark: 64 * 1024 });
  const it = rs[Symbol.asyncIterator]();
  const first = (await it.next()).value as Buffer;
  const rest = Readable.from((async function* () {
    yield first;
    for (;;) {
      const r = await it.next();
      if (r.done === true) return;
      yield r.value as Buffer;
    }
  })(), { objectMode: false });
  t.true((await collect(decompress(rest, { tools }))).equals(data));
});

testIf(tools.pigz === undefined ? 'pigz not on PATH' : undefined, 'decompress: pigz output arrives complete and in order when the consumer is slow', async (t) => {
  const data = payload(20 * 1024 * 1024);
  const out = decompress(chunks(gzipSync(data, { level: 1 })), { tools });
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of out) {
    parts.push(chunk as Buffer);
    if (++n % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 1)); // let pigz run ahead
  }
  t.true(Buffer.concat(parts).equals(data));
});
