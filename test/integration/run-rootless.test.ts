import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The unprivileged user scripts/setup.sh creates, with sub-id ranges (as test/sandbox/rootless.test.ts). */
const USER = 'tsbuild-test';

function userExists(): boolean {
  try {
    execFileSync('id', ['-u', USER]);
    return true;
  } catch {
    return false;
  }
}
const missing = process.getuid?.() !== 0 ? 'rootless tests switch to an unprivileged user and need root to do so'
  : !userExists() ? `user ${USER} missing (scripts/setup.sh creates it)`
  : !existsSync('/etc/subuid') || !readFileSync('/etc/subuid', 'utf8').includes(`${USER}:`) ? `no /etc/subuid range for ${USER} (scripts/setup.sh adds it)`
  : !existsSync('/usr/bin/newuidmap') ? 'newuidmap missing (apt-get install uidmap)'
  : await busyboxMissing();

/** Runs the real CLI as the unprivileged user, its store, temp and runtime dirs under `home`. */
function asUser(home: string, root: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('runuser', ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, `TMPDIR=${home}/tmp`, `XDG_RUNTIME_DIR=${home}/run`,
      process.execPath, '--import', 'tsx', join(REPO, 'src/cli/main.ts'), '--root', root, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function processesMentioning(text: string): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).filter((n) => {
    try {
      return readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(text);
    } catch {
      return false;
    }
  }).map(Number);
}

testIf(missing, 'run rootless: an unprivileged user runs, detaches, stops and removes image containers', async (t) => {
  const dir = await tempDir(t, 'tsbuild-run-rootless-');
  await chmod(dir, 0o755);
  const home = join(dir, 'home');
  const root = join(home, 'store');
  for (const d of [home, join(home, 'tmp'), join(home, 'run')]) await mkdir(d, { recursive: true });
  await makeBusyboxImage(join(dir), root);
  execFileSync('chown', ['-R', `${USER}:${USER}`, home]);
  t.teardown(async () => {
    const ids = (await asUser(home, root, ['ps', '-aq'])).stdout.split('\n').filter((s) => s !== '');
    if (ids.length > 0) await asUser(home, root, ['rm', '-f', ...ids]);
  });

  let r = await asUser(home, root, ['run', '--rm', 'busybox', 'sh', '-c', 'id -u; echo layer > /f; cat /f']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '0\nlayer\n');
  r = await asUser(home, root, ['run', '-d', '--name', 'bg', 'busybox', 'sh', '-c', 'while true; do echo up; sleep 0.1; done']);
  t.is(r.code, 0, r.stderr);
  r = await asUser(home, root, ['ps', '--format', 'json']);
  t.is((JSON.parse(r.stdout.trim()) as { State: string; Names: string }).State, 'running');
  t.is((await asUser(home, root, ['logs', '--tail', '1', 'bg'])).stdout, 'up\n');
  r = await asUser(home, root, ['stop', '-t', '0', 'bg']);
  t.is(r.code, 0, r.stderr);
  t.is((await asUser(home, root, ['rm', 'bg'])).code, 0);
  t.is((await asUser(home, root, ['ps', '-aq'])).stdout, '');
  t.deepEqual(processesMentioning(root), [], 'no monitor or container process is left');
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(root), 'no mount is left');
});
