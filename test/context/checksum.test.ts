import test from 'ava';
import { createReadStream } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  StatCache,
  checksumSources,
  compileIgnore,
  selectSources,
  statCacheName,
  type FileReader,
} from '../../src/context/index.js';
import { tempDir } from '../helpers/tmp.js';

/** A reader that records every path it reads, delegating to a plain read stream. */
function countingReader(): { reader: FileReader; reads: string[] } {
  const reads: string[] = [];
  return { reads, reader: (p) => { reads.push(p); return createReadStream(p); } };
}

/** Waits until fresh writes are older than the stat cache's racy window. */
const settle = (): Promise<void> => sleep(120);

async function makeContext(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const ctx = await tempDir(t);
  await mkdir(join(ctx, 'src/lib'), { recursive: true });
  await writeFile(join(ctx, 'src/app.js'), 'console.log(1)\n');
  await writeFile(join(ctx, 'src/lib/util.js'), 'export {}\n');
  await writeFile(join(ctx, 'secret.key'), 'do not read me\n');
  await symlink('app.js', join(ctx, 'src/link'));
  return ctx;
}

async function digestOf(ctx: string, sources: string[] = ['.'], cache?: StatCache): Promise<string> {
  return (await checksumSources(selectSources(ctx, sources), { statCache: cache })).digest;
}

test('checksum: the digest ignores mtimes but changes when content, mode, owner or a link target changes', async (t) => {
  const ctx = await makeContext(t);
  const base = await digestOf(ctx);
  t.is(await digestOf(ctx), base, 'deterministic');
  await utimes(join(ctx, 'src/app.js'), 1000, 1000);
  await utimes(join(ctx, 'src/lib'), 2000, 2000);
  t.is(await digestOf(ctx), base, 'mtime does not count');

  await writeFile(join(ctx, 'src/app.js'), 'console.log(2)\n');
  const content = await digestOf(ctx);
  t.not(content, base, 'content');
  await chmod(join(ctx, 'src/app.js'), 0o755);
  const mode = await digestOf(ctx);
  t.not(mode, content, 'file mode');
  await chmod(join(ctx, 'src/lib'), 0o700);
  const dirMode = await digestOf(ctx);
  t.not(dirMode, mode, 'directory mode');
  await chown(join(ctx, 'src/lib/util.js'), 1234, 5678);
  const owner = await digestOf(ctx);
  t.not(owner, dirMode, 'ownership');
  await unlink(join(ctx, 'src/link'));
  await symlink('lib', join(ctx, 'src/link'));
  t.not(await digestOf(ctx), owner, 'symlink target');
});

test('checksum: per-entry digests are sha256 of the content for files, of the target for symlinks and a record for dirs', async (t) => {
  const ctx = await makeContext(t);
  const sums = await checksumSources(selectSources(ctx, ['src']));
  const byRel = new Map(sums.sources[0]?.matches[0]?.entries.map((e) => [e.rel, e]));
  const { createHash } = await import('node:crypto');
  const sha = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
  const content = (rel: string): string | undefined => byRel.get(rel)?.digest;
  t.is(content('app.js'), sha('console.log(1)\n'));
  t.is(content('link'), sha('app.js'));
  t.regex(content('lib') ?? '', /^sha256:[0-9a-f]{64}$/);
  t.is(byRel.get('lib')?.type, 'dir');
  t.deepEqual([...byRel.keys()], ['', 'app.js', 'lib', 'lib/util.js', 'link']);
  await chmod(join(ctx, 'src/lib'), 0o711);
  const again = await checksumSources(selectSources(ctx, ['src']));
  const lib = again.sources[0]?.matches[0]?.entries.find((e) => e.rel === 'lib');
  t.not(lib?.digest, content('lib'), 'a directory record covers its mode');
});

test('checksum: the combined digest depends on which files are selected', async (t) => {
  const ctx = await makeContext(t);
  const all = await digestOf(ctx, ['src']);
  t.not(await digestOf(ctx, ['src/lib']), all);
  t.not(await digestOf(ctx, ['src/*.js']), all);
  await writeFile(join(ctx, 'secret.key'), 'changed\n');
  t.is(await digestOf(ctx, ['src']), all, 'a file outside the selection does not count');
});

test('checksum: excluded files are never read when .dockerignore excludes them', async (t) => {
  const ctx = await makeContext(t);
  const { reader, reads } = countingReader();
  const sel = selectSources(ctx, ['.'], { ignore: compileIgnore(['*.key']) });
  const sums = await checksumSources(sel, { readFile: reader });
  t.is(sums.stats.filesRead, 2);
  t.deepEqual(reads.map((p) => p.slice(sel.contextDir.length + 1)).sort(), ['src/app.js', 'src/lib/util.js']);
});

