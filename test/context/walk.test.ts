import test from 'ava';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isTsbuildError, type SourceLocation } from '../../src/core/index.js';
import { compileIgnore, loadIgnore, selectSources, type ContextSelection } from '../../src/context/index.js';
import { tempDir } from '../helpers/tmp.js';

/** Creates files (content strings), directories (trailing `/`) and symlinks (`-> target`). */
async function makeTree(root: string, spec: readonly string[]): Promise<void> {
  for (const item of spec) {
    const [path, target] = item.split(' -> ') as [string, string | undefined];
    const abs = join(root, path);
    if (target !== undefined) {
      await mkdir(join(abs, '..'), { recursive: true });
      await symlink(target, abs);
    } else if (path.endsWith('/')) {
      await mkdir(abs, { recursive: true });
    } else {
      await mkdir(join(abs, '..'), { recursive: true });
      await writeFile(abs, `content of ${path}\n`);
    }
  }
}

/** `source:rel:type` for every selected entry, in order. */
function listing(sel: ContextSelection): string[] {
  return sel.sources.flatMap((s) => s.matches.flatMap((m) => m.entries.map((e) => `${m.source}:${e.rel}:${e.type}`)));
}

const TREE = [
  'Dockerfile', 'README.md', 'b.txt', 'a.txt', 'src/app.js', 'src/lib/util.js', 'src/lib/util.test.js',
  'build/out.bin', 'build/keep/me.txt', 'build/keep/not.txt', 'node_modules/x/index.js', 'empty/',
];

test('walk: "." selects every entry in sorted pre-order with lstat info when there are no ignore rules', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, TREE);
  const sel = selectSources(ctx, ['.']);
  t.deepEqual(listing(sel), [
    '.::dir', '.:Dockerfile:file', '.:README.md:file', '.:a.txt:file', '.:b.txt:file', '.:build:dir',
    '.:build/keep:dir', '.:build/keep/me.txt:file', '.:build/keep/not.txt:file', '.:build/out.bin:file', '.:empty:dir',
    '.:node_modules:dir', '.:node_modules/x:dir', '.:node_modules/x/index.js:file', '.:src:dir', '.:src/app.js:file',
    '.:src/lib:dir', '.:src/lib/util.js:file', '.:src/lib/util.test.js:file',
  ]);
  const readme = sel.sources[0]?.matches[0]?.entries.find((e) => e.rel === 'README.md');
  t.is(readme?.stat.size, 'content of README.md\n'.length);
  t.is(readme?.absPath, join(sel.contextDir, 'README.md'));
});

test('walk: excluded entries are absent and an excluded dir is walked when a ! rule re-includes below it', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, TREE);
  const ignore = compileIgnore(['node_modules', 'build', '!build/keep/me.txt', '**/*.test.js', '*.md']);
  t.deepEqual(listing(selectSources(ctx, ['.'], { ignore })), [
    '.::dir', '.:Dockerfile:file', '.:a.txt:file', '.:b.txt:file', '.:build:dir', '.:build/keep:dir',
    '.:build/keep/me.txt:file', '.:empty:dir', '.:src:dir', '.:src/app.js:file', '.:src/lib:dir', '.:src/lib/util.js:file',
  ]);
});

test('walk: an excluded dir with nothing re-included below it is absent when a ! rule has wildcards', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, ['vendor/a/b.go', 'vendor/a/b.c', 'other/x.c']);
  const ignore = compileIgnore(['vendor', 'other', '!**/*.go']);
  t.deepEqual(listing(selectSources(ctx, ['.'], { ignore })), ['.::dir', '.:vendor:dir', '.:vendor/a:dir', '.:vendor/a/b.go:file']);
});

test('walk: wildcards match with Go filepath.Match per path and ** is a plain * when used in sources', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, TREE);
  const sel = selectSources(ctx, ['*.txt', 'src/*.js', '**/*.js', 'build/k??p']);
  t.deepEqual(sel.sources.map((s) => [s.wildcard, s.matches.map((m) => m.source)]), [
    [true, ['a.txt', 'b.txt']],
    [true, ['src/app.js']],
    [true, ['src/app.js']],
    [true, ['build/keep']],
  ]);
  t.deepEqual(sel.sources[3]?.matches[0]?.entries.map((e) => e.rel), ['', 'me.txt', 'not.txt']);
});

test('walk: a literal source names a file or a directory with its contents when it exists', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, TREE);
  const sel = selectSources(ctx, ['/src/lib/', './a.txt', 'empty']);
  t.deepEqual(listing(sel), ['src/lib::dir', 'src/lib:util.js:file', 'src/lib:util.test.js:file', 'a.txt::file', 'empty::dir']);
});

test('walk: sources leading outside the context are CTX_OUTSIDE when given as ../x, /../x or a/../../x', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, TREE);
  for (const src of ['../x', '/../x', 'src/../../x', '..']) {
    const err = t.throws(() => selectSources(ctx, [src]), undefined, src);
    t.true(isTsbuildError(err, 'CTX_OUTSIDE'), src);
  }
});

