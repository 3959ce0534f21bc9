import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isTsbuildError } from '../../src/core/index.js';
import { cleanGoPath, compileIgnore, matchGoPattern, parseDockerignore } from '../../src/context/index.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/dockerignore/', import.meta.url));

interface Table<R> {
  readonly rows: readonly R[];
}

function load<R>(name: string): readonly R[] {
  return (JSON.parse(readFileSync(`${FIXTURES}${name}`, 'utf8')) as Table<R>).rows;
}

/** Walks from the top like Docker's walker: each directory hands its match state to its children. */
function excludedWalking(patterns: readonly string[], path: string): boolean {
  const m = compileIgnore(patterns);
  const parts = path.split('/');
  let info: readonly boolean[] | undefined;
  let excluded = false;
  for (let i = 1; i <= parts.length; i++) {
    const r = m.matches(parts.slice(0, i).join('/'), info);
    info = r.info;
    excluded = r.excluded;
  }
  return excluded;
}

const rows = load<[string[], string, boolean]>('matches.json');

test('dockerignore: the pattern table has at least 60 rows', (t) => {
  t.true(rows.length >= 60);
});

for (const [i, [patterns, path, expected]] of rows.entries()) {
  test(`dockerignore: row ${i} ${JSON.stringify(patterns)} ${expected ? 'excludes' : 'keeps'} "${path}" when matched by path and when walked`, (t) => {
    t.is(compileIgnore(patterns).matches(path).excluded, expected, 'by path (parents checked)');
    t.is(excludedWalking(patterns, path), expected, 'walked with parent results');
  });
}

const goRows = load<[string, string, boolean, boolean]>('go-match.json');
test('go-path: matchGoPattern agrees with Go filepath.Match when given Go\'s own cases', (t) => {
  for (const [pattern, name, matched, bad] of goRows) {
    t.deepEqual(matchGoPattern(pattern, name), { matched, bad }, `${pattern} vs ${name}`);
  }
});

test('go-path: cleanGoPath matches filepath.Clean when paths have dots and repeated slashes', (t) => {
  const cases: [string, string][] = [
    ['', '.'], ['.', '.'], ['/', '/'], ['a//b/', 'a/b'], ['./a/./b', 'a/b'], ['a/../..', '..'], ['/../x', '/x'],
    ['../a/../..', '../..'], ['a/b/../c', 'a/c'], ['!a/../b', 'b'], ['//a', '/a'], ['a/..', '.'],
  ];
  for (const [input, want] of cases) t.is(cleanGoPath(input), want, input);
});

test('dockerignore: parseDockerignore follows Docker\'s reader when lines have comments, blanks, ! and leading slashes', (t) => {
  const text = '\uFEFFtest1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n  # not a comment\n! /inverted/abs/path\n!\n! \nwin\r\n  spaced  \n./x/../y/\n';
  t.deepEqual(parseDockerignore(text), [
    'test1', 'test2', 'a/file/here', 'lastfile', '# not a comment', '!inverted/abs/path', '!', '!', 'win', 'spaced', 'y',
  ]);
});

test('dockerignore: compileIgnore rejects a lone ! when the file has one', (t) => {
  const err = t.throws(() => compileIgnore(parseDockerignore('a\n!\n')));
  t.true(isTsbuildError(err, 'CTX_BAD_IGNORE_PATTERN'));
});

test('dockerignore: compileIgnore rejects malformed classes when Go would', (t) => {
  for (const bad of ['[', 'a[', '[^bc', '[a-b-c]', 'x\\', '[z-a]']) {
    const err = t.throws(() => compileIgnore([bad]), undefined, bad);
    t.true(isTsbuildError(err, 'CTX_BAD_IGNORE_PATTERN'), bad);
  }
});

test('dockerignore: mustDescend is true when a literal ! rule lies below the directory', (t) => {
  const m = compileIgnore(['build', '!build/keep/me']);
  t.true(m.mustDescend('build'));
  t.true(m.mustDescend('build/keep'));
  t.false(m.mustDescend('build/other'));
  t.false(m.mustDescend('buildx'));
});

test('dockerignore: mustDescend is always true when a ! rule has wildcards', (t) => {
  const m = compileIgnore(['vendor', '!**/*.go']);
  t.true(m.mustDescend('vendor'));
  t.true(m.mustDescend('anything'));
  t.false(compileIgnore(['vendor']).mustDescend('vendor'));
});

test('dockerignore: mustDescend treats a ! rule ending in /** or /* as a prefix when deciding to walk', (t) => {
  const m = compileIgnore(['build', '!build/keep/**', '!docs/*']);
  t.true(m.mustDescend('build'));
  t.true(m.mustDescend('build/keep'));
  t.false(m.mustDescend('build/other'));
  t.true(m.mustDescend('docs'));
  t.false(m.mustDescend('src'));
  t.true(compileIgnore(['build', '!build/*/x']).mustDescend('src'), 'a wildcard in the middle walks everything');
});
