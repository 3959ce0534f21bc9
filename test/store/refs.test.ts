import test from 'ava';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { MediaType, sha256Of, type Descriptor } from '../../src/core/index.js';
import { acquireLock, openStore, REF_NAME_ANNOTATION } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

const desc = (s: string): Descriptor => ({ mediaType: MediaType.ociManifest, digest: sha256Of(s), size: s.length });

test('refs: set names an entry with the ref.name annotation and replaces the previous target', async (t) => {
  const store = await openStore(await tempDir(t));
  t.is(await store.refs.set('docker.io/library/a:latest', desc('1')), undefined);
  t.is(await store.refs.set('docker.io/library/a:latest', desc('2')), sha256Of('1'));
  const index = JSON.parse(await readFile(store.paths.index, 'utf8')) as { manifests: Descriptor[] };
  t.is(index.manifests.length, 1);
  t.is(index.manifests[0]?.annotations?.[REF_NAME_ANNOTATION], 'docker.io/library/a:latest');
  t.is(index.manifests[0]?.digest, sha256Of('2'));
  t.deepEqual(await readdir(store.paths.tmp), []);
});

test('refs: an untagged entry is replaced when the digest gets a name', async (t) => {
  const store = await openStore(await tempDir(t));
  await store.refs.addUntagged(desc('1'));
  await store.refs.addUntagged(desc('1'));
  t.is((await store.refs.list()).length, 1);
  await store.refs.set('docker.io/library/x:1', desc('1'));
  t.deepEqual((await store.refs.list()).map((e) => e.name), ['docker.io/library/x:1']);
  const removed = await store.refs.remove((e) => e.name === 'docker.io/library/x:1');
  t.is(removed.length, 1);
  t.deepEqual(await store.refs.list(), []);
});

test('refs: concurrent updates from several processes all land when they race for the lock', async (t) => {
  const root = await tempDir(t);
  await openStore(root);
  const script = `
    import { openStore } from './src/store/index.ts';
    const s = await openStore(process.argv[1]);
    for (let i = 0; i < 10; i++) {
      await s.refs.set('docker.io/library/p' + process.argv[2] + ':' + i, { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:' + '0'.repeat(63) + i, size: 1 });
    }`;
  const run = (n: number): Promise<void> => new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, root, String(n)]);
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(err))));
  });
  await Promise.all([run(1), run(2), run(3)]);
  const store = await openStore(root);
  t.is((await store.refs.list()).length, 30);
});

test('lock: a stale lock of a dead process is broken when acquiring', async (t) => {
  const dir = await tempDir(t);
  const path = `${dir}/l.lock`;
  const { hostname } = await import('node:os');
  // pid 2^22+1 is above the default pid_max and cannot be alive.
  await writeFile(path, `4194305@${hostname()} deadbeef\n`);
  const lock = await acquireLock(path, { timeoutMs: 2000 });
  t.regex(await readFile(path, 'utf8'), new RegExp(`^${process.pid}@`));
  await lock.release();
  await t.throwsAsync(readFile(path));
});

test('lock: a live lock makes a second acquirer time out with STORE_LOCKED', async (t) => {
  const dir = await tempDir(t);
  const path = `${dir}/l.lock`;
  const first = await acquireLock(path);
  await t.throwsAsync(acquireLock(path, { timeoutMs: 100 }), { message: /timed out/ });
  await first.release();
  const second = await acquireLock(path, { timeoutMs: 100 });
  await second.release();
  t.pass();
});
