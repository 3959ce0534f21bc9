import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { selectSources } from '../../src/context/index.js';
import { packLayer, readTar, TarBatcher } from '../../src/layer/index.js';
import { openStore } from '../../src/store/index.js';
import type { CopyOp } from '../../src/plan/index.js';
import { RootfsView } from '../../src/solve/index.js';
import { contextSources, copyInto } from '../../src/solve/ops/copy.js';
import { streamLayerTar, verticesNeedingFiles } from '../../src/solve/ops/copy-layer.js';
import { tempDir } from '../helpers/tmp.js';

const title = (s: string): string => `COPY layer: ${s}`;
const LONG = `${'n'.repeat(60)}/${'m'.repeat(70)}.txt`;

function copyOp(sources: string[], dest: string, extra: Partial<CopyOp> = {}): CopyOp {
  return { type: 'copy', instruction: 'COPY', from: { kind: 'context' }, sources, dest, link: false, parents: false, exclude: [], keepGitDir: false, heredocs: [], ...extra } as CopyOp;
}

/** A context (small and large files, a long name, a symlink, nested and empty dirs) and a lower layer. */
async function fixture(t: Parameters<typeof tempDir>[0]): Promise<{ ctx: string; lower: string; dir: string }> {
  const dir = await tempDir(t);
  const ctx = join(dir, 'ctx');
  const lower = join(dir, 'lower');
  for (const d of ['src/a/b', 'src/empty', `src/${LONG.split('/')[0]}`]) await mkdir(join(ctx, d), { recursive: true });
  await writeFile(join(ctx, 'src/one.txt'), 'one\n');
  await writeFile(join(ctx, 'src/a/two.bin'), randomBytes(700 * 1024)); // streamed (over 256 KiB)
  await writeFile(join(ctx, 'src/a/b/three'), '');
  await writeFile(join(ctx, 'src/a/b/exec.sh'), '#!/bin/sh\n');
  await chmod(join(ctx, 'src/a/b/exec.sh'), 0o4755);
  await writeFile(join(ctx, `src/${LONG}`), 'long name\n');
  await symlink('a/b/three', join(ctx, 'src/link'));
  await writeFile(join(ctx, 'top.txt'), 'top\n');
  for (const f of ['src/one.txt', 'src/a/two.bin', 'src/empty', 'top.txt']) await utimes(join(ctx, f), 1_600_000_000, 1_600_000_000.5);
  // The lower layer: /app exists (copied up when written into), /etc/passwd for --chown.
  await mkdir(join(lower, 'app/old'), { recursive: true });
  await mkdir(join(lower, 'etc'), { recursive: true });
  await writeFile(join(lower, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
  await chmod(join(lower, 'app'), 0o750);
  await utimes(join(lower, 'app'), 1_500_000_000, 1_500_000_000);
  return { ctx, lower, dir };
}

async function sha(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of stream) h.update(c as Buffer);
  return h.digest('hex');
}

/** The layer of `op` made both ways: copied then packed, and streamed from the deferred files. */
async function bothWays(t: Parameters<typeof tempDir>[0], ops: CopyOp[], sourceDateEpoch?: number): Promise<{ packed: string; streamed: string; streamedUpper: string; files: number }> {
  const { ctx, lower, dir } = await fixture(t);
  const out: string[] = [];
  let files = 0;
  let streamedUpper = '';
  for (const deferred of [false, true]) {
    const upper = join(dir, deferred ? 'upper-streamed' : 'upper-packed');
    await mkdir(upper);
    const view = new RootfsView([upper, lower], 'user');
    if (deferred) view.deferFiles();
    for (const op of ops) await copyInto(view, op, contextSources(selectSources(ctx, op.sources as string[])), undefined);
    if (deferred) {
      files = view.deferredFiles().length;
      streamedUpper = upper;
      const tar = streamLayerTar(upper, view.deferredFiles(), { sourceDateEpoch, now: Math.floor(Date.now() / 1000) });
      if (tar === undefined) throw new Error('the fast path was refused');
      out.push(await sha(tar));
    } else {
      const p = packLayer(upper, { mode: 'changeset', ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }) });
      out.push(await sha(p.stream));
      await p.done;
    }
  }
  return { packed: out[0] as string, streamed: out[1] as string, streamedUpper, files };
}

