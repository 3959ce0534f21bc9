import { chmod, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readTar } from '../../src/layer/index.js';
import { testSerialIf } from '../helpers/capability.js';
import { build, buildMissing, lstat, makeFixture, readImage, readUnpacked, stepsOf, unpackImage, type StoredImage, unpackedImage } from './build-helpers.js';

const missing = await buildMissing();

/** Names of the entries of one layer of an image. */
async function layerNames(img: StoredImage, index: number): Promise<string[]> {
  const names: string[] = [];
  const digest = img.manifest.layers.at(index)?.digest;
  if (digest === undefined) throw new Error(`no layer ${index}`);
  for await (const e of readTar(await img.store.blobs.open(digest))) {
    names.push(e.header.name);
    for await (const _ of e.body) {
      // drain
    }
  }
  return names;
}

testSerialIf(missing, 'tsbuild build: COPY --parents keeps source paths below the destination (minus a /./ pivot) and COPY --from expands wildcards when given', async (t) => {
  const f = await makeFixture(t, {
    'a/b/one.txt': '1', 'a/c/two.txt': '2', 'a/c/three.md': '3', 'x/y/z/deep.txt': 'deep',
  });
  const df = [
    'FROM busybox AS src',
    'COPY . /ctx/',
    'FROM busybox',
    'COPY --parents a/b/one.txt a/c/two.txt /p/',
    'COPY --parents a/*/*.txt /w/',
    'COPY --parents ./x/./y/z/deep.txt /pivot/',
    'COPY --parents a/c /dirs/',
    'COPY --from=src --parents /ctx/a/b/one.txt /fromstage/',
    'COPY --from=src /ctx/a/*/*.txt /glob/',
    'COPY --from=src --parents /ctx/./a/*/t*.txt /globp/',
    'COPY --from=src /ctx/[ax] /globdir/',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'parents:1']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'parents:1');
  t.is(await readUnpacked(dest, 'p/a/b/one.txt'), '1');
  t.is(await readUnpacked(dest, 'p/a/c/two.txt'), '2');
  t.deepEqual(await readdir(join(dest, 'w/a')), ['b', 'c']);
  t.deepEqual(await readdir(join(dest, 'w/a/c')), ['two.txt']);
  t.is(await readUnpacked(dest, 'pivot/y/z/deep.txt'), 'deep');
  t.false(existsSync(join(dest, 'pivot/x')));
  t.deepEqual(await readdir(join(dest, 'dirs/a/c')), ['three.md', 'two.txt']);
  t.is(await readUnpacked(dest, 'fromstage/ctx/a/b/one.txt'), '1');
  t.deepEqual(await readdir(join(dest, 'glob')), ['one.txt', 'two.txt']);
  t.deepEqual(await readdir(join(dest, 'globp')), ['a']);
  t.deepEqual(await readdir(join(dest, 'globp/a')), ['c']);
  t.deepEqual((await readdir(join(dest, 'globdir'))).sort(), ['b', 'c', 'y'], 'matched directories copy their contents, as Docker');
  const r2 = await build(f, 'FROM busybox AS src\nFROM busybox\nCOPY --from=src /nowhere/*.txt /x/\n');
  t.regex(r2.stderr, /Dockerfile:3: SOLVE_COPY_NOT_FOUND: COPY source "\/nowhere\/\*\.txt" not found in stage 0/);
});

testSerialIf(missing, 'tsbuild build: COPY --exclude leaves matching files out of the image and out of the cache key when given', async (t) => {
  const f = await makeFixture(t, {
    'tree/keep.js': 'k', 'tree/notes.md': 'n', 'tree/sub/skip.txt': 's', 'tree/sub/also.js': 'a', 'tree/docs/readme.md': 'r', 'tree/docs/keep.md': 'km',
    'home.txt': 'h', 'homer.js': 'hj',
  });
  const df = [
    'FROM busybox AS src',
    'COPY tree /t',
    'FROM busybox',
    'COPY --exclude=*.md --exclude=sub/skip.txt tree /ex/',
    'COPY --exclude=docs --exclude=!docs/keep.md tree /re/',
    'COPY --exclude=*.txt hom* /wild/',
    'COPY --from=src --exclude=**/*.js /t /fromstage/',
    '',
  ].join('\n');
  let r = await build(f, df, ['-t', 'exclude:1']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'exclude:1');
  t.deepEqual(await readdir(join(dest, 'ex')), ['docs', 'keep.js', 'sub']);
  t.deepEqual(await readdir(join(dest, 'ex/sub')), ['also.js']);
  t.deepEqual(await readdir(join(dest, 'ex/docs')), ['keep.md', 'readme.md'], '*.md matches at the top only');
  t.deepEqual(await readdir(join(dest, 're/docs')), ['keep.md']);
  t.deepEqual(await readdir(join(dest, 'wild')), ['homer.js']);
  t.deepEqual((await readdir(join(dest, 'fromstage'), { recursive: true })).sort(), ['docs', 'docs/keep.md', 'docs/readme.md', 'notes.md', 'sub', 'sub/skip.txt']);

  // Changing an excluded file keeps the step cached; changing a copied one does not.
  await writeFile(join(f.context, 'tree/notes.md'), 'changed');
  r = await build(f, df, ['-t', 'exclude:2']);
  t.is(r.code, 0, r.stderr);
  const started = stepsOf(r.events).started;
  t.false(started.some((n) => n.includes('--exclude=*.md')), started.join('\n'));
  await writeFile(join(f.context, 'tree/keep.js'), 'changed');
  r = await build(f, df, ['-t', 'exclude:3']);
  t.true(stepsOf(r.events).started.some((n) => n.includes('--exclude=*.md')));
});

