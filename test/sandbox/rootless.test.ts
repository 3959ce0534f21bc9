import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { testIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { capabilityMask } from '../../src/sandbox/launcher-spec.js';
import { DEFAULT_CAPABILITIES } from '../../src/sandbox/spec.js';
import { parseSubIds } from '../../src/sandbox/userns.js';
import { ensureLauncher, mountsUnder, REPO } from './sandbox-helpers.js';

/** The unprivileged user scripts/setup.sh creates, with sub-id ranges. */
const USER = 'tsbuild-test';

function lookup(): { uid: number; gid: number } | undefined {
  try {
    return { uid: Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', USER], { encoding: 'utf8' })) };
  } catch {
    return undefined;
  }
}
const ids = lookup();
const subuids = ids === undefined || !existsSync('/etc/subuid') ? [] : parseSubIds(readFileSync('/etc/subuid', 'utf8'), { uid: ids.uid, gid: ids.gid, user: USER });
const missing = process.getuid?.() !== 0 ? 'rootless tests switch to an unprivileged user and need root to do so'
  : ids === undefined ? `user ${USER} missing (scripts/setup.sh creates it)`
  : subuids.length === 0 ? `no /etc/subuid range for ${USER} (scripts/setup.sh adds it)`
  : !existsSync('/usr/bin/newuidmap') ? 'newuidmap missing (apt-get install uidmap)'
  : busyboxMissing();

/** Runs `tsbuild run` as the unprivileged user with its temp and state dirs under `home`. */
function runAsUser(home: string, args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  ensureLauncher();
  const r = spawnSync('runuser', ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, `TMPDIR=${home}/tmp`, `XDG_RUNTIME_DIR=${home}/run`,
    process.execPath, '--import', 'tsx', join(REPO, 'src/cli/main.ts'), 'run', ...args], { cwd: REPO, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function setup(t: Parameters<typeof tempDir>[0]): Promise<{ dir: string; rootfs: string; home: string }> {
  const dir = await tempDir(t, 'tsbuild-rootless-');
  await chmod(dir, 0o755);
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  // A rootless user's root filesystem belongs to it (container root = the user); one file stays host root's.
  execFileSync('chown', ['-R', '-h', `${ids?.uid}:${ids?.gid}`, rootfs]);
  await writeFile(join(rootfs, 'etc/host-owned'), 'host\n', { mode: 0o644 });
  const home = join(dir, 'home');
  for (const d of [home, join(home, 'tmp'), join(home, 'run')]) {
    await mkdir(d, { recursive: true });
    await chown(d, ids?.uid ?? 0, ids?.gid ?? 0);
  }
  t.teardown(() => {
    const left = mountsUnder([dir]);
    if (left.length > 0) throw new Error(`leftover mounts: ${left.join(', ')}`);
  });
  return { dir, rootfs, home };
}

testIf(missing, 'sandbox rootless: container root is the user and ids 1.. map to its subuid range when run as an unprivileged user', async (t) => {
  const { dir, rootfs, home } = await setup(t);
  const shared = join(dir, 'shared');
  await mkdir(shared);
  await chown(shared, ids?.uid ?? 0, ids?.gid ?? 0);
  const r = runAsUser(home, ['--rootfs', rootfs, '-v', `${shared}:/shared`, '--', 'sh', '-c',
    'id -u; cat /proc/self/uid_map /proc/self/gid_map; touch /shared/by-root; touch /shared/by-app && chown 1000:1000 /shared/by-app; echo x > /etc/host-owned 2>/dev/null && echo wrote || echo denied']);
  t.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
  const range = subuids[0] as { start: number; count: number };
  t.is(lines[0], '0');
  t.true(lines.includes(`0 ${ids?.uid} 1`), r.stdout);
  t.true(lines.includes(`1 ${range.start} ${range.count}`), r.stdout);
  t.is(lines.at(-1), 'denied', 'host-root-owned rootfs files stay read-only for container root');
  t.is((await stat(join(shared, 'by-root'))).uid, ids?.uid ?? -1);
  t.is((await stat(join(shared, 'by-app'))).uid, range.start + 999);
  t.true(existsSync(join(home, 'run', 'tsbuild', 'sandbox')), 'state dir used');
  t.deepEqual(execFileSync('ls', ['-A', join(home, 'run', 'tsbuild', 'sandbox')], { encoding: 'utf8' }).split('\n').filter((n) => n !== '' && !n.startsWith('.')), [], 'no state left but the shared parts');
});

testIf(missing, 'sandbox rootless: the hardening is the same as for root when run as an unprivileged user', async (t) => {
  const { rootfs, home } = await setup(t);
  const r = runAsUser(home, ['--rootfs', rootfs, '--hostname', 'rl', '--', 'sh', '-c',
    'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status; hostname; echo $$; wc -c < /proc/keys; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo rw || echo ro; awk -F: \'NR>2 {gsub(/ /,"",$1); print $1}\' /proc/net/dev']);
  t.is(r.status, 0, r.stderr);
  const hex = capabilityMask(DEFAULT_CAPABILITIES).toString(16).padStart(16, '0');
  t.deepEqual(r.stdout.trim().split('\n').map((l) => l.trim().replace(/\s+/g, ' ')), [`CapEff: ${hex}`, `CapBnd: ${hex}`, 'NoNewPrivs: 1', 'rl', '1', '0', 'ro', 'lo']);
});

testIf(missing, 'sandbox rootless: a missing command exits 127 naming it when run as an unprivileged user', async (t) => {
  const { rootfs, home } = await setup(t);
  const r = runAsUser(home, ['--rootfs', rootfs, '--', '/usr/bin/absent-tool']);
  t.is(r.status, 127);
  t.regex(r.stderr, /SANDBOX_COMMAND_NOT_FOUND.*\/usr\/bin\/absent-tool/);
});

testIf(missing, 'sandbox rootless: an overlay root is mounted with userxattr and writes land in the upperdir when run as an unprivileged user', async (t) => {
  const { dir, rootfs, home } = await setup(t);
  const upper = join(dir, 'upper');
  const work = join(dir, 'work');
  for (const d of [upper, work]) {
    await mkdir(d);
    await chown(d, ids?.uid ?? 0, ids?.gid ?? 0);
  }
  const r = spawnSync('runuser', ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, `TMPDIR=${home}/tmp`,
    process.execPath, '--import', 'tsx', join(REPO, 'test/sandbox/fixtures/rootless-overlay.ts'), ensureLauncher(), join(home, 'state'), rootfs, upper, work, USER], { cwd: REPO, encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const [hostnameLine, json] = r.stdout.trim().split('\n');
  t.is(hostnameLine, 'rl-ovl');
  t.like(JSON.parse(json ?? '{}'), { exitCode: 0 });
  const range = subuids[0] as { start: number; count: number };
  t.is((await stat(join(upper, 'new'))).uid, range.start + 999);
  const whiteout = await stat(join(upper, 'etc/group'));
  t.true(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'deletion is an overlay whiteout');
  t.true(existsSync(join(rootfs, 'etc/group')));
  t.false(existsSync(join(upper, 'etc/hostname')), 'init files stay out of the upperdir');
});

testIf(missing, 'sandbox rootless: without sub-id ranges a single-id map is used with a warning when run as an unprivileged user', async (t) => {
  const { dir, rootfs, home } = await setup(t);
  const upper = join(dir, 'upper');
  const work = join(dir, 'work');
  for (const d of [upper, work]) {
    await mkdir(d);
    await chown(d, ids?.uid ?? 0, ids?.gid ?? 0);
  }
  const r = spawnSync('runuser', ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, `TMPDIR=${home}/tmp`,
    process.execPath, '--import', 'tsx', join(REPO, 'test/sandbox/fixtures/rootless-overlay.ts'), ensureLauncher(), join(home, 'state'), rootfs, upper, work, USER, 'single'], { cwd: REPO, encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => l.trim().replace(/\s+/g, ' '));
  t.deepEqual(lines.slice(0, 4), [`0 ${ids?.uid} 1`, 'deny', '0', 'chown-refused']);
  t.regex(r.stderr, /WARNING: no \/etc\/subuid and \/etc\/subgid ranges for user "tsbuild-test": using a single-id user namespace map; chown to other ids will fail/);
});
