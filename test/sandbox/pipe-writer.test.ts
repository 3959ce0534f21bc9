import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { endAtOnce, forwardStream } from '../../src/sandbox/launcher-process.js';
import { PipeWriter } from '../../src/sys/index.js';
import { tempDir } from '../helpers/tmp.js';

/** Both ends of a fresh pipe (a fifo), non-blocking like the zygote's. */
async function pipeEnds(t: ExecutionContext): Promise<{ read: number; write: number }> {
  const fifo = join(await tempDir(t), 'fifo');
  execFileSync('mkfifo', [fifo]);
  const read = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const write = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  return { read, write };
}

/** Everything the read end gets until EOF. */
function drain(fd: number): Promise<Buffer> {
  const s = new Socket({ fd, readable: true, writable: false });
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return once(s, 'end').then(() => Buffer.concat(chunks));
}

test('PipeWriter: what fits the pipe is written at once and the fd closed by end()', async (t) => {
  const { read, write } = await pipeEnds(t);
  const w = new PipeWriter(write);
  const closed = once(w, 'close');
  const got = drain(read);
  w.write('spec bytes ');
  w.end('g');
  await closed;
  t.is((await got).toString(), 'spec bytes g', 'EOF: the write end was closed');
});

test('PipeWriter: more than the pipe takes at once (4 MiB) arrives whole and in order', async (t) => {
  const { read, write } = await pipeEnds(t);
  const w = new PipeWriter(write);
  const closed = once(w, 'close');
  const data = [randomBytes(3 * 1024 * 1024), randomBytes(1024 * 1024)] as const;
  w.write(data[0]);
  w.end(data[1]);
  // Read only after the writes hit a full pipe.
  const got = await drain(read);
  await closed;
  t.true(got.equals(Buffer.concat(data)));
});

test('PipeWriter: a pipe whose reader is gone fails with EPIPE as an error event', async (t) => {
  const { read, write } = await pipeEnds(t);
  closeSync(read);
  const w = new PipeWriter(write);
  const failed = once(w, 'error');
  const closed = new Promise((resolve) => w.once('close', resolve));
  w.end('g');
  const [err] = (await failed) as [NodeJS.ErrnoException];
  t.is(err.code, 'EPIPE');
  await closed;
});

/** What one non-blocking read of `fd` returns now: the bytes, '' at EOF, undefined when the writer is still open (EAGAIN). */
function readNow(fd: number): string | undefined {
  const buf = Buffer.alloc(4096);
  try {
    return buf.subarray(0, readSync(fd, buf)).toString();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return undefined;
    throw err;
  }
}

// The launcher reads its spec to EOF: our end (a libuv pipe, as a spawned launcher's) must be closed by the
// call, not some event-loop turns later by the socket's shutdown.
test('endAtOnce: a pipe that took everything is closed before the call returns', async (t) => {
  const { read, write } = await pipeEnds(t);
  t.teardown(() => closeSync(read));
  const w = new Socket({ fd: write, readable: false, writable: true });
  w.on('error', () => undefined);
  endAtOnce(w, 'flags\0' + '1\0');
  t.is(readNow(read), 'flags\x001\x00');
  t.is(readNow(read), '', 'EOF with no turn of the event loop');
});

test('endAtOnce: what the pipe does not take at once still arrives whole, then EOF', async (t) => {
  const { read, write } = await pipeEnds(t);
  const w = new Socket({ fd: write, readable: false, writable: true });
  const data = randomBytes(1024 * 1024);
  const got = drain(read);
  endAtOnce(w, data);
  t.false(w.destroyed, 'left to end() while the rest is queued');
  t.true((await got).equals(data));
});

test('forwardStream: every chunk in order through a slow destination (backpressure), then its end', async (t) => {
  const chunks = Array.from({ length: 50 }, (_, i) => Buffer.from(`line ${i}\n`));
  const source = Readable.from(chunks, { objectMode: false });
  const got: Buffer[] = [];
  let writing = 0;
  let maxWriting = 0;
  const dest = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _enc, cb) {
      writing++;
      maxWriting = Math.max(maxWriting, writing);
      setTimeout(() => {
        got.push(chunk);
        writing--;
        cb();
      }, 1);
    },
  });
  let paused = 0;
  source.on('pause', () => paused++);
  forwardStream(source, dest);
  await once(dest, 'finish');
  t.is(Buffer.concat(got).toString(), Buffer.concat(chunks).toString());
  t.is(maxWriting, 1);
  t.true(paused > 0, 'the source waited for the destination');
});
