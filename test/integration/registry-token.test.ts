import { join } from 'node:path';
import { parseReference } from '../../src/core/index.js';
import { HttpRegistryClient, pullImage } from '../../src/registry/index.js';
import { openStore } from '../../src/store/index.js';
import { cli } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const missing = (await registryMissing()) ?? (await busyboxMissing());
const platform = { os: 'linux', architecture: 'amd64' };

testIf(missing, 'bearer: a token the registry rejects is dropped and fetched again when the cached one has expired server-side', async (t) => {
  let shortNext = false;
  const reg = await startRegistry(t, {
    auth: 'token',
    users: { alice: { password: 'pw' } },
    // Once armed, the next token is valid for 2 s only, given the registry's 60 s leeway (while telling the client 300 s).
    expShift: () => {
      const shift = shortNext ? -358 : 0;
      shortNext = false;
      return shift;
    },
  });
  const dir = await tempDir(t);
  await makeBusyboxImage(dir, join(dir, 'src'));
  const env = { DOCKER_CONFIG: join(dir, 'docker') };
  t.is((await cli(['login', '-u', 'alice', '-p', 'pw', reg.host], { env })).code, 0);
  t.is((await cli(['--root', join(dir, 'src'), 'push', 'busybox', `${reg.host}/t/box:1`], { env })).code, 0);
  const before = reg.tokenRequests.length;
  shortNext = true;
  const client = new HttpRegistryClient({ credentials: async () => ({ username: 'alice', password: 'pw' }) });
  t.teardown(() => client.close());
  await client.getManifest({ host: reg.host, path: 't/box' }, '1');
  t.is(reg.tokenRequests.length - before, 1);
  await new Promise((r) => setTimeout(r, 3100));
  const store = await openStore(join(dir, 'dst'));
  await pullImage(client, store, parseReference(`${reg.host}/t/box:1`), { platform });
  const pulls = reg.tokenRequests.slice(before);
  // The short token, then its replacement after the registry rejected it; the replacement is then reused.
  t.is(pulls.length, 2, JSON.stringify(pulls));
  t.true(pulls.every((p) => p.scopes.includes('repository:t/box:pull')));
});

testIf(missing, 'bearer: a token is reused for its scope and another scope gets its own when one client makes many requests', async (t) => {
  const reg = await startRegistry(t, { auth: 'token', users: { alice: { password: 'pw' } } });
  const dir = await tempDir(t);
  await makeBusyboxImage(dir, join(dir, 'src'));
  const env = { DOCKER_CONFIG: join(dir, 'docker') };
  t.is((await cli(['login', '-u', 'alice', '-p', 'pw', reg.host], { env })).code, 0);
  t.is((await cli(['--root', join(dir, 'src'), 'push', 'busybox', `${reg.host}/t/box:1`], { env })).code, 0);
  const client = new HttpRegistryClient({ credentials: async () => ({ username: 'alice', password: 'pw' }) });
  t.teardown(() => client.close());
  const before = reg.tokenRequests.length;
  await pullImage(client, await openStore(join(dir, 'a')), parseReference(`${reg.host}/t/box:1`), { platform });
  t.is(reg.tokenRequests.length - before, 1);
  await pullImage(client, await openStore(join(dir, 'b')), parseReference(`${reg.host}/t/box:1`), { platform });
  t.is(reg.tokenRequests.length - before, 1);
  // Another scope needs another token.
  await t.throwsAsync(pullImage(client, await openStore(join(dir, 'c')), parseReference(`${reg.host}/t/other:1`), { platform }), { message: /MANIFEST_UNKNOWN|NAME_UNKNOWN/ });
  t.is(reg.tokenRequests.length - before, 2);
  t.deepEqual(reg.tokenRequests.at(-1)?.scopes, ['repository:t/other:pull']);
});
