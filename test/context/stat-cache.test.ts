import test from 'ava';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StatCache, statCacheName } from '../../src/context/index.js';
import type { Digest } from '../../src/core/index.js';
import { tempDir } from '../helpers/tmp.js';

const title = (s: string): string => `StatCache: ${s}`;
const fp = (n: number) => ({ size: n, mtimeMs: 1_700_000_000_123.4567 + n, ctimeMs: 7.25, ino: 100 + n, dev: 9 });
const digest = (n: number): Digest => `sha256:${n.toString(16).padStart(64, '0')}` as Digest;

test(title('appends a few changed rows instead of rewriting the file, and a later row wins on load'), async (t) => {
  const file = join(await tempDir(t), 'cache');
  const first = StatCache.load(file);
  for (let i = 0; i < 50; i++) first.record(`/ctx/f${i}`, fp(i), digest(i));
  first.save();
  const before = await readFile(file);
  const second = StatCache.load(file);
  t.is(second.lookup('/ctx/f3', fp(3)), digest(3));
  second.record('/ctx/f3', fp(1003), digest(1003));
  second.save();
  const after = await readFile(file);
  t.true(after.subarray(0, before.length).equals(before), 'appended');
  t.is(after.length - before.length, 8 + 72 + '/ctx/f3'.length, 'one record');
  const third = StatCache.load(file);
  t.is(third.size, 50);
  t.is(third.lookup('/ctx/f3', fp(3)), undefined);
  t.is(third.lookup('/ctx/f3', fp(1003)), digest(1003));
  t.is(third.lookup('/ctx/f4', fp(4)), digest(4));
});

test(title('rewrites the file when it vanished or an append was cut short'), async (t) => {
  const file = join(await tempDir(t), 'cache');
  const a = StatCache.load(file);
  a.record('/ctx/a', fp(1), digest(1));
  a.save();
  const b = StatCache.load(file);
  b.record('/ctx/b', fp(2), digest(2));
  await rm(file);
  b.save();
  t.is(StatCache.load(file).lookup('/ctx/a', fp(1)), digest(1));
  t.is(StatCache.load(file).lookup('/ctx/b', fp(2)), digest(2));
  await writeFile(file, Buffer.concat([await readFile(file), Buffer.from([6, 0, 0, 0]), Buffer.from('/ctx/c')])); // an interrupted append
  const c = StatCache.load(file);
  t.is(c.size, 0, 'a corrupt file is ignored');
  c.record('/ctx/c', fp(3), digest(3));
  c.save();
  t.is(StatCache.load(file).lookup('/ctx/c', fp(3)), digest(3));
});

test(title('keeps paths with newlines and tabs, and any fingerprint numbers exactly'), async (t) => {
  const file = join(await tempDir(t), 'cache');
  const a = StatCache.load(file);
  const odd = { size: 2 ** 40 + 1, mtimeMs: 1_763_900_000_123.456789, ctimeMs: 0.000001, ino: 2 ** 52 + 3, dev: 65024 };
  a.record('/ctx/a\nb\tc', odd, digest(7));
  a.record('/ctx/é', fp(1), digest(8));
  a.save();
  const b = StatCache.load(file);
  t.is(b.lookup('/ctx/a\nb\tc', odd), digest(7));
  t.is(b.lookup('/ctx/a\nb\tc', { ...odd, mtimeMs: odd.mtimeMs + 0.001 }), undefined);
  t.is(b.lookup('/ctx/é', fp(1)), digest(8));
});

test(title('a missing cache file removes the text file of version 3 of the same context'), async (t) => {
  const { existsSync } = await import('node:fs');
  const dir = await tempDir(t);
  const name = statCacheName('/some/context');
  const old = join(dir, name.replace('-v4-', '-v3-').replace(/\.bin$/, '.json'));
  await writeFile(old, 'tsbuild-stat-cache/3\n');
  await writeFile(join(dir, 'context-stat-v3-other.json'), 'x');
  t.is(StatCache.load(join(dir, name)).size, 0);
  t.false(existsSync(old));
  t.true(existsSync(join(dir, 'context-stat-v3-other.json')));
});
