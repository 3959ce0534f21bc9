import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdir, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isTsbuildError } from '../../src/core/index.js';
import { resolveInRootfs } from '../../src/sandbox/rootfs-file.js';
import { parseGroup, parsePasswd, resolveUser, resolveUserFromTables } from '../../src/sandbox/user.js';
import type { ResolvedUser } from '../../src/sandbox/user.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'daemon:x:1:1:daemon:/usr/sbin:/bin/false',
  '# a comment',
  'alice:x:1000:1000:Alice:/home/alice:/bin/sh',
  'bob:x:1001:100::/home/bob:/bin/sh',
  'broken:x:notanumber:1::/:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');
const GROUP = [
  'root:x:0:',
  'wheel:x:10:root,alice',
  'users:x:100:',
  'alice:x:1000:',
  'staff:x:50:alice, bob',
  'docker:x:999:alice',
  'nogroup:x:65534:',
].join('\n');

const passwd = parsePasswd(PASSWD);
const groups = parseGroup(GROUP);

const cases: Array<[string, ResolvedUser]> = [
  ['', { uid: 0, gid: 0, additionalGids: [10], home: '/root' }],
  ['root', { uid: 0, gid: 0, additionalGids: [10], home: '/root' }],
  ['0', { uid: 0, gid: 0, additionalGids: [10], home: '/root' }],
  ['alice', { uid: 1000, gid: 1000, additionalGids: [10, 50, 999], home: '/home/alice' }],
  ['1000', { uid: 1000, gid: 1000, additionalGids: [10, 50, 999], home: '/home/alice' }],
  ['alice:staff', { uid: 1000, gid: 50, additionalGids: [], home: '/home/alice' }],
  ['alice:0', { uid: 1000, gid: 0, additionalGids: [], home: '/home/alice' }],
  ['bob', { uid: 1001, gid: 100, additionalGids: [50], home: '/home/bob' }],
  ['4242', { uid: 4242, gid: 0, additionalGids: [] }],
  ['4242:4343', { uid: 4242, gid: 4343, additionalGids: [] }],
  ['4242:users', { uid: 4242, gid: 100, additionalGids: [] }],
  ['nobody:nogroup', { uid: 65534, gid: 65534, additionalGids: [], home: '/nonexistent' }],
];
for (const [user, expected] of cases) {
  test(`resolveUserFromTables: "${user}" resolves when the tables list it`, (t) => {
    t.deepEqual(resolveUserFromTables(user, passwd, groups), expected);
  });
}

const bad: Array<[string, string]> = [
  ['mallory', 'SANDBOX_UNKNOWN_USER'],
  ['broken', 'SANDBOX_UNKNOWN_USER'],
  ['alice:nosuchgroup', 'SANDBOX_UNKNOWN_GROUP'],
  ['99999999999', 'SANDBOX_BAD_USER'],
  ['0:99999999999', 'SANDBOX_BAD_USER'],
];
for (const [user, code] of bad) {
  test(`resolveUserFromTables: ${code} when the user is "${user}"`, (t) => {
    t.true(isTsbuildError(t.throws(() => resolveUserFromTables(user, passwd, groups)), code as 'SANDBOX_BAD_USER'));
  });
}

test('resolveUserFromTables: numeric ids work and names fail when passwd and group do not exist', (t) => {
  t.deepEqual(resolveUserFromTables('12:34', undefined, undefined), { uid: 12, gid: 34, additionalGids: [] });
  const err = t.throws(() => resolveUserFromTables('alice', undefined, undefined));
  t.true(isTsbuildError(err, 'SANDBOX_UNKNOWN_USER'));
  t.regex(err?.message ?? '', /does not exist/);
});

