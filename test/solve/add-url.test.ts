import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { downloadUrl } from '../../src/solve/ops/add-url.js';
import { makeTls } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

async function serve(t: ExecutionContext, handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const loc = { file: 'Dockerfile', line: 7 };

test('downloadUrl: streams a large body to a file and digests it when the server answers 200', async (t) => {
  const dir = await tempDir(t);
  const body = Buffer.alloc(5 * 1024 * 1024, 'abc');
  const base = await serve(t, (_req, res) => res.writeHead(200).end(body));
  const d = await downloadUrl(`${base}/big.bin`, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 42, loc });
  t.teardown(d.cleanup);
  const entry = d.source.entries[0]!;
  t.is(d.source.name, 'big.bin');
  t.true((await readFile(entry.hostPath)).equals(body));
  t.is(d.digest as string, `sha256:${createHash('sha256').update(body).digest('hex')}`);
  t.is(entry.mtime, 42, 'no Last-Modified: the fallback time');
  t.is(entry.mode, 0o600);
  await d.cleanup();
  t.false(existsSync(entry.hostPath));
});

test('downloadUrl: verifies sha512 checksums and fails with SOLVE_ADD_CHECKSUM and the location on a mismatch', async (t) => {
  const dir = await tempDir(t);
  const base = await serve(t, (_req, res) => res.writeHead(200).end('payload'));
  const good = `sha512:${createHash('sha512').update('payload').digest('hex')}`;
  const d = await downloadUrl(`${base}/p`, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0, checksum: good });
  await d.cleanup();
  const bad = `sha256:${'0'.repeat(64)}`;
  const err = await t.throwsAsync(downloadUrl(`${base}/p`, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0, checksum: bad, loc }), { code: 'SOLVE_ADD_CHECKSUM' } as never);
  t.deepEqual((err as unknown as { loc: unknown }).loc, loc);
  t.regex(err!.message, /checksum mismatch: expected sha256:0{64}, got sha256:[0-9a-f]{64}/);
  t.deepEqual(await readdir(dir), [], 'nothing is left behind');
});

test('downloadUrl: fails with SOLVE_ADD_DOWNLOAD naming the URL when the server is down, answers an error or redirects badly', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'x'));
  const base = await serve(t, (_req, res) => res.writeHead(500, 'Boom').end());
  await t.throwsAsync(downloadUrl(`${base}/f`, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0 }), { code: 'SOLVE_ADD_DOWNLOAD', message: /\/f: download failed: HTTP 500 Boom/ });
  await t.throwsAsync(downloadUrl('http://127.0.0.1:1/f', { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0 }), { code: 'SOLVE_ADD_DOWNLOAD', message: /ECONNREFUSED/ });
  const redirecting = await serve(t, (_req, res) => res.writeHead(302, { location: 'file:///etc/passwd' }).end());
  await t.throwsAsync(downloadUrl(`${redirecting}/f`, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0 }), { code: 'SOLVE_ADD_DOWNLOAD', message: /redirect to a file: URL refused/ });
  const looping = await serve(t, (_req, res) => res.writeHead(301, { location: '/again' }).end());
  await t.throwsAsync(downloadUrl(`${looping}/f`, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0 }), { code: 'SOLVE_ADD_DOWNLOAD', message: /more than 10 redirects/ });
  t.deepEqual(await readdir(dir), ['x']);
});

test('downloadUrl: over https, trusts the extra CA file (NODE_EXTRA_CA_CERTS, deferred) beside Node\'s roots, and fails without it', async (t) => {
  const dir = await tempDir(t);
  const tls = await makeTls(dir);
  const server = createHttpsServer({ cert: await readFile(tls.cert), key: await readFile(tls.key) }, (_req, res) => res.writeHead(200).end('secure'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/s.txt`;
  const d = await downloadUrl(url, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0, extraCaFile: tls.ca });
  t.teardown(d.cleanup);
  t.is(await readFile(d.source.entries[0]!.hostPath, 'utf8'), 'secure');
  await t.throwsAsync(downloadUrl(url, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0 }), { code: 'SOLVE_ADD_DOWNLOAD', message: /UNABLE_TO_VERIFY_LEAF_SIGNATURE|certificate/ });
  await t.throwsAsync(downloadUrl(url, { tmpDir: dir, signal: new AbortController().signal, fallbackMtime: 0, extraCaFile: join(dir, 'missing.pem') }), { code: 'SOLVE_ADD_DOWNLOAD', message: /UNABLE_TO_VERIFY_LEAF_SIGNATURE|certificate/ });
});
