import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { PipeWriter } from '../../src/sandbox/launcher-zygote.js';
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
