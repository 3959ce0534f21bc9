import test from 'ava';
import { compileExcludes, excludeEntries, parentsPath, parentsPivot } from '../../src/solve/ops/copy-select.js';

const tree = [
  { rel: '', type: 'dir' },
  { rel: 'a.txt', type: 'file' },
  { rel: 'b.md', type: 'file' },
  { rel: 'docs', type: 'dir' },
  { rel: 'docs/keep.md', type: 'file' },
  { rel: 'docs/x.txt', type: 'file' },
  { rel: 'src', type: 'dir' },
  { rel: 'src/m.js', type: 'file' },
];

const rels = (patterns: string[], name = 'dir'): string[] => excludeEntries(compileExcludes(patterns)!, name, tree).map((e) => e.rel);

test('excludeEntries: drops matching entries relative to the source root when patterns match', (t) => {
  t.deepEqual(rels(['*.md']), ['', 'a.txt', 'docs', 'docs/keep.md', 'docs/x.txt', 'src', 'src/m.js']);
  t.deepEqual(rels(['**/*.md']), ['', 'a.txt', 'docs', 'docs/x.txt', 'src', 'src/m.js']);
  t.deepEqual(rels(['*.md', '*.txt']), ['', 'docs', 'docs/keep.md', 'docs/x.txt', 'src', 'src/m.js']);
});

test('excludeEntries: drops a whole directory when the directory matches', (t) => {
  t.deepEqual(rels(['docs']), ['', 'a.txt', 'b.md', 'src', 'src/m.js']);
});

test('excludeEntries: keeps re-included entries and their parent directory when ! is used', (t) => {
  t.deepEqual(rels(['docs', '!docs/keep.md']), ['', 'a.txt', 'b.md', 'docs', 'docs/keep.md', 'src', 'src/m.js']);
});

test('excludeEntries: drops a whole source when its own path matches', (t) => {
  t.deepEqual(excludeEntries(compileExcludes(['*.txt'])!, 'home.txt', [{ rel: '', type: 'file' }]), []);
  t.deepEqual(excludeEntries(compileExcludes(['*.txt'])!, 'home.js', [{ rel: '', type: 'file' }]).length, 1);
  t.deepEqual(rels(['*'], '.').length, 1, 'the context root itself is never excluded');
});

test('compileExcludes: returns undefined when no pattern is given and fails on bad syntax', (t) => {
  t.is(compileExcludes([]), undefined);
  t.throws(() => compileExcludes(['[']), { code: 'CTX_BAD_IGNORE_PATTERN' } as never);
});

test('parentsPivot and parentsPath: keep the source path below the destination, minus a /./ pivot', (t) => {
  t.is(parentsPivot('x/a.txt'), '');
  t.is(parentsPivot('./x/a.txt'), '');
  t.is(parentsPivot('./x/./y/*.txt'), 'x');
  t.is(parentsPivot('/a/b/./c'), 'a/b');
  t.is(parentsPath('x/y/a.txt', ''), 'x/y/a.txt');
  t.is(parentsPath('./x/y/a.txt', ''), 'x/y/a.txt');
  t.is(parentsPath('x/y/a.txt', 'x'), 'y/a.txt');
  t.is(parentsPath('.', ''), '');
  t.is(parentsPath('/abs/dir', ''), 'abs/dir');
});
