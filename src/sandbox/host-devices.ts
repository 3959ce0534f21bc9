/**
 * The host's device nodes for a privileged container (docker's `--privileged`, BuildKit's
 * `RUN --security=insecure`): what containerd's `HostDevices` lists, read from /dev.
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { DeviceSpec } from './spec.js';

/** Directories of /dev that are never copied: the container has its own (as containerd). */
const SKIPPED_DIRS: readonly string[] = ['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev'];
/** Nodes the sandbox sets up itself: the console is the container's terminal, /dev/ptmx links to its devpts (as runc). */
const SKIPPED_NODES: readonly string[] = ['console', 'ptmx'];

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined; // gone while listing (a hot-unplugged device)
  }
}

/**
 * Lists the character and block devices below `devDir` (default /dev), sorted by path, as
 * `/dev/...` paths (symlinks, sockets and the skipped directories left out). Unreadable
 * directories are skipped. Synchronous: /dev holds a few hundred entries.
 */
export function listHostDevices(devDir = '/dev'): DeviceSpec[] {
  const out: DeviceSpec[] = [];
  const walk = (dir: string, rel: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names.sort()) {
      const st = lstatOrUndefined(join(dir, name));
      if (st === undefined) continue;
      const path = `${rel}/${name}`;
      if (st.isDirectory()) {
        if (!SKIPPED_DIRS.includes(name)) walk(join(dir, name), path);
      } else if ((st.isCharacterDevice() || st.isBlockDevice()) && !(rel === '/dev' && SKIPPED_NODES.includes(name))) {
        // Linux's dev_t encoding (glibc major()/minor()).
        const rdev = BigInt(st.rdev);
        const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
        const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n));
        out.push({ path, type: st.isCharacterDevice() ? 'c' : 'b', major, minor, fileMode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
      }
    }
  };
  walk(devDir, '/dev');
  return out;
}