/** A rootfs with an etc/ holding the given files. */
async function makeRootfs(t: Parameters<typeof tempDir>[0], files: Record<string, string> = { 'etc/passwd': PASSWD, 'etc/group': GROUP }): Promise<string> {
  const root = join(await tempDir(t), 'rootfs');
  await mkdir(join(root, 'etc'), { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

test('resolveUser: reads the rootfs files, not the host\'s, when both define users', async (t) => {
  const root = await makeRootfs(t, { 'etc/passwd': 'root:x:5:6:r:/r:/bin/sh\n', 'etc/group': 'g:x:7:root\n' });
  t.deepEqual(await resolveUser(root, 'root'), { uid: 5, gid: 6, additionalGids: [7], home: '/r' });
  // A user the host has (Debian's "daemon") but the rootfs does not.
  t.true(isTsbuildError(await t.throwsAsync(resolveUser(root, 'daemon')), 'SANDBOX_UNKNOWN_USER'));
});

test('resolveUser: SANDBOX_ROOTFS_NOT_FOUND when the rootfs does not exist', async (t) => {
  t.true(isTsbuildError(await t.throwsAsync(resolveUser('/nonexistent/rootfs', 'root')), 'SANDBOX_ROOTFS_NOT_FOUND'));
});

const EVIL = 'evil:x:77:77::/evil:/bin/sh\n';

test('resolveUser: an absolute symlink to /etc/shadow reads the rootfs\'s shadow when passwd is hostile', async (t) => {
  const root = await makeRootfs(t, { 'etc/shadow': EVIL });
  await symlink('/etc/shadow', join(root, 'etc/passwd'));
  t.deepEqual(await resolveUser(root, 'evil'), { uid: 77, gid: 77, additionalGids: [], home: '/evil' });
});

test('resolveUser: the host file stays unread when an absolute symlink target is missing in the rootfs', async (t) => {
  const root = await makeRootfs(t, {});
  await symlink('/etc/passwd', join(root, 'etc/group'));
  await symlink('/etc/hostname', join(root, 'etc/passwd'));
  t.true(isTsbuildError(await t.throwsAsync(resolveUser(root, 'root')), 'SANDBOX_UNKNOWN_USER'));
});

test('resolveUser: "../" chains are clamped at the rootfs root when passwd climbs out', async (t) => {
  const root = await makeRootfs(t, { 'passwd-real': EVIL });
  await symlink('../../../../../../../../../passwd-real', join(root, 'etc/passwd'));
  t.is((await resolveUser(root, 'evil')).uid, 77);
  const { hostPath, exists } = await resolveInRootfs(root, '/etc/../../../../etc/group');
  t.is(hostPath, join(root, 'etc/group'));
  t.false(exists);
});

test('resolveUser: a symlinked /etc directory resolves inside the rootfs when etc points at /', async (t) => {
  const root = join(await tempDir(t), 'rootfs');
  await mkdir(root);
  await writeFile(join(root, 'passwd'), EVIL);
  await symlink('/', join(root, 'etc'));
  t.is((await resolveUser(root, 'evil')).uid, 77);
});

test('resolveUser: SANDBOX_BAD_ROOTFS_FILE when passwd is a symlink loop', async (t) => {
  const root = await makeRootfs(t, {});
  await symlink('/etc/passwd', join(root, 'etc/passwd'));
  const err = await t.throwsAsync(resolveUser(root, 'root'));
  t.true(isTsbuildError(err, 'SANDBOX_BAD_ROOTFS_FILE'));
  t.regex(err?.message ?? '', /too many levels of symbolic links/);
});

test('resolveUser: SANDBOX_BAD_ROOTFS_FILE without hanging when passwd is a FIFO', async (t) => {
  const root = await makeRootfs(t, {});
  execFileSync('mkfifo', [join(root, 'etc/passwd')]);
  const err = await t.throwsAsync(resolveUser(root, 'root'));
  t.true(isTsbuildError(err, 'SANDBOX_BAD_ROOTFS_FILE'));
  t.regex(err?.message ?? '', /not a regular file/);
});

test('resolveUser: SANDBOX_BAD_ROOTFS_FILE when passwd is a directory', async (t) => {
  const root = await makeRootfs(t, {});
  await mkdir(join(root, 'etc/passwd'));
  t.true(isTsbuildError(await t.throwsAsync(resolveUser(root, '0')), 'SANDBOX_BAD_ROOTFS_FILE'));
});

testIf(process.getuid?.() === 0 ? undefined : 'mknod needs root', 'resolveUser: SANDBOX_BAD_ROOTFS_FILE when passwd is a character device', async (t) => {
  const root = await makeRootfs(t, {});
  execFileSync('mknod', [join(root, 'etc/passwd'), 'c', '1', '5']); // /dev/zero: an endless read
  const err = await t.throwsAsync(resolveUser(root, 'root'));
  t.true(isTsbuildError(err, 'SANDBOX_BAD_ROOTFS_FILE'));
});

test('resolveUser: SANDBOX_BAD_ROOTFS_FILE when passwd is larger than the bound', async (t) => {
  const root = await makeRootfs(t, { 'etc/passwd': '' });
  await truncate(join(root, 'etc/passwd'), 64 * 1024 * 1024); // sparse
  const err = await t.throwsAsync(resolveUser(root, 'root'));
  t.true(isTsbuildError(err, 'SANDBOX_BAD_ROOTFS_FILE'));
  t.regex(err?.message ?? '', /too large/);
});

test('resolveUser: a directory component that is a file means missing when etc is a file', async (t) => {
  const root = join(await tempDir(t), 'rootfs');
  await mkdir(root);
  await writeFile(join(root, 'etc'), 'not a dir');
  t.deepEqual(await resolveUser(root, '3:4'), { uid: 3, gid: 4, additionalGids: [] });
});
