import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The static busybox the test root filesystems are made of (Debian package busybox-static). */
export const BUSYBOX = '/bin/busybox';

/** Why a busybox rootfs cannot be made here, or undefined when it can. */
export function busyboxMissing(): string | undefined {
  return existsSync(BUSYBOX) ? undefined : `${BUSYBOX} is missing (apt-get install busybox-static)`;
}

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'daemon:x:1:1:daemon:/usr/sbin:/bin/false',
  'app:x:1000:1000:app:/home/app:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');
const GROUP = ['root:x:0:', 'daemon:x:1:', 'tty:x:5:', 'staff:x:50:app', 'app:x:1000:', 'nogroup:x:65534:', ''].join('\n');

/**
 * Creates a busybox root filesystem in `dir` (created; world-readable so an unprivileged
 * user can run it): /bin/busybox with `busybox --install -s`-style symlinks, a minimal
 * /etc/passwd and /etc/group (root, app 1000, nobody), and empty /proc /sys /dev /tmp.
 */
export async function makeBusyboxRootfs(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'home/app', 'var']) {
    await mkdir(join(dir, d), { recursive: true, mode: 0o755 });
  }
  await chmod(join(dir, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list-full'], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
  for (const applet of applets) {
    if (applet === 'bin/busybox') continue;
    await mkdir(join(dir, dirname(applet)), { recursive: true, mode: 0o755 });
    await symlink('/bin/busybox', join(dir, applet)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  await writeFile(join(dir, 'etc/passwd'), PASSWD, { mode: 0o644 });
  await writeFile(join(dir, 'etc/group'), GROUP, { mode: 0o644 });
  return dir;
}
