import test from 'ava';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readLogs, type LogRecord } from '../../src/runner/index.js';
import { tempDir } from '../helpers/tmp.js';

const rec = (log: string, time: string): string => `${JSON.stringify({ log, stream: 'stdout', time })}\n`;
const ns = (iso: string, extra = 0n): bigint => BigInt(Date.parse(iso)) * 1_000_000n + extra;

async function collect(path: string, options: Parameters<typeof readLogs>[2]): Promise<string> {
  const out: LogRecord[] = [];
  await readLogs(path, (r) => out.push(r), options);
  return out.map((r) => r.log).join('');
}

test('readLogs: sinceNs and untilNs keep records by their nanosecond time, after tail, when given', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'log.json');
  await writeFile(path, rec('a\n', '2024-01-02T10:00:00.000000100Z') + rec('b\n', '2024-01-02T10:00:00.000000200Z') + rec('c\n', '2024-01-02T10:00:01.5Z'));
  t.is(await collect(path, { sinceNs: ns('2024-01-02T10:00:00Z', 200n) }), 'b\nc\n');
  t.is(await collect(path, { untilNs: ns('2024-01-02T10:00:00Z', 199n) }), 'a\n');
  t.is(await collect(path, { sinceNs: ns('2024-01-02T10:00:00Z', 101n), untilNs: ns('2024-01-02T10:00:01.5Z') }), 'b\nc\n');
  t.is(await collect(path, { tail: 1, untilNs: ns('2024-01-02T10:00:01Z') }), '');
});

test('readLogs: startOffset skips earlier records and follow ends once untilNs has passed when the writer keeps running', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'log.json');
  await writeFile(path, rec('old\n', '2024-01-02T10:00:00Z'));
  const offset = (await stat(path)).size;
  await writeFile(path, rec('new\n', '2024-01-02T10:00:02Z'), { flag: 'a' });
  t.is(await collect(path, { startOffset: offset }), 'new\n');
  let clock = Date.parse('2024-01-02T10:00:03Z');
  // isDone never says done: only the clock passing untilNs ends the follow.
  const text = await collect(path, { follow: true, isDone: async () => false, pollMs: 1, untilNs: ns('2024-01-02T10:00:04Z'), now: () => (clock += 500) });
  t.is(text, 'old\nnew\n');
});
