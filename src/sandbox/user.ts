import { TsbuildError } from '../core/index.js';
import { readRootfsFile } from './rootfs-file.js';

/** A resolved `USER`: numeric ids for the launcher, and HOME from passwd when the user has an entry. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home?: string;
}

/** One `/etc/passwd` entry. */
export interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

/** One `/etc/group` entry. */
export interface GroupEntry {
  readonly name: string;
  readonly gid: number;
  readonly members: readonly string[];
}

/** The largest /etc/passwd or /etc/group tsbuild reads from a rootfs. */
export const MAX_USER_DB_BYTES = 4 * 1024 * 1024;
/** Highest uid/gid accepted (Docker's range check). */
const MAX_ID = 2 ** 31 - 1;

const isNumeric = (s: string): boolean => /^\d+$/.test(s);

/** Parses `/etc/passwd` text (`name:pw:uid:gid:gecos:home:shell`); comments and malformed lines are skipped. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const f = line.split(':');
    const [name, , uid, gid] = f;
    if (name === undefined || name === '' || uid === undefined || gid === undefined || !isNumeric(uid) || !isNumeric(gid)) continue;
    out.push({ name, uid: Number(uid), gid: Number(gid), home: f[5] ?? '' });
  }
  return out;
}

/** Parses `/etc/group` text (`name:pw:gid:member,member`); comments and malformed lines are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const [name, , gid, members] = line.split(':');
    if (name === undefined || name === '' || gid === undefined || !isNumeric(gid)) continue;
    out.push({ name, gid: Number(gid), members: (members ?? '').split(',').map((m) => m.trim()).filter((m) => m !== '') });
  }
  return out;
}

function parseId(kind: 'uid' | 'gid', text: string, user: string): number {
  const id = Number(text);
  if (!Number.isSafeInteger(id) || id > MAX_ID) {
    throw new TsbuildError('SANDBOX_BAD_USER', `invalid user "${user}": ${kind}s must be in the range 0-${MAX_ID}`, { exitCode: 125 });
  }
  return id;
}

/**
 * Resolves a Docker `USER` value (`name`, `uid`, `name:group`, `uid:gid`, `` = root) against parsed passwd/group
 * tables (undefined = the file does not exist), with runc's rules: a numeric id needs no entry; a name must exist;
 * supplementary groups are the groups listing the user, only when no group was given. Pure.
 * Throws SANDBOX_UNKNOWN_USER, SANDBOX_UNKNOWN_GROUP or SANDBOX_BAD_USER.
 */
export function resolveUserFromTables(user: string, passwd: readonly PasswdEntry[] | undefined, groups: readonly GroupEntry[] | undefined): ResolvedUser {
  const colon = user.indexOf(':');
  const userArg = colon === -1 ? user : user.slice(0, colon);
  const groupArg = colon === -1 ? '' : user.slice(colon + 1);
  const result: ResolvedUser = { uid: 0, gid: 0, additionalGids: [] };
  const uidArg = userArg === '' ? 0 : isNumeric(userArg) ? parseId('uid', userArg, user) : undefined;
  const entry = (passwd ?? []).find((e) => (uidArg === undefined ? e.name === userArg : e.uid === uidArg));
  if (entry !== undefined) {
    result.uid = entry.uid;
    result.gid = entry.gid;
    if (entry.home !== '') result.home = entry.home;
  } else if (uidArg === undefined) {
    throw new TsbuildError('SANDBOX_UNKNOWN_USER', `unable to find user ${userArg}: no matching entries in the image's /etc/passwd${passwd === undefined ? ' (the file does not exist)' : ''}`, {
      hint: 'use a numeric uid, or create the user in the image (RUN adduser ...)',
      exitCode: 125,
    });
  } else {
    result.uid = uidArg;
  }
  if (groupArg !== '') {
    const gidArg = isNumeric(groupArg) ? parseId('gid', groupArg, user) : undefined;
    const group = (groups ?? []).find((g) => (gidArg === undefined ? g.name === groupArg : g.gid === gidArg));
    if (group !== undefined) result.gid = group.gid;
    else if (gidArg !== undefined) result.gid = gidArg;
    else throw new TsbuildError('SANDBOX_UNKNOWN_GROUP', `unable to find group ${groupArg}: no matching entries in the image's /etc/group`, { exitCode: 125 });
  } else if (entry !== undefined) {
    for (const g of groups ?? []) {
      if (g.members.includes(entry.name) && !result.additionalGids.includes(g.gid)) result.additionalGids.push(g.gid);
    }
  }
  return result;
}

/**
 * Resolves a `USER` value against the root filesystem's own /etc/passwd and /etc/group (never the host's).
 * SECURITY: the files are resolved inside `rootfsDir` only (symlinks relative to the rootfs root), must be regular
 * files of at most {@link MAX_USER_DB_BYTES}. Throws SANDBOX_UNKNOWN_USER, SANDBOX_UNKNOWN_GROUP, SANDBOX_BAD_USER,
 * SANDBOX_BAD_ROOTFS_FILE or SANDBOX_ROOTFS_NOT_FOUND.
 */
export async function resolveUser(rootfsDir: string, user: string): Promise<ResolvedUser> {
  const passwdText = await readRootfsFile(rootfsDir, '/etc/passwd', MAX_USER_DB_BYTES);
  const groupText = await readRootfsFile(rootfsDir, '/etc/group', MAX_USER_DB_BYTES);
  return resolveUserFromTables(user.trim(), passwdText === undefined ? undefined : parsePasswd(passwdText), groupText === undefined ? undefined : parseGroup(groupText));
}
