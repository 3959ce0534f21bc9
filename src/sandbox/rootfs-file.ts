import { constants } from 'node:fs';
import { lstat, open, readlink, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { errnoOf } from './cgroup-fs.js';

/** How many symlinks one resolution may follow (Linux's limit). */
const MAX_SYMLINKS = 40;

/**
 * Resolves `path` inside the root filesystem `rootDir` as the container would see it: component by component, every
 * symlink resolved relative to the rootfs root, `..` clamped at the root. Returns the host path (under the realpath of
 * `rootDir`) and whether it exists. Throws SANDBOX_BAD_ROOTFS_FILE on a symlink loop.
 * SECURITY: the rootfs is untrusted; nothing outside it is ever reached through its symlinks.
 */
export async function resolveInRootfs(rootDir: string, path: string): Promise<{ hostPath: string; exists: boolean; root: string }> {
  let root: string;
  try {
    root = await realpath(rootDir);
  } catch (err) {
    throw new TsbuildError('SANDBOX_ROOTFS_NOT_FOUND', `root filesystem directory ${rootDir} does not exist`, { cause: err, exitCode: 125 });
  }
  const pending = path.split('/');
  const current: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      current.pop();
      continue;
    }
    const candidate = join(root, ...current, part);
    let isLink: boolean;
    try {
      isLink = (await lstat(candidate)).isSymbolicLink();
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return { hostPath: join(root, ...current, part, ...pending), exists: false, root };
      throw new TsbuildError('SANDBOX_BAD_ROOTFS_FILE', `cannot inspect ${path} in the rootfs: ${code ?? String(err)}`, { cause: err, exitCode: 125 });
    }
    if (!isLink) {
      current.push(part);
      continue;
    }
    links += 1;
    if (links > MAX_SYMLINKS) throw new TsbuildError('SANDBOX_BAD_ROOTFS_FILE', `${path} in the rootfs: too many levels of symbolic links`, { exitCode: 125 });
    const target = await readlink(candidate);
    if (target.startsWith('/')) current.length = 0;
    pending.unshift(...target.split('/'));
  }
  return { hostPath: current.length === 0 ? root : join(root, ...current), exists: true, root };
}

/**
 * Reads a small regular file of the rootfs (e.g. `/etc/passwd`), resolved with {@link resolveInRootfs}; undefined when
 * it does not exist. Throws SANDBOX_BAD_ROOTFS_FILE when it is not a regular file or is larger than `maxBytes`.
 * SECURITY: opened with O_NOFOLLOW|O_NONBLOCK (no FIFO hang, no last-moment symlink swap), checked to be a regular
 * file, and its opened path re-checked to lie inside the rootfs (a directory swapped for a symlink in between).
 */
export async function readRootfsFile(rootDir: string, path: string, maxBytes: number): Promise<string | undefined> {
  const { hostPath, exists, root } = await resolveInRootfs(rootDir, path);
  if (!exists) return undefined;
  let fh;
  try {
    fh = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw new TsbuildError('SANDBOX_BAD_ROOTFS_FILE', `cannot open ${path} in the rootfs: ${errnoOf(err) ?? String(err)}`, { cause: err, exitCode: 125 });
  }
  try {
    const opened = await readlink(`/proc/self/fd/${fh.fd}`);
    if (!opened.startsWith(root + sep)) {
      throw new TsbuildError('SANDBOX_BAD_ROOTFS_FILE', `${path} in the rootfs resolved outside it (to ${opened}) while being opened`, { exitCode: 125 });
    }
    const st = await fh.stat();
    if (!st.isFile()) throw new TsbuildError('SANDBOX_BAD_ROOTFS_FILE', `${path} in the rootfs is not a regular file`, { exitCode: 125 });
    if (st.size > maxBytes) throw new TsbuildError('SANDBOX_BAD_ROOTFS_FILE', `${path} in the rootfs is too large (${st.size} bytes, limit ${maxBytes})`, { exitCode: 125 });
    const buf = Buffer.alloc(st.size + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, length, buf.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > st.size) throw new TsbuildError('SANDBOX_BAD_ROOTFS_FILE', `${path} in the rootfs grew while being read`, { exitCode: 125 });
    }
    return buf.subarray(0, length).toString('utf8');
  } catch (err) {
    if (err instanceof TsbuildError) throw err;
    throw new TsbuildError('SANDBOX_BAD_ROOTFS_FILE', `cannot read ${path} in the rootfs: ${errnoOf(err) ?? String(err)}`, { cause: err, exitCode: 125 });
  } finally {
    await fh.close();
  }
}