test(title('the streamed tar equals the packed top layer when files are copied into a new directory'), async (t) => {
  const r = await bothWays(t, [copyOp(['src'], '/data')], 1_700_000_000);
  t.is(r.files, 5);
  t.is(r.streamed, r.packed);
  // Nothing but directories and symlinks was written to the top layer.
  const names = await readdir(join(r.streamedUpper, 'data'));
  t.deepEqual(names.sort(), ['a', 'empty', 'link', 'n'.repeat(60)]);
});

test(title('the streamed tar equals the packed top layer with --chown, --chmod, several sources and a copied-up directory'), async (t) => {
  const r = await bothWays(t, [
    copyOp(['src/one.txt', 'top.txt', 'src/a'], '/app/', { chown: 'app', chmod: '640' }),
    copyOp(['src/a/b'], '/app/b2', { chown: '1:2' }),
  ], 1_700_000_000);
  t.is(r.streamed, r.packed);
});

test(title('a later source replaces an earlier file and a symlink over a copied file replaces it'), async (t) => {
  const r = await bothWays(t, [copyOp(['top.txt'], '/app/x'), copyOp(['src/one.txt'], '/app/x'), copyOp(['top.txt'], '/app/data/link'), copyOp(['src'], '/app/data')], 1_700_000_000);
  t.is(r.streamed, r.packed);
});

test(title('keeps file modes, owners and mtimes without SOURCE_DATE_EPOCH'), async (t) => {
  const { ctx, lower, dir } = await fixture(t);
  const upper = join(dir, 'upper');
  await mkdir(upper);
  const view = new RootfsView([upper, lower], 'user');
  view.deferFiles();
  await copyInto(view, copyOp(['src'], '/data'), contextSources(selectSources(ctx, ['src'])), undefined);
  const tar = streamLayerTar(upper, view.deferredFiles(), { now: 1_234_567_890 }) as Readable;
  const seen = new Map<string, { mode: number; mtime: number; size: number; type: string }>();
  for await (const e of readTar(tar)) {
    seen.set(e.header.name, { mode: e.header.mode, mtime: e.header.mtime, size: e.header.size, type: e.header.type });
    for await (const _ of e.body) void _;
  }
  t.deepEqual(seen.get('data/one.txt'), { mode: 0o644, mtime: 1_600_000_000, size: 4, type: 'file' });
  t.is(seen.get('data/a/two.bin')?.size, 700 * 1024);
  t.is(seen.get('data/a/b/exec.sh')?.mode, 0o4755);
  t.is(seen.get(`data/${LONG}`)?.size, 10);
  t.is(seen.get('data/link')?.type, 'symlink');
  t.is(seen.get('data/empty/')?.mtime, 1_600_000_000); // no files written into it
  t.is(seen.get('data/a/')?.mtime, 1_234_567_890); // received files: the copy time
  t.is((await lstat(join(upper, 'data/one.txt')).catch(() => undefined)), undefined);
});

test(title('is refused (the caller packs as usual) when the top layer holds a regular file'), async (t) => {
  const { ctx, lower, dir } = await fixture(t);
  const upper = join(dir, 'upper');
  await mkdir(upper);
  await writeFile(join(upper, 'stray'), 'x');
  const view = new RootfsView([upper, lower], 'user');
  view.deferFiles();
  await copyInto(view, copyOp(['top.txt'], '/t'), contextSources(selectSources(ctx, ['top.txt'])), undefined);
  t.is(streamLayerTar(upper, view.deferredFiles(), { now: 0 }), undefined);
  await view.materializeDeferred();
  t.is((await lstat(join(upper, 't'))).size, 4);
});

