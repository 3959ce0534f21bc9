import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { MediaType, parseReference, type Descriptor, type ImageManifest } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { HttpRegistryClient, pullImage, pushImage, type TransportOptions } from '../../src/registry/index.js';
import { checkStore, openStore, type Store } from '../../src/store/index.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startProxy, startRegistry, type ProxyExchange, type TestRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const missing = await registryMissing();
const platform = { os: 'linux', architecture: 'amd64' };

interface Setup {
  readonly reg: TestRegistry;
  readonly dir: string;
  readonly manifest: ImageManifest;
  readonly layer: Descriptor;
}

/** A registry holding `team/img:v1`: one incompressible 1 MiB layer. */
async function setup(t: ExecutionContext): Promise<Setup> {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  const store = await openStore(join(dir, 'src'));
  const l = await store.blobs.put(Readable.from([randomBytes(1 << 20)]));
  const config = addLayer(createEmptyConfig(platform, '2024-01-01T00:00:00Z'), l.digest);
  const c = await store.blobs.putBytes(serializeDocument(config));
  const layer: Descriptor = { mediaType: MediaType.ociLayerGzip, digest: l.digest, size: l.size };
  const manifest = createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, [layer]);
  const m = await store.blobs.putBytes(serializeDocument(manifest));
  const client = new HttpRegistryClient();
  t.teardown(() => client.close());
  await pushImage(client, store, { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size }, parseReference(`${reg.host}/team/img:v1`));
  return { reg, dir, manifest, layer };
}

/** Pulls `team/img:v1` through a proxy with `handle` into a fresh store. */
async function pullVia(t: ExecutionContext, s: Setup, handle: (x: ProxyExchange) => Promise<void> | void, options: TransportOptions = {}): Promise<{ store: Store; result: Promise<unknown>; proxy: Awaited<ReturnType<typeof startProxy>> }> {
  const proxy = await startProxy(t, s.reg.url, handle);
  const store = await openStore(join(s.dir, `dst-${randomBytes(4).toString('hex')}`));
  const client = new HttpRegistryClient({ retryBaseMs: 5, ...options });
  t.teardown(() => client.close());
  return { store, proxy, result: pullImage(client, store, parseReference(`${proxy.host}/team/img:v1`), { platform }) };
}

const isBlob = (x: ProxyExchange, s: Setup): boolean => x.req.method === 'GET' && x.key.endsWith(`/blobs/${s.layer.digest}`);

testIf(missing, 'pull: a blob with the wrong content fails with REG_DIGEST_MISMATCH and stores nothing when the registry lies', async (t) => {
  const s = await setup(t);
  const { store, result } = await pullVia(t, s, (x) => x.forward(isBlob(x, s) ? { transform: (b) => Buffer.from(b.map((v, i) => (i === 100 ? v ^ 1 : v))) } : {}));
  const err = await t.throwsAsync(result);
  t.is((err as { code?: string }).code, 'REG_DIGEST_MISMATCH');
  t.false(await store.blobs.has(s.layer.digest));
  t.is(await store.refs.get(`127.0.0.1:${''}`), undefined);
  t.is((await store.refs.list()).length, 0);
  t.deepEqual((await checkStore(store)).problems, []);
});

testIf(missing, 'pull: a connection cut mid-blob resumes with a Range request when the server drops it', async (t) => {
  const s = await setup(t);
  const { store, result, proxy } = await pullVia(t, s, (x) => x.forward(isBlob(x, s) && x.seen === 0 ? { cutAfter: 300_000 } : {}));
  await result;
  t.true(await store.blobs.has(s.layer.digest));
  const ranged = proxy.requests.filter((r) => r.url.endsWith(s.layer.digest) && r.headers.range !== undefined);
  // Bytes in flight when the socket died are lost: the resume starts at what actually arrived.
  t.is(ranged.length, 1);
  const from = Number(/^bytes=(\d+)-$/.exec(String(ranged[0]?.headers.range))?.[1]);
  t.true(from > 0 && from <= 300_000, String(from));
  t.deepEqual((await checkStore(store)).problems, []);
});