testSerialIf(missing, 'tsbuild build: COPY applies symbolic --chmod per entry and --link makes an independent layer with --chown names', async (t) => {
  const f = await makeFixture(t, { 'tree/run.sh': '#!/bin/sh\n', 'tree/data.txt': 'd', 'tree/dir/x': 'x' });
  await chmod(join(f.context, 'tree/run.sh'), 0o775);
  await chmod(join(f.context, 'tree/data.txt'), 0o664);
  const df = (base = 'base'): string => [
    'FROM busybox',
    `RUN mkdir -p /usr/local/bin && echo ${base} > /base.txt`,
    'COPY --chmod=u+x,g-w tree/data.txt /sym.txt',
    'COPY --chmod=a+X,o-rwx tree /symdir/',
    'COPY --link --chown=65534:65534 tree/data.txt /linked.txt',
    'COPY --link --chown=nobody:nobody --chmod=0750 tree/run.sh /usr/local/bin/run',
    '',
  ].join('\n');
  let r = await build(f, df(), ['-t', 'flags:1']);
  t.is(r.code, 0, r.stderr);
  const img = await readImage(f.root, 'flags:1');
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is((await lstat(join(dest, 'sym.txt'))).mode & 0o7777, 0o744);
  t.is((await lstat(join(dest, 'symdir/run.sh'))).mode & 0o7777, 0o770);
  t.is((await lstat(join(dest, 'symdir/data.txt'))).mode & 0o7777, 0o660);
  t.is((await lstat(join(dest, 'symdir/dir'))).mode & 0o7777, 0o750);
  const run = await lstat(join(dest, 'usr/local/bin/run'));
  t.deepEqual([run.uid, run.gid, run.mode & 0o7777], [65534, 65534, 0o750]);
  t.is(await readUnpacked(dest, 'base.txt'), 'base\n');
  // The --link layer holds only its own entries (no whiteouts, nothing copied up from the parent).
  const names = await layerNames(img, -1);
  t.deepEqual(names.map((n) => n.replace(/\/$/, '')).sort(), ['usr', 'usr/local', 'usr/local/bin', 'usr/local/bin/run']);

  r = await build(f, df(), ['-t', 'flags:2']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(stepsOf(r.events).started.filter((n) => n.includes('COPY')), []);
  t.is((await lstat(join(dest, 'linked.txt'))).uid, 65534);

  // A new parent (rebase): the --link step with numeric ids stays cached, the one that looks up
  // names in the parent's /etc/passwd runs again; the image has the new parent under both.
  r = await build(f, df('rebased'), ['-t', 'flags:3']);
  t.is(r.code, 0, r.stderr);
  const started = stepsOf(r.events).started;
  t.false(started.some((n) => n.includes('/linked.txt')), started.join('\n'));
  t.true(started.some((n) => n.includes('/usr/local/bin/run')), started.join('\n'));
  const rebased = await unpackedImage(f, 'flags:3', 'rebased');
  t.is(await readUnpacked(rebased, 'base.txt'), 'rebased\n');
  t.is(await readUnpacked(rebased, 'linked.txt'), 'd');
  t.is(await readUnpacked(rebased, 'usr/local/bin/run'), '#!/bin/sh\n');
  r = await build(f, 'FROM busybox\nCOPY --chmod=u+y tree /x/\n');
  t.not(r.code, 0);
  t.regex(r.stderr, /Dockerfile:2: PLAN_BAD_CHMOD/);
  r = await build(f, 'FROM busybox\nRUN true\nCOPY --link --chown=nobody:nogroup tree /x/\n');
  t.regex(r.stderr, /Dockerfile:3: SANDBOX_UNKNOWN_GROUP/);
});
