import test from 'ava';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadCredentials, removeCredentials, saveCredentials, type CredentialSources } from '../../src/registry/index.js';
import { tempDir } from '../helpers/tmp.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

async function sources(t: Parameters<typeof tempDir>[0], config?: unknown, authFile?: unknown): Promise<CredentialSources & { dir: string }> {
  const dir = await tempDir(t);
  const dockerConfigDir = join(dir, 'docker');
  await mkdir(dockerConfigDir);
  if (config !== undefined) await writeFile(join(dockerConfigDir, 'config.json'), JSON.stringify(config));
  const authPath = join(dir, 'auth.json');
  if (authFile !== undefined) await writeFile(authPath, JSON.stringify(authFile));
  return { dir, dockerConfigDir, authFiles: [authPath], path: `${dir}/bin:/usr/bin:/bin` };
}

/** Installs a real `docker-credential-NAME` helper script (a shell script speaking docker's protocol, keeping secrets in a file). */
async function installHelper(dir: string, name: string): Promise<string> {
  const bin = join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  const db = join(dir, `${name}.db`);
  const script = `#!/bin/sh
db='${db}'
case "$1" in
  get) read -r url; line=$(grep -F "$url	" "$db" 2>/dev/null | tail -n 1); [ -n "$line" ] || { echo "credentials not found in native keychain"; exit 1; }
       printf '%s' "$line" | cut -f2- ;;
  store) read -r json; url=$(printf '%s' "$json" | sed 's/.*"ServerURL":"\\([^"]*\\)".*/\\1/'); printf '%s\\t{"ServerURL":"%s","Username":%s,"Secret":%s}\\n' "$url" "$url" "$(printf '%s' "$json" | sed 's/.*"Username":\\("[^"]*"\\).*/\\1/')" "$(printf '%s' "$json" | sed 's/.*"Secret":\\("[^"]*"\\).*/\\1/')" >> "$db" ;;
  erase) read -r url; grep -vF "$url	" "$db" > "$db.new" 2>/dev/null; mv "$db.new" "$db" ;;
esac
`;
  await writeFile(join(bin, `docker-credential-${name}`), script);
  await chmod(join(bin, `docker-credential-${name}`), 0o755);
  return db;
}

test('loadCredentials: decodes base64 auth and identity tokens when config.json has auths', async (t) => {
  const s = await sources(t, {
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hub:pw:with:colons') },
      'reg.example:5000': { auth: '', identitytoken: 'refresh-123' },
      'https://other.example/v2/': { auth: b64('o:p') },
    },
  });
  t.deepEqual(await loadCredentials('docker.io', s), { username: 'hub', password: 'pw:with:colons' });
  t.deepEqual(await loadCredentials('reg.example:5000', s), { identityToken: 'refresh-123' });
  t.deepEqual(await loadCredentials('other.example', s), { username: 'o', password: 'p' });
  t.is(await loadCredentials('nowhere.example', s), undefined);
});

test('loadCredentials: falls back to the containers auth file when docker has no entry', async (t) => {
  const s = await sources(t, { auths: {} }, { auths: { 'quay.example': { auth: b64('q:secret') } } });
  t.deepEqual(await loadCredentials('quay.example', s), { username: 'q', password: 'secret' });
});

test('loadCredentials: runs docker-credential-NAME get when credHelpers names one for the registry', async (t) => {
  const s = await sources(t, { credHelpers: { 'helped.example': 'fake' }, auths: { 'helped.example': { auth: b64('file:ignored') } } });
  const db = await installHelper(s.dir, 'fake');
  await writeFile(db, 'helped.example\t{"ServerURL":"helped.example","Username":"hu","Secret":"hs"}\n');
  t.deepEqual(await loadCredentials('helped.example', s), { username: 'hu', password: 'hs' });
  await writeFile(db, 'helped.example\t{"ServerURL":"helped.example","Username":"<token>","Secret":"idtok"}\n');
  t.deepEqual(await loadCredentials('helped.example', s), { identityToken: 'idtok' });
  // Not found in the helper: docker falls back to the file entry.
  await writeFile(db, '');
  t.deepEqual(await loadCredentials('helped.example', s), { username: 'file', password: 'ignored' });
});

test('saveCredentials: goes through credsStore and lists the registry in config.json when a store is configured', async (t) => {
  const s = await sources(t, { credsStore: 'fake', HttpHeaders: { 'X-Keep': '1' } });
  const db = await installHelper(s.dir, 'fake');
  t.is(await saveCredentials('store.example', { username: 'u', password: 'p4ss' }, s), 'docker-credential-fake');
  t.regex(await readFile(db, 'utf8'), /^store\.example\t.*"Secret":"p4ss"/);
  const cfg = JSON.parse(await readFile(join(s.dockerConfigDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.deepEqual(cfg.auths, { 'store.example': {} });
  t.deepEqual(cfg.HttpHeaders, { 'X-Keep': '1' });
  t.deepEqual(await loadCredentials('store.example', s), { username: 'u', password: 'p4ss' });
  t.true(await removeCredentials('store.example', s));
  t.is(await loadCredentials('store.example', s), undefined);
});

test('saveCredentials: writes config.json with mode 0600 keeping other keys when no helper is configured', async (t) => {
  const s = await sources(t, { auths: { 'keep.example': { auth: b64('k:v') } }, psFormat: 'x' });
  await chmod(join(s.dockerConfigDir, 'config.json'), 0o644);
  t.is(await saveCredentials('docker.io', { username: 'me', password: 'pw' }, s), join(s.dockerConfigDir, 'config.json'));
  const path = join(s.dockerConfigDir, 'config.json');
  t.is((await stat(path)).mode & 0o777, 0o600);
  const cfg = JSON.parse(await readFile(path, 'utf8')) as { auths: Record<string, { auth: string }>; psFormat: string };
  t.is(cfg.auths['https://index.docker.io/v1/']?.auth, b64('me:pw'));
  t.is(cfg.auths['keep.example']?.auth, b64('k:v'));
  t.is(cfg.psFormat, 'x');
  t.true(await removeCredentials('docker.io', s));
  t.false(await removeCredentials('docker.io', s));
  t.deepEqual(await loadCredentials('keep.example', s), { username: 'k', password: 'v' });
});

test('saveCredentials: creates the config directory when it does not exist', async (t) => {
  const dir = await tempDir(t);
  const s = { dockerConfigDir: join(dir, 'new', '.docker'), authFiles: [] };
  await saveCredentials('r.example', { username: 'a', password: 'b' }, s);
  t.is((await stat(join(dir, 'new', '.docker', 'config.json'))).mode & 0o777, 0o600);
});

test('loadCredentials: a damaged config.json fails with REG_CREDENTIALS without quoting its content', async (t) => {
  const s = await sources(t);
  await writeFile(join(s.dockerConfigDir, 'config.json'), '{"auths":{"x":{"auth":"c2VjcmV0LXZhbHVl"}}');
  const err = await t.throwsAsync(loadCredentials('x', s));
  t.is((err as { code?: string }).code, 'REG_CREDENTIALS');
  t.false((err as Error).message.includes('c2VjcmV0LXZhbHVl'));
});

test('loadCredentials: an auth entry that is not user:password fails with REG_CREDENTIALS', async (t) => {
  const s = await sources(t, { auths: { x: { auth: b64('no-colon') } } });
  const err = await t.throwsAsync(loadCredentials('x', s));
  t.is((err as { code?: string }).code, 'REG_CREDENTIALS');
  t.false((err as Error).message.includes('no-colon'));
});