test('checksum: an unchanged file is not re-read when the stat cache is loaded from disk on the next build', async (t) => {
  const ctx = await makeContext(t);
  const store = await tempDir(t);
  const file = join(store, 'cache', statCacheName(ctx));
  await settle();
  const first = countingReader();
  const cold = await checksumSources(selectSources(ctx, ['.']), { statCache: StatCache.load(file), readFile: first.reader });
  t.is(first.reads.length, 3);
  const cache1 = StatCache.load(file);
  t.is(cache1.size, 0, 'nothing persisted before save');
  const c = StatCache.load(file);
  await checksumSources(selectSources(ctx, ['.']), { statCache: c });
  c.save();

  const second = countingReader();
  const warm = await checksumSources(selectSources(ctx, ['.']), { statCache: StatCache.load(file), readFile: second.reader });
  t.deepEqual(second.reads, []);
  t.is(warm.stats.cacheHits, 3);
  t.is(warm.digest, cold.digest);
  t.deepEqual(await readdir(join(store, 'cache')), [statCacheName(ctx)], 'no temporary files left');
});

test('checksum: the cached digest is used when bytes change but size, mtime and ctime do not, and a ctime change invalidates it', async (t) => {
  const ctx = await makeContext(t);
  const store = await tempDir(t);
  const file = join(store, 'stat.json');
  const target = join(ctx, 'src/app.js');
  await utimes(target, 1_700_000_000, 1_700_000_000);
  await settle();
  const cache = StatCache.load(file);
  const before = await checksumSources(selectSources(ctx, ['src/app.js']), { statCache: cache });
  cache.save();

  // Same size, same mtime: only the stat cache can explain an unchanged digest.
  const st = await stat(target);
  await writeFile(target, 'console.log(9)\n');
  await utimes(target, 1_700_000_000, 1_700_000_000);
  const after = await stat(target);
  t.is(after.size, st.size);
  t.is(after.mtimeMs, st.mtimeMs);
  t.not(after.ctimeMs, st.ctimeMs, 'writing and utimes changed the ctime');
  // Make the cache's row carry the new ctime, as if the file had been hashed after the write.
  // One segment after the header line: u32 count, u32 path bytes, then per record size, mtimeMs,
  // ctimeMs, ino, dev as float64 LE and the digest (72 bytes), then the paths joined by NUL.
  const data = await readFile(file);
  const head = data.indexOf(10) + 1;
  const count = data.readUInt32LE(head);
  const paths = data.subarray(head + 8 + count * 72).toString('utf8').split('\0');
  const at = head + 8 + paths.indexOf(target) * 72;
  t.deepEqual([data.readDoubleLE(at), data.readDoubleLE(at + 8), data.readDoubleLE(at + 16)], [st.size, st.mtimeMs, st.ctimeMs]);
  const withCtime = (ctime: number): Buffer => {
    const copy = Buffer.from(data);
    copy.writeDoubleLE(ctime, at + 16);
    return copy;
  };
  await writeFile(file, withCtime(after.ctimeMs));
  const stale = await checksumSources(selectSources(ctx, ['src/app.js']), { statCache: StatCache.load(file) });
  t.is(stale.digest, before.digest, 'cached digest used: the file was not re-read');
  t.is(stale.stats.filesRead, 0);

  // The real ctime differs from the one recorded at hashing time: the file is read again.
  await writeFile(file, withCtime(st.ctimeMs));
  const fresh = await checksumSources(selectSources(ctx, ['src/app.js']), { statCache: StatCache.load(file) });
  t.is(fresh.stats.filesRead, 1);
  t.not(fresh.digest, before.digest);
});

test('checksum: a file changed within the racy window is hashed but not cached when its times are not older than the read', async (t) => {
  const ctx = await makeContext(t);
  await settle();
  // A modification time at (or after) the moment of reading: a later write in the same clock tick
  // could keep the fingerprint, so the digest must not be cached. (A future mtime keeps the test
  // independent of machine speed.)
  const soon = Date.now() / 1000 + 3600;
  await utimes(join(ctx, 'src/app.js'), soon, soon);
  const cache = StatCache.inMemory();
  await checksumSources(selectSources(ctx, ['src']), { statCache: cache });
  const again = await checksumSources(selectSources(ctx, ['src']), { statCache: cache });
  t.is(again.stats.filesRead, 1, 'only the racy file is read again');
  t.is(again.stats.cacheHits, 1);
});

