import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeDirTree, removeDirTreeSync, removeTree } from '../../src/snapshot/layout.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * A tree to remove (`<root>/tree`): nested directories, `files` files in one directory, symlinks to a directory,
 * a file and nothing, a fifo and an empty directory; `<root>/outside/keep` is what the links point to.
 */
async function hostileTree(t: Parameters<typeof tempDir>[0], files: number): Promise<{ tree: string; keep: string }> {
  const root = await tempDir(t);
  const outside = join(root, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep'), 'keep\n');
  const tree = join(root, 'tree');
  mkdirSync(join(tree, 'a', 'b', 'c'), { recursive: true });
  writeFileSync(join(tree, 'a', 'b', 'c', 'f'), 'f\n');
  for (let i = 0; i < files; i++) writeFileSync(join(tree, 'a', `f${i}`), `${i}\n`);
  symlinkSync(outside, join(tree, 'a', 'dir-link'));
  symlinkSync(join(outside, 'keep'), join(tree, 'file-link'));
  symlinkSync('missing', join(tree, 'dangling'));
  execFileSync('mkfifo', [join(tree, 'fifo')]);
  mkdirSync(join(tree, 'empty'));
  return { tree, keep: join(outside, 'keep') };
}

test('removeDirTree: removes nested directories, files, a fifo and symlinks without following them; more entries than one batch', async (t) => {
  const { tree, keep } = await hostileTree(t, 100);
  await removeDirTree(tree);
  t.false(existsSync(tree));
  t.is(readFileSync(keep, 'utf8'), 'keep\n', 'a symlink to a directory is removed, not what it points to');
});

test('removeDirTree: a missing directory is no error; a file is unlinked (the naive snapshotter discards its record file)', async (t) => {
  const root = await tempDir(t);
  await t.notThrowsAsync(removeDirTree(join(root, 'missing')));
  writeFileSync(join(root, 'file'), 'x');
  await removeDirTree(join(root, 'file'));
  t.false(existsSync(join(root, 'file')));
});

test('removeDirTree: the tree an overlay work dir holds after a volatile mount (work/ of mode 000, incompat/volatile/dirty)', async (t) => {
  const root = await tempDir(t);
  const gone = join(root, 'gone');
  mkdirSync(join(gone, 'work', 'incompat', 'volatile'), { recursive: true });
  writeFileSync(join(gone, 'work', 'incompat', 'volatile', 'dirty'), '');
  chmodSync(join(gone, 'work'), 0);
  if (process.getuid?.() !== 0) {
    // Only root passes a mode-000 directory; the caller opens the modes up first for everyone else.
    await t.throwsAsync(removeDirTree(gone));
    chmodSync(join(gone, 'work'), 0o700);
  }
  await removeDirTree(gone);
  t.false(existsSync(gone));
});

test('removeDirTreeSync: removes nested directories, files, a fifo and symlinks without following them', async (t) => {
  const { tree, keep } = await hostileTree(t, 40);
  removeDirTreeSync(tree);
  t.false(existsSync(tree));
  t.is(readFileSync(keep, 'utf8'), 'keep\n', 'a symlink to a directory is removed, not what it points to');
});

test('removeDirTreeSync: a missing directory is no error; a file is unlinked', async (t) => {
  const root = await tempDir(t);
  t.notThrows(() => removeDirTreeSync(join(root, 'missing')));
  writeFileSync(join(root, 'file'), 'x');
  removeDirTreeSync(join(root, 'file'));
  t.false(existsSync(join(root, 'file')));
});

test('removeTree: the tree of an active overlay snapshot after a volatile mount goes, also with a mode-000 work dir when not root', async (t) => {
  const root = await tempDir(t);
  const gone = join(root, 'gone');
  mkdirSync(join(gone, 'upper'), { recursive: true });
  mkdirSync(join(gone, 'work', 'work', 'incompat', 'volatile'), { recursive: true });
  writeFileSync(join(gone, 'work', 'work', 'incompat', 'volatile', 'dirty'), '');
  writeFileSync(join(gone, 'meta.json'), '{}\n');
  chmodSync(join(gone, 'work', 'work'), 0);
  if (process.getuid?.() !== 0) t.throws(() => removeDirTreeSync(gone), { code: 'EACCES' });
  await removeTree(gone);
  t.false(existsSync(gone));
});