test(title('a deferred file is seen by lookups and makes "not a directory" errors as a written one'), async (t) => {
  const { ctx, lower, dir } = await fixture(t);
  const upper = join(dir, 'upper');
  await mkdir(upper);
  const view = new RootfsView([upper, lower], 'user');
  view.deferFiles();
  await copyInto(view, copyOp(['top.txt'], '/f'), contextSources(selectSources(ctx, ['top.txt'])), undefined);
  t.true(view.lookup('/f')?.stat.isFile());
  await t.throwsAsync(copyInto(view, copyOp(['top.txt'], '/f/g'), contextSources(selectSources(ctx, ['top.txt'])), undefined), { code: 'SOLVE_NOT_DIR' });
  await t.throwsAsync(copyInto(view, copyOp(['src'], '/f'), contextSources(selectSources(ctx, ['src'])), undefined), { code: 'SOLVE_NOT_DIR' });
});

test(title('only the inputs of steps that read files need a snapshot'), (t) => {
  const layer = new Set(['copy1', 'run', 'copy2']);
  const vertices = [
    { id: 'from', inputs: [] },
    { id: 'copy1', inputs: ['from'] },
    { id: 'run', inputs: ['copy1'] },
    { id: 'copy2', inputs: ['run'] },
    { id: 'cmd', inputs: ['copy2'] },
  ];
  t.deepEqual([...verticesNeedingFiles(vertices, (v) => layer.has(v.id))].sort(), ['copy1', 'from', 'run']);
});

/** A context of `n` small files (a few over 256 KiB, streamed) in a few directories. */
async function manySmall(t: Parameters<typeof tempDir>[0], n: number): Promise<{ ctx: string; upper: string; view: RootfsView }> {
  const dir = await tempDir(t);
  const ctx = join(dir, 'ctx');
  const upper = join(dir, 'upper');
  for (let d = 0; d < 7; d++) await mkdir(join(ctx, 'many', `d${d}`), { recursive: true });
  for (let i = 0; i < n; i++) await writeFile(join(ctx, 'many', `d${i % 7}`, `f${i}`), i % 50 === 0 ? randomBytes(300 * 1024) : `file ${i} `.repeat(i % 300));
  await mkdir(upper);
  return { ctx, upper, view: new RootfsView([upper], 'user') };
}

/** Every file of a layer tar: name -> its bytes. */
async function tarFiles(tar: Readable): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for await (const e of readTar(tar)) {
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(c);
    if (e.header.type === 'file') files.set(e.header.name, Buffer.concat(chunks));
  }
  return files;
}

/**
 * `many/` of `ctx` copied to /data twice: deferred in `view` (for streamLayerTar of `upper`) and written
 * into another upper, whose packed layer (SOURCE_DATE_EPOCH 1.7e9) has the sha256 `packedSha`.
 */
async function copiedBothWays(ctx: string, upper: string, view: RootfsView): Promise<{ packedSha: string }> {
  const packedUpper = join(upper, '..', 'packed');
  await mkdir(packedUpper);
  const packedView = new RootfsView([packedUpper], 'user');
  view.deferFiles();
  const sources = contextSources(selectSources(ctx, ['many']));
  await copyInto(view, copyOp(['many'], '/data'), sources, undefined);
  await copyInto(packedView, copyOp(['many'], '/data'), sources, undefined);
  const p = packLayer(packedUpper, { mode: 'changeset', sourceDateEpoch: 1_700_000_000 });
  const packedSha = await sha(p.stream);
  await p.done;
  return { packedSha };
}

test(title('the streamed tar equals the packed top layer when many small files are copied'), async (t) => {
  const { ctx, upper, view } = await manySmall(t, 700);
  const { packedSha } = await copiedBothWays(ctx, upper, view);
  t.is(view.deferredFiles().length, 700);
  const tar = streamLayerTar(upper, view.deferredFiles(), { sourceDateEpoch: 1_700_000_000, now: Math.floor(Date.now() / 1000) }) as Readable;
  t.is(await sha(tar), packedSha);
});