testIf(missing, 'pull: three 500s then success are retried when the registry is flaky', async (t) => {
  const s = await setup(t);
  const { store, result, proxy } = await pullVia(t, s, (x) => {
    if (x.key.endsWith('/manifests/v1') && x.seen < 3) {
      x.res.writeHead(500, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNKNOWN","message":"boom"}]}');
      return;
    }
    return x.forward();
  });
  await result;
  t.is(proxy.requests.filter((r) => r.url.endsWith('/manifests/v1')).length, 4);
  t.true(await store.blobs.has(s.layer.digest));
});

testIf(missing, 'pull: a 429 with Retry-After is waited out and retried when rate limited', async (t) => {
  const s = await setup(t);
  const { result, proxy } = await pullVia(t, s, (x) => {
    if (isBlob(x, s) && x.seen === 0) {
      x.res.writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' }).end('{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}');
      return;
    }
    return x.forward();
  });
  await result;
  t.is(proxy.requests.filter((r) => r.url.endsWith(s.layer.digest)).length, 2);
});

testIf(missing, 'pull: persistent 500s end in REG_UNKNOWN quoting the registry when retries run out', async (t) => {
  const s = await setup(t);
  const { result } = await pullVia(t, s, (x) => {
    x.res.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNKNOWN","message":"storage offline"}]}');
  }, { retries: 2 });
  const err = await t.throwsAsync(result);
  t.is((err as { code?: string }).code, 'REG_UNKNOWN');
  t.regex((err as Error).message, /503 \(UNKNOWN: storage offline\)/);
});

testIf(missing, 'pull: a 10 MB manifest is rejected with REG_MANIFEST_TOO_LARGE', async (t) => {
  const s = await setup(t);
  const { result } = await pullVia(t, s, (x) => {
    if (x.key.endsWith('/manifests/v1')) {
      x.res.writeHead(200, { 'content-type': MediaType.ociManifest });
      x.res.end(Buffer.alloc(10 * 1024 * 1024, 0x20));
      return;
    }
    return x.forward();
  });
  const err = await t.throwsAsync(result);
  t.is((err as { code?: string }).code, 'REG_MANIFEST_TOO_LARGE');
});

testIf(missing, 'pull: a redirect loop fails with REG_TOO_MANY_REDIRECTS', async (t) => {
  const s = await setup(t);
  const { result } = await pullVia(t, s, (x) => {
    if (isBlob(x, s)) {
      x.res.writeHead(307, { location: `/v2/team/img/blobs/${s.layer.digest}?hop=${x.seen}` }).end();
      return;
    }
    return x.forward();
  });
  const err = await t.throwsAsync(result);
  t.is((err as { code?: string }).code, 'REG_TOO_MANY_REDIRECTS');
});

testIf(missing, 'pull: a blob redirect to another host is followed without the Authorization header', async (t) => {
  const s = await setup(t);
  const seenAuth: (string | undefined)[] = [];
  // The "storage" host: serves the blob bytes it fetches from the registry itself.
  const storage = createServer((req, res) => {
    seenAuth.push(req.headers.authorization);
    void fetch(`${s.reg.url}/v2/team/img/blobs/${s.layer.digest}`).then(async (r) => {
      res.writeHead(200, { 'content-length': String(s.layer.size) }).end(Buffer.from(await r.arrayBuffer()));
    });
  });
  await new Promise<void>((resolve) => storage.listen(0, '127.0.0.2', resolve));
  t.teardown(() => new Promise<void>((resolve) => storage.close(() => resolve())));
  const port = (storage.address() as { port: number }).port;
  let authedBlobRequests = 0;
  const { store, result } = await pullVia(t, s, (x) => {
    // The registry front demands Basic auth.
    if (x.req.headers.authorization !== 'Basic ' + Buffer.from('bob:pw').toString('base64')) {
      x.res.writeHead(401, { 'www-authenticate': 'Basic realm="test"', 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"login"}]}');
      return;
    }
    delete x.req.headers.authorization;
    if (isBlob(x, s)) {
      authedBlobRequests++;
      x.res.writeHead(307, { location: `http://127.0.0.2:${port}/storage/${s.layer.digest}?sig=abc` }).end();
      return;
    }
    return x.forward();
  }, { credentials: async () => ({ username: 'bob', password: 'pw' }) });
  await result;
  t.true(await store.blobs.has(s.layer.digest));
  t.deepEqual(seenAuth, [undefined]);
  t.is(authedBlobRequests, 1);
});

testIf(missing, 'pull: a body that goes silent fails with REG_TIMEOUT when the idle timeout passes', async (t) => {
  const s = await setup(t);
  const { store, result } = await pullVia(t, s, (x) => x.forward(isBlob(x, s) ? { stallAfter: 1000 } : {}), { idleTimeoutMs: 200 });
  const err = await t.throwsAsync(result);
  t.is((err as { code?: string }).code, 'REG_TIMEOUT');
  t.false(await store.blobs.has(s.layer.digest));
  t.deepEqual((await checkStore(store)).problems, []);
});
