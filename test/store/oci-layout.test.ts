import test from 'ava';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../../src/core/index.js';
import { initLayout, OCI_LAYOUT_FILE } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

test('initLayout: creates the layout of a new store', async (t) => {
  const root = await tempDir(t);
  const p = await initLayout(root);
  t.deepEqual((await readdir(root)).sort(), ['blobs', 'cache', 'containers', 'index.json', 'oci-layout', 'snapshots', 'tmp']);
  t.is(await readFile(join(root, 'oci-layout'), 'utf8'), OCI_LAYOUT_FILE);
  t.is(JSON.parse(await readFile(p.index, 'utf8')).schemaVersion, 2);
  t.deepEqual(await readdir(p.tmp), []);
});

test('initLayout: a complete store is opened without waiting for the thread pool (before an immediate runs)', async (t) => {
  const root = await tempDir(t);
  await initLayout(root);
  await writeFile(join(root, 'index.json'), '{"schemaVersion":2,"manifests":[{"x":1}]}\n');
  let opened = false;
  const done = initLayout(root).then(() => {
    opened = true;
  });
  // The creating path takes seven thread-pool round trips in a row: it cannot be done before the loop's check phase.
  const beforeImmediate = await new Promise<boolean>((resolve) => setImmediate(() => resolve(opened)));
  await done;
  t.true(beforeImmediate);
  // Nothing was rewritten.
  t.is(await readFile(join(root, 'index.json'), 'utf8'), '{"schemaVersion":2,"manifests":[{"x":1}]}\n');
});

test('initLayout: a store missing one part gets it back; a file where a directory belongs is a STORE_IO error', async (t) => {
  const root = await tempDir(t);
  const p = await initLayout(root);
  await rm(p.containers, { recursive: true });
  await rm(join(root, 'oci-layout'));
  await initLayout(root);
  t.deepEqual((await readdir(root)).sort(), ['blobs', 'cache', 'containers', 'index.json', 'oci-layout', 'snapshots', 'tmp']);
  await rm(p.cache, { recursive: true });
  await writeFile(p.cache, 'not a directory');
  const err = await t.throwsAsync(initLayout(root));
  t.true(err instanceof TsbuildError);
  t.is((err as TsbuildError).code, 'STORE_IO');
});
