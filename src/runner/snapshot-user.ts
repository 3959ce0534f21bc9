import { readFileSync } from 'node:fs';
import { parseGroup, parsePasswd, resolveUserFromTables } from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';

/** A user resolved in a container's file system. */
export interface SnapshotUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string | undefined;
}

/**
 * Reads a small file the snapshot `name` shows at `path` (without mounting), or undefined. Read
 * synchronously: /etc/passwd and /etc/group are a few hundred bytes, and a thread-pool round trip
 * for each of open, fstat, read and close cost more than the read on the path of `run`.
 */
export async function readSnapshotFile(snapshotter: Snapshotter, name: string, path: string): Promise<string | undefined> {
  const host = await snapshotter.lookup(name, path);
  if (host === undefined) return undefined;
  try {
    return readFileSync(host, 'utf8');
  } catch {
    return undefined;
  }
}

/** Resolves `user` (`name`, `uid`, `name:group`...) against the snapshot's /etc/passwd and /etc/group. Throws SANDBOX_* as `run --rootfs`. */
export async function resolveSnapshotUser(snapshotter: Snapshotter, name: string, user: string): Promise<SnapshotUser> {
  const passwd = await readSnapshotFile(snapshotter, name, '/etc/passwd');
  const group = await readSnapshotFile(snapshotter, name, '/etc/group');
  const r = resolveUserFromTables(user, passwd === undefined ? undefined : parsePasswd(passwd), group === undefined ? undefined : parseGroup(group));
  return { uid: r.uid, gid: r.gid, additionalGids: r.additionalGids, home: r.home };
}
