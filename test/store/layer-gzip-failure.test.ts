import test from 'ava';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { isTsbuildError, MediaType } from '../../src/core/index.js';
import { compressedLayer, openStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

// This file changes PATH for its one test (so it is alone in its worker process): a `pigz` that
// dies from a signal before writing anything stands first on PATH.
test('compressedLayer: a pigz killed by a signal fails the put and stores no (empty) blob', async (t) => {
  const dir = await tempDir(t);
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'pigz'), '#!/bin/sh\nkill -9 $$\n');
  await chmod(join(bin, 'pigz'), 0o755);
  const store = await openStore(join(dir, 'root'));
  const pack = tar.pack();
  pack.entry({ name: 'f', mtime: new Date(0) }, 'data\n');
  pack.finalize();
  const layer = await store.blobs.put(Readable.from(pack));
  const before = (await readdir(join(dir, 'root', 'blobs', 'sha256'))).sort();
  const path = process.env.PATH;
  process.env.PATH = `${bin}:${path ?? ''}`;
  try {
    const err = await t.throwsAsync(compressedLayer(store, { mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }));
    t.true(isTsbuildError(err, 'STORE_IO'), String(err));
    t.regex(err?.message ?? '', /pigz was killed by SIGKILL/);
  } finally {
    process.env.PATH = path;
  }
  t.deepEqual((await readdir(join(dir, 'root', 'blobs', 'sha256'))).sort(), before, 'no blob was added');
});
