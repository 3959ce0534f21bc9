import test from 'ava';
import { constants, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { accessInPool, readdirInPool, readFileInPool, renameInPool } from '../../src/sys/index.js';
import { tempDir } from '../helpers/tmp.js';

test('fs-pool: rename, readdir, readFile and access resolve with node:fs results', async (t) => {
  const dir = await tempDir(t);
  writeFileSync(join(dir, 'a'), 'caf\u00e9');
  await accessInPool(join(dir, 'a'), constants.R_OK);
  t.is(await readFileInPool(join(dir, 'a'), 'utf8'), 'caf\u00e9');
  t.is(await readFileInPool(join(dir, 'a'), 'latin1'), readFileSync(join(dir, 'a'), 'latin1'));
  await renameInPool(join(dir, 'a'), join(dir, 'b'));
  t.false(existsSync(join(dir, 'a')));
  t.deepEqual(await readdirInPool(dir), ['b']);
});

test('fs-pool: failures reject with the node:fs error (code, syscall, path)', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'missing');
  for (const op of [() => accessInPool(missing, constants.F_OK), () => readFileInPool(missing, 'utf8'), () => renameInPool(missing, join(dir, 'x')), () => readdirInPool(missing)]) {
    const err = await t.throwsAsync(op());
    t.is((err as NodeJS.ErrnoException).code, 'ENOENT');
    t.is((err as NodeJS.ErrnoException).path, missing);
  }
  writeFileSync(join(dir, 'f'), '');
  t.is(((await t.throwsAsync(readdirInPool(join(dir, 'f')))) as NodeJS.ErrnoException).code, 'ENOTDIR');
});
