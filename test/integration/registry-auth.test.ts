import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { cli } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const missing = (await registryMissing()) ?? (await busyboxMissing());
const PASSWORD = 'S3cret-pa55word!';

testIf(missing, 'login/push/pull: basic auth over TLS works with the right password and fails with REG_UNAUTHORIZED when wrong', async (t) => {
  const reg = await startRegistry(t, { auth: 'basic', users: { alice: { password: PASSWORD } } });
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const env = { DOCKER_CONFIG: join(dir, 'docker'), HOME: dir };
  const tls = ['--tls-ca', reg.caFile as string];

  let r = await cli(['--root', root, 'push', ...tls, 'busybox', `${reg.host}/team/box:v1`], { env });
  t.is(r.code, 1);
  t.regex(r.stderr, /REG_UNAUTHORIZED/);

  r = await cli(['login', ...tls, '-u', 'alice', '--password-stdin', reg.host], { env, stdin: 'wrong-password\n' });
  t.is(r.code, 1);
  t.regex(r.stderr, /REG_UNAUTHORIZED/);
  await t.throwsAsync(stat(join(dir, 'docker', 'config.json')));

  r = await cli(['--debug', 'login', ...tls, '-u', 'alice', '--password-stdin', reg.host], { env, stdin: `${PASSWORD}\n` });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'Login Succeeded\n');
  const cfgPath = join(dir, 'docker', 'config.json');
  t.is((await stat(cfgPath)).mode & 0o777, 0o600);
  const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as { auths: Record<string, { auth: string }> };
  t.is(Buffer.from(cfg.auths[reg.host]?.auth ?? '', 'base64').toString(), `alice:${PASSWORD}`);

  const outputs: string[] = [r.stdout, r.stderr];
  r = await cli(['--root', root, '--debug', 'push', ...tls, 'busybox', `${reg.host}/team/box:v1`], { env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /v1: digest: sha256:[0-9a-f]{64} size: \d+/);
  t.regex(r.stderr, /debug: PUT https:\/\/127\.0\.0\.1/);
  outputs.push(r.stdout, r.stderr);
  r = await cli(['--root', join(dir, 'other'), '--debug', 'pull', ...tls, `${reg.host}/team/box:v1`], { env });
  t.is(r.code, 0, r.stderr);
  outputs.push(r.stdout, r.stderr);
  // Without the CA the TLS error is clear.
  r = await cli(['--root', join(dir, 'other'), 'pull', `${reg.host}/team/box:v1`], { env });
  t.is(r.code, 1);
  t.regex(r.stderr, /REG_TLS/);

  // SECURITY: neither the password nor its base64 forms appear in any output, even with --debug.
  const all = outputs.join('\n');
  t.false(all.includes(PASSWORD));
  t.false(all.includes(Buffer.from(`alice:${PASSWORD}`).toString('base64')));
  t.false(/authorization:/i.test(all));

  r = await cli(['logout', reg.host], { env });
  t.is(r.stdout, `Removing login credentials for ${reg.host}\n`);
  t.deepEqual((JSON.parse(await readFile(cfgPath, 'utf8')) as { auths: object }).auths, {});
  r = await cli(['--root', join(dir, 'third'), 'pull', ...tls, `${reg.host}/team/box:v1`], { env });
  t.regex(r.stderr, /REG_UNAUTHORIZED/);
});

testIf(missing, 'login/push/pull: bearer tokens carry the granted scopes and a push without the push scope fails with REG_UNAUTHORIZED', async (t) => {
  const reg = await startRegistry(t, {
    auth: 'token',
    users: {
      alice: { password: PASSWORD },
      reader: { password: 'reader-pw', grants: () => ['pull'] },
    },
    anonymousGrants: (repo) => (repo.startsWith('public/') ? ['pull'] : []),
  });
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const aliceEnv = { DOCKER_CONFIG: join(dir, 'alice'), HOME: dir };
  const readerEnv = { DOCKER_CONFIG: join(dir, 'reader'), HOME: dir };
  const anonEnv = { DOCKER_CONFIG: join(dir, 'anon'), HOME: dir };

  let r = await cli(['login', '-u', 'alice', '--password-stdin', reg.host], { env: aliceEnv, stdin: 'nope' });
  t.is(r.code, 1);
  t.regex(r.stderr, /REG_UNAUTHORIZED/);
  t.is((await cli(['login', '-u', 'alice', '--password-stdin', reg.host], { env: aliceEnv, stdin: PASSWORD })).code, 0);
  t.is((await cli(['login', '-u', 'reader', '-p', 'reader-pw', reg.host], { env: readerEnv })).code, 0);

  const outputs: string[] = [];
  r = await cli(['--root', root, '--debug', 'push', 'busybox', `${reg.host}/team/box:v1`], { env: aliceEnv });
  t.is(r.code, 0, r.stderr);
  outputs.push(r.stdout, r.stderr);
  r = await cli(['--root', root, 'push', 'busybox', `${reg.host}/public/box:v1`], { env: aliceEnv });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /Mounted from team\/box/);
  const pushReq = reg.tokenRequests.find((q) => q.account === 'alice' && q.scopes.includes('repository:team/box:pull,push'));
  t.truthy(pushReq);
  t.deepEqual(pushReq?.granted, ['repository:team/box:pull,push']);
  const mountReq = reg.tokenRequests.find((q) => q.scopes.includes('repository:public/box:pull,push') && q.scopes.includes('repository:team/box:pull'));
  t.truthy(mountReq, JSON.stringify(reg.tokenRequests));

  // The reader gets only pull: pushing is denied, pulling works.
  r = await cli(['--root', root, 'push', 'busybox', `${reg.host}/team/box:v2`], { env: readerEnv });
  t.is(r.code, 1);
  t.regex(r.stderr, /REG_UNAUTHORIZED: .*registry answered 401 \(UNAUTHORIZED: /, r.stderr);
  r = await cli(['--root', join(dir, 'r2'), '--debug', 'pull', `${reg.host}/team/box:v1`], { env: readerEnv });
  t.is(r.code, 0, r.stderr);
  outputs.push(r.stdout, r.stderr);
  // Anonymous: public/ is pullable, team/ is not.
  r = await cli(['--root', join(dir, 'r3'), 'pull', `${reg.host}/public/box:v1`], { env: anonEnv });
  t.is(r.code, 0, r.stderr);
  r = await cli(['--root', join(dir, 'r3'), 'pull', `${reg.host}/team/box:v1`], { env: anonEnv });
  t.is(r.code, 1);
  t.regex(r.stderr, /REG_UNAUTHORIZED/);

  // SECURITY: no password and no issued token appears in any output.
  const all = outputs.join('\n');
  t.false(all.includes(PASSWORD));
  t.false(/eyJ[A-Za-z0-9_-]{10,}/.test(all), 'a JWT leaked');
});
