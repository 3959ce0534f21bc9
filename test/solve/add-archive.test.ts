import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { findCompressionTools } from '../../src/layer/index.js';
import { detectArchiveCompression, expandArchives, isTarHeader } from '../../src/solve/ops/add-archive.js';
import { findHostTools } from '../../src/solve/ops/add-tools.js';
import type { CopySources } from '../../src/solve/ops/copy.js';
import { tempDir } from '../helpers/tmp.js';
import { buildTar, type RawEntry } from '../layer/helpers.js';

const run = promisify(execFile);
const hostTools = findHostTools({ PATH: process.env.PATH });
const tools = findCompressionTools(process.env.PATH);

function fileSource(name: string, hostPath: string): CopySources {
  return { wildcard: false, sources: [{ name, entries: [{ rel: '', type: 'file', hostPath, mode: 0o644, uid: 0, gid: 0, mtime: 1 }] }] };
}

const ENTRIES: RawEntry[] = [
  { name: 'app/', type: 'directory', mode: 0o750, uid: 1000, gid: 1000 },
  { name: 'app/a.txt', content: 'hello', mode: 0o640, uid: 1000, gid: 1001, mtime: 1_500_000_000 },
  { name: 'app/link', type: 'symlink', linkname: 'a.txt' },
];

async function expand(dir: string, name: string, body: Buffer): Promise<{ rels: string[]; result: Awaited<ReturnType<typeof expandArchives>> }> {
  const path = join(dir, name);
  await writeFile(path, body);
  const tmpDir = join(dir, 'tmp');
  await mkdir(tmpDir, { recursive: true });
  const result = await expandArchives(fileSource(name, path), { tmpDir, tools, hostTools, signal: new AbortController().signal });
  return { rels: (result.sources.sources[0]?.entries ?? []).map((e) => `${e.rel}:${e.type}`), result };
}

test('detectArchiveCompression and isTarHeader: recognise compressed files and tar headers by content', (t) => {
  t.is(detectArchiveCompression(gzipSync('x')), 'gzip');
  t.is(detectArchiveCompression(Buffer.from('BZh91AY')), 'bzip2');
  t.is(detectArchiveCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), 'xz');
  t.is(detectArchiveCompression(Buffer.from('plain text')), 'none');
  t.true(isTarHeader(buildTar(ENTRIES)));
  t.false(isTarHeader(Buffer.alloc(512)));
  t.false(isTarHeader(Buffer.from('x'.repeat(600))));
});

for (const kind of ['tar', 'gzip', 'bzip2', 'xz', 'zstd'] as const) {
  test(`expandArchives: extracts a ${kind} tar with modes, owners, mtimes and symlinks when ADD names it`, async (t) => {
    const dir = await tempDir(t);
    let body = buildTar(ENTRIES);
    if (kind !== 'tar') {
      await writeFile(join(dir, 'raw.tar'), body);
      const argv = { gzip: ['gzip', '-c'], bzip2: ['bzip2', '-c'], xz: ['xz', '-c'], zstd: ['zstd', '-q', '-c'] }[kind];
      body = (await run(argv[0] as string, [...argv.slice(1), join(dir, 'raw.tar')], { encoding: 'buffer', maxBuffer: 1 << 20 })).stdout;
    }
    const { rels, result } = await expand(dir, `a.${kind}`, body);
    t.teardown(result.cleanup);
    t.deepEqual(rels, [':dir', 'app:dir', 'app/a.txt:file', 'app/link:symlink']);
    const entries = result.sources.sources[0]!.entries;
    const a = entries.find((e) => e.rel === 'app/a.txt')!;
    t.is(await readFile(a.hostPath, 'utf8'), 'hello');
    t.is(a.mode, 0o640);
    t.is(a.mtime, 1_500_000_000);
    if (process.getuid?.() === 0) t.deepEqual([a.uid, a.gid], [1000, 1001]);
    t.is(entries.find((e) => e.rel === 'app/link')!.linkTarget, 'a.txt');
    t.deepEqual([entries[0]!.mode, entries[0]!.uid], [0o755, 0]);
    await result.cleanup();
    t.deepEqual(readdirSync(join(dir, 'tmp')), [], 'the staging directory is removed');
  });
}

test('expandArchives: copies files that are not tar archives as they are, compressed or not', async (t) => {
  const dir = await tempDir(t);
  for (const [name, body] of [['plain.txt', Buffer.from('just text')], ['data.gz', gzipSync('not a tar')], ['empty', Buffer.alloc(0)], ['zeros', Buffer.alloc(1024)]] as const) {
    const { result } = await expand(dir, name, body);
    t.is(result.sources.sources[0]!.entries[0]!.hostPath, join(dir, name), name);
    t.is(result.sources.sources[0]!.entries.length, 1);
    await result.cleanup();
  }
});

test('expandArchives: keeps hostile members inside the staging directory or fails when an archive tries to escape', async (t) => {
  const dir = await tempDir(t);
  const outside = join(dir, 'outside');
  await mkdir(outside);
  // `..` and absolute names are refused.
  await t.throwsAsync(expand(dir, 'dotdot.tar', buildTar([{ name: '../escape', content: 'x' }])), { code: 'SOLVE_ADD_EXTRACT', message: /dotdot\.tar/ });
  await t.throwsAsync(expand(dir, 'abs.tar', buildTar([{ name: `${outside}/abs`, content: 'x' }])), { code: 'SOLVE_ADD_EXTRACT' });
  // A symlink to an absolute directory, then a write through it: lands inside the staging directory.
  const { result } = await expand(dir, 'link.tar', buildTar([{ name: 'l', type: 'symlink', linkname: outside }, { name: 'l/through', content: 'x' }]));
  t.teardown(result.cleanup);
  t.false(existsSync(join(outside, 'through')));
  t.true(result.sources.sources[0]!.entries.some((e) => e.rel.endsWith('/through') && e.type === 'file'));
  // A hard link to a file outside is refused.
  await t.throwsAsync(expand(dir, 'hard.tar', buildTar([{ name: 'h', type: 'link', linkname: '/etc/passwd' }])), { code: 'SOLVE_ADD_EXTRACT' });
  await t.throwsAsync(expand(dir, 'hard2.tar', buildTar([{ name: 'h', type: 'link', linkname: '../outside/f' }])), { code: 'SOLVE_ADD_EXTRACT' });
  t.deepEqual(readdirSync(outside), []);
  await result.cleanup();
  t.deepEqual(readdirSync(join(dir, 'tmp')), [], 'failed extractions leave no staging directory');
});

test('expandArchives: fails with SOLVE_ADD_TOOL_MISSING naming the file when xz is not installed', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.tar.xz'), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2]));
  await mkdir(join(dir, 'tmp'));
  await t.throwsAsync(
    expandArchives(fileSource('a.tar.xz', join(dir, 'a.tar.xz')), { tmpDir: join(dir, 'tmp'), tools, hostTools: {}, signal: new AbortController().signal }),
    { code: 'SOLVE_ADD_TOOL_MISSING', message: /a\.tar\.xz.*xz program/ },
  );
});