test('checksum: a corrupt stat cache file is ignored and rebuilt when loaded', async (t) => {
  const ctx = await makeContext(t);
  const store = await tempDir(t);
  const file = join(store, 'stat.json');
  await settle();
  const row = `${join(ctx, 'src/app.js')}\t1 2 3 4 5 ${'a'.repeat(64)}\n`;
  for (const junk of ['{not json', 'tsbuild-stat-cache/1\n', `tsbuild-stat-cache/2\n${row}garbage\n`, `tsbuild-stat-cache/2\n${row.slice(0, -5)}`, 'tsbuild-stat-cache/4\n\x05\0', `tsbuild-stat-cache/4\n\x03\0\0\0abc${'x'.repeat(71)}`, '\0\0\0', '']) {
    await writeFile(file, junk);
    const cache = StatCache.load(file);
    t.is(cache.size, 0, junk);
    const sums = await checksumSources(selectSources(ctx, ['src']), { statCache: cache });
    t.is(sums.stats.filesRead, 2);
    cache.save();
    t.is(StatCache.load(file).size, 2, `rebuilt after ${junk}`);
  }
});

test('checksum: files are hashed with bounded parallelism when many are selected', async (t) => {
  const ctx = await tempDir(t);
  for (let i = 0; i < 50; i++) await writeFile(join(ctx, `f${i}`), `file ${i}\n`);
  let active = 0;
  let peak = 0;
  const reader: FileReader = async function* (p) {
    active++;
    peak = Math.max(peak, active);
    try {
      await sleep(2);
      yield await readFile(p);
    } finally {
      active--;
    }
  };
  const sums = await checksumSources(selectSources(ctx, ['.']), { readFile: reader, concurrency: 3 });
  t.is(sums.stats.filesRead, 50);
  t.is(peak, 3);
  t.is(sums.digest, (await checksumSources(selectSources(ctx, ['.']), { concurrency: 1 })).digest);
});

test('checksum: large files hashed on worker threads give the sha256 of their bytes when they add up to over 32 MiB', async (t) => {
  const ctx = await tempDir(t);
  const { createHash, randomBytes } = await import('node:crypto');
  const chunk = randomBytes(1 << 20);
  const want = createHash('sha256');
  const fh = await (await import('node:fs/promises')).open(join(ctx, 'big.bin'), 'w');
  for (let i = 0; i < 34; i++) {
    await fh.write(chunk);
    want.update(chunk);
  }
  await fh.close();
  await writeFile(join(ctx, 'mid.bin'), chunk);
  const sums = await checksumSources(selectSources(ctx, ['big.bin', 'mid.bin']));
  t.is<string | undefined, string>(sums.sources[0]?.matches[0]?.entries[0]?.digest, `sha256:${want.digest('hex')}`);
  t.is<string | undefined, string>(sums.sources[1]?.matches[0]?.entries[0]?.digest, `sha256:${createHash('sha256').update(chunk).digest('hex')}`);
  t.is(sums.stats.bytesRead, 35 * (1 << 20));
});

test('checksum: many small files are hashed by worker threads and the main thread alike and give the sha256 of their bytes', async (t) => {
  const ctx = await tempDir(t);
  const { createHash } = await import('node:crypto');
  const want = new Map<string, string>();
  for (let d = 0; d < 10; d++) await mkdir(join(ctx, `d${d}`));
  for (let i = 0; i < 3000; i++) {
    const rel = `d${i % 10}/f${i}`;
    const body = `file ${i} `.repeat(i % 97);
    await writeFile(join(ctx, rel), body);
    want.set(rel, `sha256:${createHash('sha256').update(body).digest('hex')}`);
  }
  const sums = await checksumSources(selectSources(ctx, ['.']));
  t.is(sums.stats.filesRead, 3000);
  t.true(sums.stats.threadFiles > 0);
  const got = (sums.sources[0]?.matches[0]?.entries ?? []).filter((e) => e.type === 'file').map((e) => [e.rel, e.digest]);
  t.deepEqual(got.sort(), [...want].sort());
  // The same digests when read by the main thread alone (a reader of its own turns threads off).
  const plain = await checksumSources(selectSources(ctx, ['.']), { readFile: (p) => createReadStream(p) });
  t.is(plain.stats.threadFiles, 0);
  t.is(plain.digest, sums.digest);
});

test('checksum: a small file replaced by a symlink after the walk is refused when many files are hashed on threads', async (t) => {
  const ctx = await tempDir(t);
  for (let i = 0; i < 3000; i++) await writeFile(join(ctx, `f${String(i).padStart(4, '0')}`), `file ${i}\n`);
  const sel = selectSources(ctx, ['.']);
  await unlink(join(ctx, 'f2999'));
  await symlink('/etc/hostname', join(ctx, 'f2999'));
  const err = await t.throwsAsync(checksumSources(sel));
  t.is((err as { code?: string }).code, 'CTX_READ');
  t.regex((err as Error).message, /f2999/);
});

test('checksum: a file replaced by a symlink after the walk is refused when hashed', async (t) => {
  const ctx = await makeContext(t);
  const sel = selectSources(ctx, ['src/app.js']);
  await unlink(join(ctx, 'src/app.js'));
  await symlink('/etc/hostname', join(ctx, 'src/app.js'));
  const err = await t.throwsAsync(checksumSources(sel));
  t.is((err as { code?: string }).code, 'CTX_READ');
});
