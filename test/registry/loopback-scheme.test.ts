import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { MediaType, parseReference, type Descriptor } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { hasExplicitPort, HttpRegistryClient, isLoopbackHost, pullImage, pushImage } from '../../src/registry/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

// A registry on a loopback address may speak plain HTTP: tsbuild asks it over HTTP first, so a no-op
// push or pull of a local registry sets up no TLS (~40 ms of CPU); a TLS registry there still works.

const missing = await registryMissing();
const amd64 = { os: 'linux', architecture: 'amd64' };

/** A TCP forwarder to `target` (host:port) that records the first byte of each connection (0x16: a TLS handshake). */
async function startForwarder(t: ExecutionContext, target: string): Promise<{ host: string; firstBytes: number[] }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const firstBytes: number[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    const upstream = connect(port, host);
    sockets.add(upstream);
    client.once('data', (chunk: Buffer) => firstBytes.push(chunk[0] as number));
    client.pipe(upstream).pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return { host: `127.0.0.1:${address.port}`, firstBytes };
}

async function makeImage(store: Store): Promise<Descriptor> {
  const l = await store.blobs.putBytes(randomBytes(16 * 1024));
  const c = await store.blobs.putBytes(serializeDocument(addLayer(createEmptyConfig(amd64, '2024-01-01T00:00:00Z'), l.digest)));
  const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, [{ mediaType: MediaType.ociLayerGzip, digest: l.digest, size: l.size }])));
  return { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
}

const TLS_HANDSHAKE = 0x16;

test('isLoopbackHost: localhost, 127.0.0.0/8 and ::1, with or without port; nothing else', (t) => {
  for (const h of ['localhost', 'localhost:5000', 'LOCALHOST:5000', '127.0.0.1', '127.1.2.3:443', '[::1]:5000', '[::1]']) t.true(isLoopbackHost(h), h);
  for (const h of ['registry.example', '10.0.0.1:5000', '128.0.0.1', 'localhost.example:5000', '[::2]:5000']) t.false(isLoopbackHost(h), h);
});

test('hasExplicitPort: only an address naming its port is probed over plain HTTP first (without one, HTTP and HTTPS reach different servers)', (t) => {
  for (const h of ['localhost:5000', '127.0.0.1:80', '[::1]:5000']) t.true(hasExplicitPort(h), h);
  for (const h of ['localhost', '127.0.0.1', '[::1]', 'a:b:c']) t.false(hasExplicitPort(h), h);
});

testIf(missing, 'registry: a plain-HTTP registry on a loopback address is spoken to without any TLS attempt (push, no-op push, pull)', async (t) => {
  const reg = await startRegistry(t);
  const fwd = await startForwarder(t, reg.host);
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const manifest = await makeImage(src);
  const ref = parseReference(`${fwd.host}/team/img:v1`);
  for (let i = 0; i < 2; i++) {
    // A fresh client each time, as each CLI command has (the scheme is probed once per client).
    const c = new HttpRegistryClient({ retryBaseMs: 5 });
    t.teardown(() => c.close());
    await pushImage(c, src, manifest, ref);
  }
  const c = new HttpRegistryClient({ retryBaseMs: 5 });
  t.teardown(() => c.close());
  const pulled = await pullImage(c, await openStore(join(dir, 'dst')), ref, { platform: amd64 });
  t.is(pulled.manifest.digest, manifest.digest);
  t.true(fwd.firstBytes.length >= 3);
  t.false(fwd.firstBytes.includes(TLS_HANDSHAKE), 'no connection began a TLS handshake');
});

testIf(missing, 'registry: a TLS registry on a loopback address is still used over HTTPS (its answer to the plain-HTTP probe is a 400)', async (t) => {
  const reg = await startRegistry(t, { auth: 'basic', users: { alice: { password: 'pw-loopback-1' } } });
  const fwd = await startForwarder(t, reg.host);
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const manifest = await makeImage(src);
  const c = new HttpRegistryClient({ retryBaseMs: 5, caFiles: [reg.caFile as string], credentials: async () => ({ username: 'alice', password: 'pw-loopback-1' }) });
  t.teardown(() => c.close());
  await pushImage(c, src, manifest, parseReference(`${fwd.host}/team/img:v1`));
  // The plain-HTTP probe ('G' of GET), then TLS.
  t.is(fwd.firstBytes[0], 'G'.charCodeAt(0));
  t.true(fwd.firstBytes.slice(1).length > 0 && fwd.firstBytes.slice(1).every((b) => b === TLS_HANDSHAKE), String(fwd.firstBytes));
});

testIf(missing, 'registry: a scheme probe ended by the caller\'s signal is not remembered: the next pull of the same client probes again and works', async (t) => {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const src = await openStore(join(dir, 'src'));
  const manifest = await makeImage(src);
  const ref = parseReference(`${reg.host}/team/img:v1`);
  const pusher = new HttpRegistryClient({ retryBaseMs: 5 });
  t.teardown(() => pusher.close());
  await pushImage(pusher, src, manifest, ref);
  const c = new HttpRegistryClient({ retryBaseMs: 5 });
  t.teardown(() => c.close());
  const dst = await openStore(join(dir, 'dst'));
  await t.throwsAsync(pullImage(c, dst, ref, { platform: amd64, signal: AbortSignal.abort(new Error('stop')) }));
  const pulled = await pullImage(c, dst, ref, { platform: amd64 });
  t.is(pulled.manifest.digest, manifest.digest);
});
