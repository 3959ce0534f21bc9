import { readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../core/index.js';
import { isPidRunning, randomHex } from '../sys/index.js';
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

/** True when the pid (parsed from a tmp file name `kind-<pid>-<rand>`) is a running process (a zombie is gone). */
function ownerAlive(name: string): boolean {
  const m = /^[a-z]+-(\d+)-/.exec(name);
  return m !== null && isPidRunning(Number(m[1]));
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
    // Blobs written since the oldest live lease may belong to a load that has not named them yet.
    let leaseSince = Infinity;
    for (const name of await readdir(store.paths.tmp).catch(() => [] as string[])) {
      if (!name.startsWith('lease-') || !ownerAlive(name)) continue;
      const st = await stat(join(store.paths.tmp, name)).catch(() => undefined);
      if (st !== undefined) leaseSince = Math.min(leaseSince, st.mtimeMs - 2000);
    }
    const removed: Digest[] = [];
    let bytes = 0;
    const candidates = options.candidates ?? store.blobs.list();
    for await (const digest of candidates as AsyncIterable<Digest>) {
      if (live.has(digest)) continue;
      const path = store.blobs.pathOf(digest);
      const st = await stat(path).catch(() => undefined);
      if (st === undefined || now - st.mtimeMs < grace || st.mtimeMs >= leaseSince) continue;
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

/** A held lease; `release()` is idempotent. */
export interface Lease {
  release(): Promise<void>;
}

/**
 * Takes a lease (a file `tmp/lease-<pid>-<rand>`) protecting blobs written from now on from a
 * concurrent {@link collectGarbage} until released (or until this process dies). Used by loads,
 * imports and builds between writing blobs and naming the image.
 */
export async function acquireLease(store: Store): Promise<Lease> {
  const path = join(store.paths.tmp, `lease-${process.pid}-${randomHex(6)}`);
  await writeFile(path, '');
  let done = false;
  return {
    async release() {
      if (done) return;
      done = true;
      await rm(path, { force: true });
    },
  };
}
