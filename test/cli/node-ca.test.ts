import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from './run-cli.js';
import { testIf } from '../helpers/capability.js';
import { registryMissing, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

// NODE_EXTRA_CA_CERTS costs Node ~90 ms per start-up; bin/tsbuild.js's shebang defers it and tsbuild
// trusts the file when it opens a TLS connection (src/sys/node-ca.ts).
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(REPO, 'bin', 'tsbuild.js');
const main = join(REPO, 'dist', 'cli', 'main.js');
const bundleMissing = existsSync(main) && readFileSync(main, 'utf8').startsWith('// tsbuild CLI bundle') ? undefined : 'dist/cli/main.js is not the bundle (run npm run build)';
const PASSWORD = 'N0de-ca-pa55';
const registryGone = await registryMissing();

interface Result { code: number; stdout: string; stderr: string }

function exec(file: string, args: readonly string[], env: Record<string, string | undefined>, stdin?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env: env as NodeJS.ProcessEnv, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
    child.stdin?.end(stdin ?? '');
  });
}

/** process.env without NODE_EXTRA_CA_CERTS and its deferred name, plus `extra`. */
function envWith(extra: Record<string, string>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, ...extra };
  if (extra.NODE_EXTRA_CA_CERTS === undefined) delete env.NODE_EXTRA_CA_CERTS;
  delete env.TSBUILD_NODE_EXTRA_CA_CERTS;
  return env;
}

testIf(bundleMissing, 'node-ca: bin/tsbuild.js starts Node without NODE_EXTRA_CA_CERTS (Node, given it, loads it at start-up and warns about a missing file)', async (t) => {
  const env = envWith({ NODE_EXTRA_CA_CERTS: '/nonexistent/tsbuild-test-ca.pem' });
  const direct = await exec(BIN, ['--version'], env);
  t.is(direct.code, 0, direct.stderr);
  t.regex(direct.stdout, /^tsbuild version /);
  t.false(/extra certs/i.test(direct.stderr), direct.stderr);
  // The control: `node bin/tsbuild.js` bypasses the shebang, and Node loads (and here warns about) the file.
  const viaNode = await exec(process.execPath, [BIN, '--version'], env);
  t.is(viaNode.code, 0, viaNode.stderr);
  t.regex(viaNode.stderr, /Ignoring extra certs from/);
});

testIf(bundleMissing ?? registryGone, 'node-ca: a registry whose CA is only in NODE_EXTRA_CA_CERTS is trusted (through the shebang, and in-process under either name); without it REG_TLS', async (t) => {
  const reg = await startRegistry(t, { auth: 'basic', users: { alice: { password: PASSWORD } } });
  const dir = await tempDir(t);
  const base = { DOCKER_CONFIG: join(dir, 'docker'), HOME: dir };
  const login = ['login', '-u', 'alice', '--password-stdin', reg.host];

  const trusted = await exec(BIN, login, envWith({ ...base, NODE_EXTRA_CA_CERTS: reg.caFile as string }), `${PASSWORD}\n`);
  t.is(trusted.code, 0, trusted.stderr);
  t.is(trusted.stdout, 'Login Succeeded\n');
  const untrusted = await exec(BIN, login, envWith(base), `${PASSWORD}\n`);
  t.is(untrusted.code, 1);
  t.regex(untrusted.stderr, /REG_TLS/);

  // In-process (the environment the CLI gets): the deferred name and NODE_EXTRA_CA_CERTS itself.
  for (const name of ['TSBUILD_NODE_EXTRA_CA_CERTS', 'NODE_EXTRA_CA_CERTS']) {
    const r = await cli(login, { env: { ...base, [name]: reg.caFile as string }, stdin: `${PASSWORD}\n` });
    t.is(r.code, 0, `${name}: ${r.stderr}`);
  }
  const r = await cli(login, { env: { ...base, TSBUILD_NODE_EXTRA_CA_CERTS: join(dir, 'missing.pem') }, stdin: `${PASSWORD}\n` });
  t.is(r.code, 1);
  t.regex(r.stderr, /REG_TLS/, 'an unreadable file is ignored, as Node ignores it');
});