test('walk: a symlink named as a source is refused when it points outside the context', async (t) => {
  const outer = await tempDir(t);
  const ctx = join(outer, 'ctx');
  await makeTree(outer, ['secret.txt']);
  await makeTree(ctx, ['abs -> /etc/passwd', 'rel -> ../secret.txt', 'dirlink -> ..', 'ok.txt', 'sub/up -> ../../secret.txt']);
  for (const src of ['abs', 'rel', 'dirlink/secret.txt', 'sub/up', 'a*', 're?']) {
    const err = t.throws(() => selectSources(ctx, [src]), undefined, src);
    t.true(isTsbuildError(err, 'CTX_OUTSIDE'), src);
  }
});

test('walk: symlinks inside a copied directory are returned as symlinks and never followed', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, ['d/out -> /etc', 'd/in -> ../f.txt', 'f.txt']);
  const sel = selectSources(ctx, ['d']);
  const entries = sel.sources[0]?.matches[0]?.entries ?? [];
  t.deepEqual(entries.map((e) => [e.rel, e.type, e.linkTarget]), [['', 'dir', undefined], ['in', 'symlink', '../f.txt'], ['out', 'symlink', '/etc']]);
});

test('walk: a named symlink inside the context is followed to its target when it stays inside', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, ['real/f.txt', 'link -> real', 'flink -> real/f.txt', 'abslink -> PLACEHOLDER']);
  const sel0 = selectSources(ctx, ['real']);
  const realCtx = sel0.contextDir;
  await makeTree(ctx, [`abs2 -> ${realCtx}/real/f.txt`]);
  const sel = selectSources(ctx, ['link', 'flink', 'abs2']);
  t.deepEqual(listing(sel), ['link::dir', 'link:f.txt:file', 'flink::file', 'abs2::file']);
  t.is(sel.sources[1]?.matches[0]?.entries[0]?.absPath, join(realCtx, 'real/f.txt'));
});

test('walk: a source matching nothing is CTX_NOT_FOUND naming the pattern and the location when given one', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, TREE);
  const loc: SourceLocation = { file: 'Dockerfile', line: 3 };
  for (const src of ['missing.txt', '*.nope', 'a.txt/x', 'nodir/*.txt']) {
    const err = t.throws(() => selectSources(ctx, [src], { loc }), undefined, src);
    t.true(isTsbuildError(err, 'CTX_NOT_FOUND'), src);
    t.true(err?.message.includes(`"${src}"`), src);
    t.deepEqual((err as { loc?: unknown }).loc, loc);
  }
});

test('walk: an excluded source is CTX_NOT_FOUND when .dockerignore excludes it', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, TREE);
  const ignore = compileIgnore(['build', '*.md']);
  for (const src of ['README.md', 'build', 'build/out.bin', '*.md']) {
    const err = t.throws(() => selectSources(ctx, [src], { ignore }), undefined, src);
    t.true(isTsbuildError(err, 'CTX_NOT_FOUND'), src);
  }
  const ok = selectSources(ctx, ['build/keep'], { ignore: compileIgnore(['build', '!build/keep']) });
  t.deepEqual(listing(ok), ['build/keep::dir', 'build/keep:me.txt:file', 'build/keep:not.txt:file']);
});

test('walk: loadIgnore prefers <Dockerfile>.dockerignore next to the Dockerfile when it exists', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, ['docker/Dockerfile.dev', 'a.txt']);
  await writeFile(join(ctx, '.dockerignore'), 'a.txt\n');
  await writeFile(join(ctx, 'docker/Dockerfile.dev.dockerignore'), '# dev\n*.md\n');
  const dev = loadIgnore(ctx, join(ctx, 'docker/Dockerfile.dev'));
  t.is(dev.file, join(ctx, 'docker/Dockerfile.dev.dockerignore'));
  t.deepEqual(dev.patterns, ['*.md']);
  const plain = loadIgnore(ctx, join(ctx, 'Dockerfile'));
  t.is(plain.file, join(ctx, '.dockerignore'));
  t.true(plain.matcher.matches('a.txt').excluded);
  const none = loadIgnore(join(ctx, 'docker'));
  t.is(none.file, undefined);
  t.false(none.matcher.matches('a.txt').excluded);
});

test('walk: a wildcard matching an excluded dir selects only what a ! rule re-includes inside it', async (t) => {
  const ctx = await tempDir(t);
  await makeTree(ctx, ['pkgs/a/keep.go', 'pkgs/a/drop.c', 'pkgs/b/drop.c', 'pkgs/c.txt']);
  await writeFile(join(ctx, '.dockerignore'), 'pkgs/*\n!pkgs/*/*.go\n');
  const { matcher } = loadIgnore(ctx);
  const sel = selectSources(ctx, ['pkgs/*'], { ignore: matcher });
  t.deepEqual(listing(sel), ['pkgs/a::dir', 'pkgs/a:keep.go:file']);
});
