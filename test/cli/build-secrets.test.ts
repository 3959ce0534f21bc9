import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { isTsbuildError } from '../../src/core/index.js';
import { loadSecrets, MAX_SECRET_BYTES, parseSecretFlag, parseSshFlag, resolveSshAgents } from '../../src/cli/build-secrets.js';
import { tempDir } from '../helpers/tmp.js';

test('parseSecretFlag: src= and source= name a file, env= a variable, type=env reads the variable named by src', (t) => {
  t.deepEqual(parseSecretFlag('id=a,src=/x/f'), { id: 'a', source: { kind: 'file', path: '/x/f' } });
  t.deepEqual(parseSecretFlag('id=a,source=rel'), { id: 'a', source: { kind: 'file', path: 'rel' } });
  t.deepEqual(parseSecretFlag('id=a,env=TOKEN'), { id: 'a', source: { kind: 'env', name: 'TOKEN' } });
  t.deepEqual(parseSecretFlag('type=env,id=a,src=TOKEN'), { id: 'a', source: { kind: 'env', name: 'TOKEN' } });
  t.deepEqual(parseSecretFlag('type=env,id=a'), { id: 'a', source: { kind: 'env', name: 'a' } });
  t.deepEqual(parseSecretFlag('type=file,id=a'), { id: 'a', source: { kind: 'file', path: 'a' } });
});

test('parseSecretFlag: id alone is the variable of that name or else the file of that name', (t) => {
  t.deepEqual(parseSecretFlag('id=npmrc'), { id: 'npmrc', source: { kind: 'auto', name: 'npmrc' } });
});

test('parseSecretFlag: fails with CLI_BAD_VALUE on a missing id, an unknown key, a bare word or a bad type', (t) => {
  for (const bad of ['src=/f', 'id=', 'id=a,color=red', 'id=a,oops', 'id=a,type=socket']) {
    const e = t.throws(() => parseSecretFlag(bad), { message: /--secret/ });
    t.true(isTsbuildError(e, 'CLI_BAD_VALUE'), bad);
    t.is((e as { exitCode?: number }).exitCode, 125);
  }
});

test('loadSecrets: reads files relative to the working directory and variables from the environment when given', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'f.txt'), 'file-secret');
  await writeFile(join(dir, 'auto'), 'auto-file');
  const m = loadSecrets(['id=a,src=f.txt', 'id=b,env=B_VAR', 'id=auto', 'id=AUTO_VAR'], { B_VAR: 'env-secret', AUTO_VAR: 'auto-env' }, dir);
  t.is(m.get('a')?.toString(), 'file-secret');
  t.is(m.get('b')?.toString(), 'env-secret');
  t.is(m.get('auto')?.toString(), 'auto-file');
  t.is(m.get('AUTO_VAR')?.toString(), 'auto-env');
});

test('loadSecrets: names the id and the file or variable but never the content when a secret cannot be read', async (t) => {
  const dir = await tempDir(t);
  const e1 = t.throws(() => loadSecrets(['id=a,env=NOPE'], {}, dir));
  t.regex(e1.message, /secret "a": the environment variable NOPE is not set/);
  const e2 = t.throws(() => loadSecrets(['id=a,src=missing.txt'], {}, dir));
  t.regex(e2.message, /secret "a": cannot read .*missing\.txt: ENOENT/);
  const e3 = t.throws(() => loadSecrets(['id=a,src=.'], {}, dir));
  t.regex(e3.message, /is not a regular file/);
  await writeFile(join(dir, 'big'), Buffer.alloc(MAX_SECRET_BYTES + 1, 0x41));
  const e4 = t.throws(() => loadSecrets(['id=big,src=big'], {}, dir));
  t.regex(e4.message, /larger than 500 KiB/);
  t.false(e4.message.includes('AAAA'));
  const e5 = t.throws(() => loadSecrets(['id=x'], {}, dir));
  t.regex((e5 as { hint?: string }).hint ?? '', /neither a variable x nor a file/);
});

test('parseSshFlag: default, an id, and id=socket paths', (t) => {
  t.deepEqual(parseSshFlag('default'), { id: 'default', paths: [] });
  t.deepEqual(parseSshFlag('gh=/run/agent.sock'), { id: 'gh', paths: ['/run/agent.sock'] });
  t.deepEqual(parseSshFlag('gh=/a,/b'), { id: 'gh', paths: ['/a', '/b'] });
  for (const bad of ['', '=x', 'gh=', 'a b']) t.throws(() => parseSshFlag(bad), { message: /invalid --ssh/ });
});

test('resolveSshAgents: uses SSH_AUTH_SOCK for default, takes a unix socket or key files, and refuses what is not', async (t) => {
  const dir = await tempDir(t);
  const sock = join(dir, 'agent.sock');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  t.deepEqual([...resolveSshAgents(['default', `other=${sock}`], { SSH_AUTH_SOCK: sock }, dir)], [['default', { kind: 'socket', path: sock }], ['other', { kind: 'socket', path: sock }]]);
  t.regex(t.throws(() => resolveSshAgents(['default'], {}, dir)).message, /SSH_AUTH_SOCK is not set/);
  t.regex(t.throws(() => resolveSshAgents(['k=nope.sock'], {}, dir)).message, /cannot use .*nope\.sock: ENOENT/);
  await writeFile(join(dir, 'id_ed25519'), 'key');
  const key = t.throws(() => resolveSshAgents(['k=id_ed25519'], {}, dir));
  t.true(isTsbuildError(key, 'CLI_BAD_VALUE'));
  t.regex(key.message, /id_ed25519: not a private key/);
  t.true(isTsbuildError(t.throws(() => resolveSshAgents([`k=${sock},${sock}`], {}, dir)), 'CLI_NOT_SUPPORTED'));
});
