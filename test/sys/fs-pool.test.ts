import test from 'ava';
import { constants, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { accessInPool, renameInPool } from '../../src/sys/index.js';
import { tempDir } from '../helpers/tmp.js';

test('fs-pool: rename and access resolve with node:fs results', async (t) => {
  const dir = await tempDir(t);
  writeFileSync(join(dir, 'a'), 'caf\u00e9');
  await accessInPool(join(dir, 'a'), constants.R_OK);
  await renameInPool(join(dir, 'a'), join(dir, 'b'));
  t.false(existsSync(join(dir, 'a')));
  t.deepEqual(readdirSync(dir), ['b']);
});

test('fs-pool: failures reject with the node:fs error (code, syscall, path)', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'missing');
  for (const op of [() => accessInPool(missing, constants.F_OK), () => renameInPool(missing, join(dir, 'x'))]) {
    const err = await t.throwsAsync(op());
    t.is((err as NodeJS.ErrnoException).code, 'ENOENT');
    t.is((err as NodeJS.ErrnoException).path, missing);
  }
  writeFileSync(join(dir, 'f'), '');
  t.is(((await t.throwsAsync(accessInPool(join(dir, 'f'), constants.X_OK))) as NodeJS.ErrnoException).code, 'EACCES');
});
