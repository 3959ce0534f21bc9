import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { testSerialIf } from '../helpers/capability.js';
import { build, buildMissing, makeFixture, readImage } from './build-helpers.js';

const missing = await buildMissing();

const DF = 'FROM busybox\nCOPY app.txt /app/\nRUN cat /app/app.txt > /copy\nCMD ["sh"]\n';

testSerialIf(missing, 'tsbuild build: a fully cached rebuild keeps the image ID when SOURCE_DATE_EPOCH is not set, and a changed file gives a new one', async (t) => {
  const f = await makeFixture(t, { 'app.txt': 'v1\n' });
  delete f.env.SOURCE_DATE_EPOCH;
  const first = await build(f, DF, ['-t', 'id:1']);
  t.is(first.code, 0, first.stderr);
  const a = await readImage(f.root, 'id:1');
  // A later wall-clock second, so a time taken from the clock would differ.
  await new Promise((r) => setTimeout(r, 1100));
  const second = await build(f, DF, ['-t', 'id:2']);
  t.is(second.code, 0, second.stderr);
  const b = await readImage(f.root, 'id:2');
  t.is(b.manifest.config.digest, a.manifest.config.digest);
  t.is(b.config.created, a.config.created);

  await writeFile(join(f.context, 'app.txt'), 'v2\n');
  const third = await build(f, DF, ['-t', 'id:3']);
  t.is(third.code, 0, third.stderr);
  const c = await readImage(f.root, 'id:3');
  t.not(c.manifest.config.digest, a.manifest.config.digest);
  t.true(Date.parse(c.config.created ?? '') > Date.parse(a.config.created ?? ''));
});
