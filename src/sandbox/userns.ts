/**
 * User-namespace id maps: root gets an identity map; a rootless user gets its /etc/subuid and
 * /etc/subgid ranges through `newuidmap`/`newgidmap`, or a single-id map (with a warning).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { TsbuildError } from '../core/index.js';
import type { IdMapping } from './spec.js';

/** execFile as a promise, made on first use: at module load it would load node:child_process for every command that imports the sandbox (`ps`). */
async function execFileAsync(file: string, args: readonly string[]): Promise<void> {
  await promisify(execFile)(file, [...args]);
}

/** One `name:start:count` range of /etc/subuid or /etc/subgid. */
export interface SubIdRange {
  readonly start: number;
  readonly count: number;
}

/** Who the invoking user is on the host. */
export interface HostIdentity {
  readonly uid: number;
  readonly gid: number;
  /** Login name, matched against /etc/subuid names (numeric entries match `uid`). */
  readonly user?: string;
}

/** The uid and gid maps of one sandbox, and how to write them. */
export interface IdMaps {
  readonly uid: readonly IdMapping[];
  readonly gid: readonly IdMapping[];
  /** `direct`: write /proc/PID/*_map ourselves; `helper`: newuidmap/newgidmap. */
  readonly method: 'direct' | 'helper';
  /** Unprivileged single-id map: setgroups must be denied first. */
  readonly denySetgroups: boolean;
}

/** Parses /etc/subuid-style text: the ranges of `who` (by name or numeric id), in file order. */
export function parseSubIds(text: string, who: HostIdentity): SubIdRange[] {
  const out: SubIdRange[] = [];
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (name === undefined || start === undefined || count === undefined) continue;
    if (name !== who.user && name !== String(who.uid)) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isSafeInteger(s) && Number.isSafeInteger(c) && s >= 0 && c > 0) out.push({ start: s, count: c });
  }
  return out;
}

/** The identity map root uses for a user namespace. */
export const IDENTITY_MAP: readonly IdMapping[] = [{ containerID: 0, hostID: 0, size: 4294967295 }];

/**
 * The id maps of the user namespace this process itself runs in, when it is not the initial one
 * (e.g. a rootless build re-executed as root of a namespace over the user's sub-ids).
 */
export interface EnclosingIdMaps {
  readonly uid: readonly IdMapping[];
  readonly gid: readonly IdMapping[];
  /** The namespace denies setgroups(2) (a single-id map): nested namespaces inherit that. */
  readonly setgroupsDenied: boolean;
}

/** Parses /proc/PID/uid_map (or gid_map) text: `inside outside count` per line. */
export function parseIdMapText(text: string): IdMapping[] {
  const out: IdMapping[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/).map(Number);
    if (f.length === 3 && f.every((n) => Number.isSafeInteger(n) && n >= 0)) out.push({ containerID: f[0] as number, hostID: f[1] as number, size: f[2] as number });
  }
  return out;
}

/** True for the initial user namespace's map (`0 0 4294967295`). */
function isInitialMap(maps: readonly IdMapping[]): boolean {
  return maps.length === 1 && maps[0]?.containerID === 0 && maps[0].hostID === 0 && maps[0].size === 4294967295;
}

/**
 * Reads the maps of this process's user namespace from `/proc/self` (or `procDir`); undefined in the
 * initial namespace, or when they cannot be read (no /proc: treated as the initial namespace).
 */
export async function readEnclosingIdMaps(procDir = '/proc/self'): Promise<EnclosingIdMaps | undefined> {
  try {
    const [uidText, gidText, setgroups] = await Promise.all(['uid_map', 'gid_map', 'setgroups'].map((f) => readFile(`${procDir}/${f}`, 'utf8')));
    const uid = parseIdMapText(uidText ?? '');
    const gid = parseIdMapText(gidText ?? '');
    if (uid.length === 0 || (isInitialMap(uid) && isInitialMap(gid))) return undefined;
    return { uid, gid, setgroupsDenied: (setgroups ?? '').trim() === 'deny' };
  } catch {
    return undefined;
  }
}

