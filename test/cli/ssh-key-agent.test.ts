import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { isTsbuildError } from '../../src/core/index.js';
import { resolveSshAgents, startSshAgents } from '../../src/cli/build-secrets.js';
import { startKeyAgent } from '../../src/cli/ssh-key-agent.js';
import { parseSshPrivateKey } from '../../src/cli/ssh-keys.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const sshMissing = existsSync('/usr/bin/ssh-keygen') && existsSync('/usr/bin/ssh-add') ? undefined : 'ssh-keygen and ssh-add (openssh-client) are needed';

/** Key types ssh-keygen makes, in OpenSSH's own format and in PEM. */
const KEYS: readonly { readonly name: string; readonly args: readonly string[] }[] = [
  { name: 'ed25519', args: ['-t', 'ed25519'] },
  { name: 'rsa', args: ['-t', 'rsa', '-b', '2048'] },
  { name: 'rsa-pem', args: ['-t', 'rsa', '-b', '2048', '-m', 'PEM'] },
  { name: 'ecdsa256', args: ['-t', 'ecdsa', '-b', '256'] },
  { name: 'ecdsa384-pem', args: ['-t', 'ecdsa', '-b', '384', '-m', 'PEM'] },
  { name: 'ecdsa521', args: ['-t', 'ecdsa', '-b', '521'] },
];

async function keygen(dir: string, name: string, args: readonly string[], passphrase = ''): Promise<string> {
  const file = join(dir, name);
  await run('ssh-keygen', [...args, '-q', '-N', passphrase, '-C', `${name}@test`, '-f', file]);
  return file;
}

testIf(sshMissing, 'ssh key agent: ssh-add lists the keys and ssh-keygen -Y signs through it, verified by ssh-keygen, for every key type', async (t) => {
  const dir = await tempDir(t);
  const files = await Promise.all(KEYS.map((k) => keygen(dir, k.name, k.args)));
  const keys = await Promise.all(files.map(async (f) => parseSshPrivateKey(await readFile(f, 'utf8'), f)));
  const agent = await startKeyAgent(keys);
  t.teardown(() => agent.close());
  const env = { ...process.env, SSH_AUTH_SOCK: agent.socket };

  const listed = (await run('ssh-add', ['-l'], { env })).stdout.trim().split('\n');
  const fingerprints = await Promise.all(files.map(async (f) => (await run('ssh-keygen', ['-lf', `${f}.pub`])).stdout.trim().split(' ')[1]));
  t.deepEqual(listed.map((l) => l.split(' ')[1]), fingerprints);
  // The comment comes from the OpenSSH key file (PEM keys have none).
  t.true(listed[0]?.includes('ed25519@test'), listed[0]);

  const data = join(dir, 'data.txt');
  await writeFile(data, 'signed through the agent\n');
  for (const f of files) {
    const name = f.slice(dir.length + 1);
    // -f names the public key: ssh-keygen asks the agent to sign.
    await run('ssh-keygen', ['-Y', 'sign', '-n', 'file', '-f', `${f}.pub`, data], { env });
    const signers = join(dir, `${name}.signers`);
    await writeFile(signers, `tester ${(await readFile(`${f}.pub`, 'utf8')).trim()}\n`);
    // The signed message comes on stdin.
    const v = await run('sh', ['-c', 'exec ssh-keygen -Y verify -f "$1" -I tester -n file -s "$2" < "$3"', 'sh', signers, `${data}.sig`, data]).catch((e: { stdout: string; stderr: string }) => e);
    t.regex(`${v.stdout}${v.stderr}`, /Good "file" signature for tester/, name);
    await run('rm', ['-f', `${data}.sig`]);
  }
});

testIf(sshMissing, 'ssh key agent: refuses what it does not serve, drops oversized requests, and removes its socket when closed', async (t) => {
  const dir = await tempDir(t);
  const key = parseSshPrivateKey(await readFile(await keygen(dir, 'k', ['-t', 'ed25519']), 'utf8'), 'k');
  const agent = await startKeyAgent([key]);
  const ask = (bytes: Buffer): Promise<Buffer> => new Promise((resolve, reject) => {
    const c = connect(agent.socket);
    const got: Buffer[] = [];
    c.on('data', (d) => { got.push(d); if (Buffer.concat(got).length >= 5) c.end(); });
    c.on('close', () => resolve(Buffer.concat(got)));
    c.on('error', reject);
    c.write(bytes);
  });
  // SSH_AGENTC_REMOVE_ALL_IDENTITIES (19) and a sign request for an unknown key: SSH_AGENT_FAILURE.
  t.deepEqual(await ask(Buffer.from([0, 0, 0, 1, 19])), Buffer.from([0, 0, 0, 1, 5]));
  const unknown = Buffer.concat([Buffer.from([13]), Buffer.from([0, 0, 0, 3]), Buffer.from('abc'), Buffer.from([0, 0, 0, 1, 0x78]), Buffer.alloc(4)]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(unknown.length);
  t.deepEqual(await ask(Buffer.concat([len, unknown])), Buffer.from([0, 0, 0, 1, 5]));
  // A length over the bound: the connection is closed with no answer.
  t.deepEqual(await ask(Buffer.from([0x7f, 0xff, 0xff, 0xff, 11])), Buffer.alloc(0));
  await agent.close();
  t.false(existsSync(agent.socket));
  t.false(existsSync(dirname(agent.socket)));
});

testIf(sshMissing, 'resolveSshAgents + startSshAgents: key files become an agent socket per id; passphrase keys and mixtures are clear errors', async (t) => {
  const dir = await tempDir(t);
  const a = await keygen(dir, 'a', ['-t', 'ed25519']);
  const b = await keygen(dir, 'b', ['-t', 'ecdsa', '-b', '256']);
  const sources = resolveSshAgents([`default=${a},${b}`], {}, dir);
  const agents = await startSshAgents(sources);
  t.teardown(() => agents.close());
  const sock = agents.sockets.get('default') as string;
  const listed = (await run('ssh-add', ['-l'], { env: { ...process.env, SSH_AUTH_SOCK: sock } })).stdout.trim().split('\n');
  t.is(listed.length, 2);

  const locked = await keygen(dir, 'locked', ['-t', 'ed25519'], 'secret passphrase');
  const err = t.throws(() => resolveSshAgents([`default=${locked}`], {}, dir));
  t.true(isTsbuildError(err, 'CLI_BAD_VALUE'));
  t.regex(err.message, /locked is protected by a passphrase/);
  t.false(err.message.includes('secret passphrase'));
  t.true(isTsbuildError(t.throws(() => resolveSshAgents([`default=${a},${sock}`], {}, dir)), 'CLI_NOT_SUPPORTED'));
  // A fifo would block the read: refused before reading.
  await run('mkfifo', [join(dir, 'fifo')]);
  t.regex(t.throws(() => resolveSshAgents([`default=${join(dir, 'fifo')}`], {}, dir)).message, /neither an agent socket nor a key file/);
  await agents.close();
  t.false(existsSync(sock));
});
