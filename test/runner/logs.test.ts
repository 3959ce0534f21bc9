import test from 'ava';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogWriter, readLogs, type LogRecord } from '../../src/runner/index.js';
import { tempDir } from '../helpers/tmp.js';

function write(w: NodeJS.WritableStream, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => w.write(data, (err) => (err ? reject(err) : resolve())));
}

test('createLogWriter: one JSON record per line and stream, partial lines and split UTF-8 kept, tee gets raw bytes', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'c-json.log');
  const tee = new PassThrough();
  const teed: Buffer[] = [];
  tee.on('data', (c: Buffer) => teed.push(c));
  const w = createLogWriter(path, { stdout: tee });
  await write(w.stdout, 'one\ntw');
  await write(w.stderr, 'oops\n');
  const euro = Buffer.from('o€\n');
  await write(w.stdout, euro.subarray(0, 2));
  await write(w.stdout, euro.subarray(2));
  await write(w.stdout, 'tail without newline');
  await w.close();
  const records = (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as LogRecord);
  t.deepEqual(records.map((r) => [r.stream, r.log]), [['stdout', 'one\n'], ['stderr', 'oops\n'], ['stdout', 'two€\n'], ['stdout', 'tail without newline']]);
  t.true(records.every((r) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/.test(r.time)));
  t.is(Buffer.concat(teed).toString(), 'one\ntwo€\ntail without newline');
});

test('createLogWriter: a record is in the file once its write is done (logs of a running container see it at once), the file is mode 0640', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'c-json.log');
  const w = createLogWriter(path);
  await write(w.stdout, 'ready\n');
  // Read in the write's callback chain, before any other I/O of this process completes.
  t.regex(readFileSync(path, 'utf8'), /^\{"log":"ready\\n","stream":"stdout","time":"[^"]+"\}\n$/);
  t.is(statSync(path).mode & 0o777, 0o640 & ~process.umask());
  await w.close();
  await w.close();
  await write(w.stderr, 'after close\n');
  t.false(readFileSync(path, 'utf8').includes('after close'), 'a write after close is dropped, no error');
});

test('createLogWriter: a silent container makes no log file (readers take it for an empty log); nothing is written after close', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'c-json.log');
  const w = createLogWriter(path);
  await write(w.stdout, '');
  await w.close();
  t.false(existsSync(path));
  const records: LogRecord[] = [];
  await readLogs(path, (r) => records.push(r));
  t.deepEqual(records, []);
  await write(w.stderr, 'after close\n');
  t.false(existsSync(path), 'a write after close makes no file either');
});

test('createLogWriter: a log file that cannot be opened loses its records, never the run (the tee still gets the output)', async (t) => {
  const dir = await tempDir(t);
  const tee = new PassThrough();
  const teed: Buffer[] = [];
  tee.on('data', (c: Buffer) => teed.push(c));
  const w = createLogWriter(join(dir, 'missing-dir', 'c-json.log'), { stdout: tee });
  await write(w.stdout, 'still shown\n');
  await w.close();
  t.is(Buffer.concat(teed).toString(), 'still shown\n');
});

test('createLogWriter: a line without a newline is cut into 16 KiB records (docker json-file), nothing lost', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'c-json.log');
  const w = createLogWriter(path);
  // 40,000 characters in 1000-character chunks, then a newline.
  for (let i = 0; i < 40; i++) await write(w.stdout, String.fromCharCode(97 + (i % 26)).repeat(1000));
  await write(w.stdout, '\nnext\n');
  await w.close();
  const records = (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as LogRecord);
  t.deepEqual(records.map((r) => r.log.length), [16384, 16384, 40000 - 2 * 16384 + 1, 5]);
  t.is(records.map((r) => r.log).join(''), `${Array.from({ length: 40 }, (_, i) => String.fromCharCode(97 + (i % 26)).repeat(1000)).join('')}\nnext\n`);
});

test('readLogs: all records, the last N with tail, nothing for a missing file', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'c-json.log');
  const w = createLogWriter(path);
  for (let i = 0; i < 5; i++) await write(w.stdout, `line ${i}\n`);
  await w.close();
  const all: string[] = [];
  await readLogs(path, (r) => all.push(r.log));
  t.deepEqual(all, ['line 0\n', 'line 1\n', 'line 2\n', 'line 3\n', 'line 4\n']);
  const last: string[] = [];
  await readLogs(path, (r) => last.push(r.log), { tail: 2 });
  t.deepEqual(last, ['line 3\n', 'line 4\n']);
  const none: string[] = [];
  await readLogs(path, (r) => none.push(r.log), { tail: 0 });
  await readLogs(join(dir, 'missing.log'), (r) => none.push(r.log));
  t.deepEqual(none, []);
});

test('readLogs: follow returns records written later and ends when the writer is done', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'c-json.log');
  const w = createLogWriter(path);
  await write(w.stdout, 'first\n');
  let done = false;
  const seen: string[] = [];
  const following = readLogs(path, (r) => seen.push(r.log), { follow: true, isDone: async () => done, pollMs: 10 });
  await new Promise((r) => setTimeout(r, 50));
  await write(w.stderr, 'second\n');
  await w.close();
  done = true;
  await following;
  t.deepEqual(seen, ['first\n', 'second\n']);
});