/**
 * Computes the maps (pure): root -> identity; rootless -> container 0 = the user, 1.. = the
 * sub-id ranges; no ranges -> single-id map. Returns a warning text for the single-id case.
 * Root of a non-initial namespace (`enclosing`) gets an identity map over the ids mapped there,
 * written directly (it holds CAP_SETUID/CAP_SETGID over them; newuidmap would not run setuid there).
 */
export function planIdMaps(host: HostIdentity, subuids: readonly SubIdRange[], subgids: readonly SubIdRange[], enclosing?: EnclosingIdMaps): { maps: IdMaps; warning?: string } {
  if (host.uid === 0 && enclosing !== undefined) {
    const identity = (maps: readonly IdMapping[]): IdMapping[] => maps.map((m) => ({ containerID: m.containerID, hostID: m.containerID, size: m.size }));
    return { maps: { uid: identity(enclosing.uid), gid: identity(enclosing.gid), method: 'direct', denySetgroups: enclosing.setgroupsDenied } };
  }
  if (host.uid === 0) return { maps: { uid: IDENTITY_MAP, gid: IDENTITY_MAP, method: 'direct', denySetgroups: false } };
  const build = (self: number, ranges: readonly SubIdRange[]): IdMapping[] => {
    const out: IdMapping[] = [{ containerID: 0, hostID: self, size: 1 }];
    let next = 1;
    for (const r of ranges) {
      out.push({ containerID: next, hostID: r.start, size: r.count });
      next += r.count;
    }
    return out;
  };
  if (subuids.length === 0 || subgids.length === 0) {
    const who = host.user ?? String(host.uid);
    return {
      maps: { uid: build(host.uid, []), gid: build(host.gid, []), method: 'direct', denySetgroups: true },
      warning: `no /etc/subuid and /etc/subgid ranges for user "${who}": using a single-id user namespace map; chown to other ids will fail (add e.g. "${who}:100000:65536" to both files)`,
    };
  }
  return { maps: { uid: build(host.uid, subuids), gid: build(host.gid, subgids), method: 'helper', denySetgroups: false } };
}

/** Reads the sub-id files and plans the maps (see {@link planIdMaps}); a missing file counts as no ranges. */
export async function resolveIdMaps(host: HostIdentity, files: { subuid: string; subgid: string }, enclosing?: EnclosingIdMaps): Promise<{ maps: IdMaps; warning?: string }> {
  if (host.uid === 0) return planIdMaps(host, [], [], enclosing);
  const read = async (path: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch {
      return '';
    }
  };
  return planIdMaps(host, parseSubIds(await read(files.subuid), host), parseSubIds(await read(files.subgid), host));
}

const flat = (maps: readonly IdMapping[]): string[] => maps.flatMap((m) => [String(m.containerID), String(m.hostID), String(m.size)]);

/** Writes the maps of process `pid`; throws SANDBOX_USERNS naming the file or helper. */
export async function writeIdMaps(pid: number, maps: IdMaps): Promise<void> {
  try {
    if (maps.method === 'helper') {
      // The two setuid helpers write different files: run them at once (each is a process start).
      await Promise.all([execFileAsync('newuidmap', [String(pid), ...flat(maps.uid)]), execFileAsync('newgidmap', [String(pid), ...flat(maps.gid)])]);
      return;
    }
    const text = (m: readonly IdMapping[]): string => m.map((x) => `${x.containerID} ${x.hostID} ${x.size}\n`).join('');
    // /proc writes complete in microseconds: synchronous calls skip the thread-pool round trips.
    if (maps.denySetgroups) writeFileSync(`/proc/${pid}/setgroups`, 'deny');
    writeFileSync(`/proc/${pid}/uid_map`, text(maps.uid));
    writeFileSync(`/proc/${pid}/gid_map`, text(maps.gid));
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    throw new TsbuildError('SANDBOX_USERNS', `cannot write the user namespace id maps of pid ${pid}: ${(e.stderr ?? e.message ?? String(err)).trim()}`, {
      cause: err,
      hint: maps.method === 'helper' ? 'newuidmap/newgidmap come from the Debian package "uidmap"; check /etc/subuid and /etc/subgid' : undefined,
      exitCode: 125,
    });
  }
}
