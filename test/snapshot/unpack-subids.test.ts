import { execFileSync, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { digestHex } from '../../src/core/index.js';
import { makeNode } from '../../src/sys/index.js';
import { testSerialIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { packDir } from './helpers.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The unprivileged user scripts/setup.sh creates, with sub-id ranges (as test/sandbox/rootless.test.ts). */
const USER = 'tsbuild-test';

function idOf(flag: '-u' | '-g'): number | undefined {
  try {
    return Number(execFileSync('id', [flag, USER], { encoding: 'utf8' }));
  } catch {
    return undefined;
  }
}
const uid = idOf('-u');
const gid = idOf('-g');
const subStart = (file: string): number | undefined => {
  const line = existsSync(file) ? readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${USER}:`)) : undefined;
  return line === undefined ? undefined : Number(line.split(':')[1]);
};
const subuid = subStart('/etc/subuid');
const subgid = subStart('/etc/subgid');
const missing = process.getuid?.() !== 0 ? 'switching to an unprivileged user needs root'
  : uid === undefined || gid === undefined ? `user ${USER} missing (scripts/setup.sh creates it)`
  : subuid === undefined || subgid === undefined ? `no /etc/subuid or /etc/subgid range for ${USER} (scripts/setup.sh adds it)`
  : !existsSync('/usr/bin/newuidmap') ? 'newuidmap missing (apt-get install uidmap)'
  : undefined;

/** Runs test/snapshot/child.ts as the unprivileged user. */
function asUser(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('runuser', ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`,
      process.execPath, '--import', join(REPO, 'node_modules/tsx/dist/loader.mjs'), join(REPO, 'test/snapshot/child.ts'), ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

testSerialIf(missing, 'overlay unpack as a non-root user: files get the host ids of the user\'s sub-id ranges when the layer has other owners', async (t) => {
  const dir = await tempDir(t, 'tsbuild-unpack-subids-');
  await chmod(dir, 0o755);
  // The layer: a home of uid 1000 with a private file, a root-owned file and a whiteout, packed by the real packer.
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'home', 'app'), { recursive: true });
  await writeFile(join(tree, 'home', 'app', 'secret'), 'secret\n', { mode: 0o600 });
  await writeFile(join(tree, 'rootfile'), 'root\n');
  await chown(join(tree, 'home', 'app'), 1000, 1000);
  await chown(join(tree, 'home', 'app', 'secret'), 1000, 2000);
  await chmod(join(tree, 'home', 'app'), 0o750);
  makeNode(join(tree, 'gone'), 'char', 0o600, 0, 0);
  const layer = await packDir(tree, 'changeset');
  const tarFile = join(dir, 'layer.tar');
  writeFileSync(tarFile, layer.tar);
  const store = join(dir, 'store');
  const dirs = { snapshots: join(store, 'snapshots'), tmp: join(store, 'tmp') };
  mkdirSync(dirs.snapshots, { recursive: true });
  mkdirSync(dirs.tmp);
  execFileSync('chown', ['-R', `${USER}:${USER}`, store, tarFile]);

  const r = await asUser(['unpack', dirs.snapshots, dirs.tmp, 'overlay', tarFile, layer.diffId, '0']);
  t.is(r.code, 0, r.stderr);
  const fs = join(dirs.snapshots, 'overlay', digestHex(layer.diffId), 'fs');
  const st = (p: string): { uid: number; gid: number; mode: number } => {
    const s = lstatSync(join(fs, p));
    return { uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 };
  };
  const host = (id: number, start: number): number => start + id - 1;
  t.deepEqual(st('home/app'), { uid: host(1000, subuid as number), gid: host(1000, subgid as number), mode: 0o750 });
  t.deepEqual(st('home/app/secret'), { uid: host(1000, subuid as number), gid: host(2000, subgid as number), mode: 0o600 });
  t.deepEqual(st('rootfile'), { uid: uid as number, gid: gid as number, mode: 0o644 }, 'container root is the user');
  const gone = lstatSync(join(fs, 'gone'));
  t.true(gone.isCharacterDevice() && gone.rdev === 0, 'the whiteout is an overlay 0/0 device');

  // A corrupt layer fails with its LAYER_ code from inside the namespace and publishes nothing.
  const bad = join(dir, 'bad.tar');
  writeFileSync(bad, layer.tar.subarray(0, 700));
  execFileSync('chown', [`${USER}:${USER}`, bad]);
  const failed = await asUser(['unpack', dirs.snapshots, dirs.tmp, 'overlay', bad, `sha256:${'0'.repeat(64)}`, '0']);
  t.not(failed.code, 0);
  t.regex(failed.stderr, /LAYER_TRUNCATED/);
});
