import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../core/index.js';
import { withLock } from './lock.js';
import type { Store } from './store.js';
import { reachableDigests } from './walk.js';

/** Options of {@link collectGarbage}. */
export interface GcOptions {
  /** Keep unreferenced blobs modified less than this long ago (a concurrent load may not have named them yet). Default 0. */
  readonly graceMs?: number;
  /** Only consider these blobs (e.g. those of an image just removed); default every blob. */
  readonly candidates?: Iterable<Digest>;
  /** Report without deleting. */
  readonly dryRun?: boolean;
  /** Current time (ms), for tests. */
  readonly now?: number;
}

/** What {@link collectGarbage} removed. */
export interface GcReport {
  readonly blobs: readonly Digest[];
  readonly bytes: number;
  readonly tmpEntries: number;
}

/** True when the pid (parsed from a tmp file name `kind-<pid>-<rand>`) is a live process. */
function ownerAlive(name: string): boolean {
  const m = /^[a-z]+-(\d+)-/.exec(name);
  if (m === null) return false;
  try {
    process.kill(Number(m[1]), 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes blobs no index.json entry reaches (under the index lock, so no tag can appear
 * meanwhile) and the tmp/ leftovers of writers that are no longer running. Snapshots are
 * not touched here (the snapshot module owns their references).
 */
export async function collectGarbage(store: Store, options: GcOptions = {}): Promise<GcReport> {
  const now = options.now ?? Date.now();
  const grace = options.graceMs ?? 0;
  return withLock(store.paths.lock, async () => {
    const entries = await store.refs.list();
    const live = await reachableDigests(store.blobs, entries.map((e) => e.descriptor));
    const removed: Digest[] = [];
    let bytes = 0;
    const candidates = options.candidates ?? store.blobs.list();
    for await (const digest of candidates as AsyncIterable<Digest>) {
      if (live.has(digest)) continue;
      const path = store.blobs.pathOf(digest);
      const st = await stat(path).catch(() => undefined);
      if (st === undefined || now - st.mtimeMs < grace) continue;
      if (options.dryRun !== true) await store.blobs.delete(digest);
      removed.push(digest);
      bytes += st.size;
    }
    let tmpEntries = 0;
    const names = await readdir(store.paths.tmp).catch(() => [] as string[]);
    for (const name of names) {
      if (ownerAlive(name)) continue;
      if (options.dryRun !== true) await rm(join(store.paths.tmp, name), { recursive: true, force: true });
      tmpEntries++;
    }
    return { blobs: removed, bytes, tmpEntries };
  });
}