test(title('a blob put from the streamed tar with recycled buffers (inline and threaded hash) equals the packed top layer'), async (t) => {
  const { ctx, upper, view } = await manySmall(t, 200);
  // Files over 1 MiB: each spans several recycled chunks.
  for (let i = 0; i < 3; i++) await writeFile(join(ctx, 'many', `big${i}`), randomBytes(3 * 1024 * 1024 + i * 4099));
  const expected = `sha256:${(await copiedBothWays(ctx, upper, view)).packedSha}`;
  const store = await openStore(join(upper, '..', 'store'));
  for (const hashOnThread of [false, true]) {
    const out = new TarBatcher();
    const tar = streamLayerTar(upper, view.deferredFiles(), { sourceDateEpoch: 1_700_000_000, now: Math.floor(Date.now() / 1000) }, out) as Readable;
    const blob = await store.blobs.put(tar, undefined, { hashOnThread, release: (chunk) => out.recycle(chunk) });
    t.is(blob.digest as string, expected, `hashOnThread ${hashOnThread}`);
    t.is(`sha256:${createHash('sha256').update(await readFile(store.blobs.pathOf(blob.digest))).digest('hex')}`, expected, 'the bytes on disk');
    await rm(store.blobs.pathOf(blob.digest));
  }
});

test(title('files that grew, shrank or were emptied after the walk are written with the bytes read when the tar is made'), async (t) => {
  const { ctx, upper, view } = await manySmall(t, 300);
  view.deferFiles();
  await copyInto(view, copyOp(['many'], '/data'), contextSources(selectSources(ctx, ['many'])), undefined);
  // After the walk: one file grows, one shrinks, one is emptied.
  await writeFile(join(ctx, 'many/d1/f1'), 'grown '.repeat(5000));
  await writeFile(join(ctx, 'many/d2/f2'), 'x');
  await writeFile(join(ctx, 'many/d3/f3'), '');
  const files = await tarFiles(streamLayerTar(upper, view.deferredFiles(), { now: 0 }) as Readable);
  t.is(files.size, 300);
  t.is(files.get('data/d1/f1')?.toString(), 'grown '.repeat(5000));
  t.is(files.get('data/d2/f2')?.toString(), 'x');
  t.is(files.get('data/d3/f3')?.length, 0);
  t.is(files.get('data/d4/f4')?.toString(), 'file 4 '.repeat(4));
});

test(title('refuses a source file swapped for a symlink after the walk among many small files'), async (t) => {
  const { ctx, upper, view } = await manySmall(t, 300);
  view.deferFiles();
  await copyInto(view, copyOp(['many'], '/data'), contextSources(selectSources(ctx, ['many'])), undefined);
  await rm(join(ctx, 'many/d5/f299'));
  await symlink('/etc/hostname', join(ctx, 'many/d5/f299'));
  const tar = streamLayerTar(upper, view.deferredFiles(), { now: 0 }) as Readable;
  await t.throwsAsync(sha(tar), { code: 'SOLVE_IO', message: /ELOOP.*|f299/ });
});

test(title('refuses a source file swapped for a symlink before the tar is written'), async (t) => {
  const { ctx, lower, dir } = await fixture(t);
  const upper = join(dir, 'upper');
  await mkdir(upper);
  const view = new RootfsView([upper, lower], 'user');
  view.deferFiles();
  await copyInto(view, copyOp(['top.txt'], '/t'), contextSources(selectSources(ctx, ['top.txt'])), undefined);
  await rm(join(ctx, 'top.txt'));
  await symlink('/etc/hostname', join(ctx, 'top.txt'));
  const tar = streamLayerTar(upper, view.deferredFiles(), { now: 0 }) as Readable;
  await t.throwsAsync(sha(tar), { code: 'SOLVE_IO', message: /ELOOP/ });
});
