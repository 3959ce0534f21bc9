import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli } from '../cli/run-cli.js';
import { testSerialIf } from '../helpers/capability.js';
import { build, buildMissing, makeFixture, stepsOf } from './build-helpers.js';

const missing = await buildMissing();
const DOCKERFILE = 'FROM busybox\nRUN echo 1 > /f1\nRUN echo 2 > /f2\nRUN echo 3 > /f3\n';

testSerialIf(missing, 'tsbuild build: fails with STORE_IO when the cache records cannot be written (they are written while the next steps run) and works again once they can', async (t) => {
  const f = await makeFixture(t);
  // A file where the records' directory belongs: every record write fails.
  await writeFile(join(f.root, 'cache', 'build'), 'not a directory');
  const r = await build(f, DOCKERFILE);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /STORE_IO: cannot write cache record/);
  const fsck = await cli(['--root', f.root, 'fsck']);
  t.is(fsck.code, 0, fsck.stdout + fsck.stderr);
  await rm(join(f.root, 'cache', 'build'));
  const ok = await build(f, DOCKERFILE);
  t.is(ok.code, 0, ok.stderr);
  const again = await build(f, DOCKERFILE);
  t.is(again.code, 0, again.stderr);
  t.deepEqual(stepsOf(again.events).started.filter((n) => n.includes('RUN')), [], 'the records written by the second build make the third a full hit');
});
