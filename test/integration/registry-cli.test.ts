import test from 'ava';
import { join } from 'node:path';
import { cli } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { freePort, registryMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const missing = (await registryMissing()) ?? (await busyboxMissing());

test('pull: an unreachable registry fails with REG_UNREACHABLE naming the host', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const r = await cli(['--root', dir, 'pull', `127.0.0.1:${port}/a/b:c`]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`REG_UNREACHABLE: .*cannot reach registry 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
});

test('pull/push/login: bad arguments fail with clear errors before any network access', async (t) => {
  const dir = await tempDir(t);
  const env = { DOCKER_CONFIG: join(dir, 'd') };
  let r = await cli(['--root', dir, 'pull', 'lib/Upper']);
  t.regex(r.stderr, /CORE_BAD_REFERENCE: invalid reference "lib\/Upper"/);
  r = await cli(['--root', dir, 'pull']);
  t.is(r.code, 125);
  r = await cli(['--root', dir, 'pull', '--platform', 'linux//x', 'busybox']);
  t.regex(r.stderr, /IMAGE_BAD_PLATFORM/);
  r = await cli(['--root', dir, 'push', 'nothing-here:1']);
  t.regex(r.stderr, /STORE_IMAGE_NOT_FOUND/);
  r = await cli(['login', '--password-stdin', 'r.example'], { env });
  t.regex(r.stderr, /must provide --username with --password-stdin/);
  r = await cli(['login', 'r.example'], { env });
  t.regex(r.stderr, /no stored credentials for r\.example/);
  r = await cli(['login', '-u', 'x', '-p', 'y', '--password-stdin', 'r.example'], { env });
  t.regex(r.stderr, /mutually exclusive/);
  r = await cli(['logout', 'r.example'], { env });
  t.is(r.stdout, 'Not logged in to r.example\n');
  r = await cli(['pull', '--help']);
  t.regex(r.stdout, /--platform OS\/ARCH\[\/VARIANT\]/);
  t.regex(r.stdout, /--insecure-registry HOST/);
});

testIf(missing, 'pull: inspect shows RepoDigests and a repeated pull is up to date when pulling from a registry', async (t) => {
  const reg = await startRegistry(t);
  const dir = await tempDir(t);
  await makeBusyboxImage(dir, join(dir, 'src'));
  let r = await cli(['--root', join(dir, 'src'), 'push', '-q', 'busybox', `${reg.host}/lib/busybox:1.0`]);
  t.is(r.code, 0, r.stderr);
  const digest = r.stdout.trim();
  t.regex(digest, /^sha256:[0-9a-f]{64}$/);
  const root = join(dir, 'dst');
  r = await cli(['--root', root, 'pull', `${reg.host}/lib/busybox:1.0`]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.split('\n')[0], `1.0: Pulling from ${reg.host}/lib/busybox`);
  t.regex(r.stdout, /[0-9a-f]{12}: Pull complete\n/);
  t.regex(r.stdout, new RegExp(`Digest: ${digest}\nStatus: Downloaded newer image for ${reg.host}/lib/busybox:1.0\n${reg.host}/lib/busybox:1.0\n$`));
  r = await cli(['--root', root, 'pull', `${reg.host}/lib/busybox:1.0`]);
  t.regex(r.stdout, /Already exists/);
  t.regex(r.stdout, /Status: Image is up to date/);
  r = await cli(['--root', root, 'inspect', '-f', '{{json .RepoDigests}} {{json .RepoTags}}', `${reg.host}/lib/busybox:1.0`]);
  t.is(r.stdout, `["${reg.host}/lib/busybox@${digest}"] ["${reg.host}/lib/busybox:1.0"]\n`);
  // By digest.
  r = await cli(['--root', join(dir, 'bydigest'), 'pull', '-q', `${reg.host}/lib/busybox@${digest}`]);
  t.is(r.stdout, `${reg.host}/lib/busybox@${digest}\n`);
  r = await cli(['--root', root, 'pull', `${reg.host}/lib/busybox:nope`]);
  t.is(r.code, 1);
  t.regex(r.stderr, /REG_MANIFEST_UNKNOWN: fetching manifest nope of .*: registry answered 404 \(MANIFEST_UNKNOWN: manifest unknown\)/);
});
