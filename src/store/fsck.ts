import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { TsbuildError, type Digest } from '../core/index.js';
import type { Store } from './store.js';
import { walkImages } from './walk.js';

/** A problem found by {@link checkStore}. */
export interface FsckProblem {
  readonly kind: 'corrupt-blob' | 'missing-blob' | 'size-mismatch' | 'bad-index' | 'unreadable' | 'invalid-image';
  readonly digest?: Digest;
  /** The reference or document through which the blob is needed. */
  readonly via?: string;
  readonly message: string;
}

/** What {@link checkStore} found. */
export interface FsckReport {
  readonly blobs: number;
  readonly bytes: number;
  readonly references: number;
  readonly problems: readonly FsckProblem[];
  /** Files left in tmp/ by interrupted writers (garbage, not a problem; `prune` removes them). */
  readonly tmpLeftovers: number;
  /** Blobs no reference needs (garbage, not a problem; `prune` removes them). */
  readonly unreferenced: number;
}

async function hashBlob(store: Store, digest: Digest): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(await store.blobs.open(digest), new Writable({
    write(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb();
    },
  }));
  return { digest: `sha256:${hash.digest('hex')}` as Digest, size };
}

/**
 * Verifies the store: re-hashes every blob, and walks every index.json entry checking that all
 * the blobs it needs exist with the size their descriptor states. Read-only; never throws for
 * damage it finds (it reports it), only for I/O errors on the root itself (`STORE_IO`).
 */
export async function checkStore(store: Store, options: { signal?: AbortSignal } = {}): Promise<FsckReport> {
  const problems: FsckProblem[] = [];
  let blobs = 0;
  let bytes = 0;
  const corrupt = new Set<string>();
  const all = new Set<string>();
  for await (const digest of store.blobs.list()) {
    options.signal?.throwIfAborted();
    blobs++;
    all.add(digest);
    try {
      const got = await hashBlob(store, digest);
      bytes += got.size;
      if (got.digest !== digest) {
        corrupt.add(digest);
        problems.push({ kind: 'corrupt-blob', digest, message: `blob ${digest} has content ${got.digest}` });
      }
    } catch (err) {
      problems.push({ kind: 'unreadable', digest, message: `cannot read blob ${digest}: ${(err as Error).message}` });
    }
  }
  let references = 0;
  const reachable = new Set<string>();
  try {
    const entries = await store.refs.list();
    references = entries.length;
    await walkImages(store.blobs, entries.map((e) => e.descriptor), async (n) => {
      const d = n.descriptor;
      reachable.add(d.digest);
      const via = n.parent ?? entries.find((e) => e.descriptor.digest === d.digest)?.name ?? 'index.json';
      if (!n.present) {
        problems.push({ kind: 'missing-blob', digest: d.digest, via, message: `blob ${d.digest} (${d.mediaType}) needed by ${via} is missing` });
        return;
      }
      const st = await store.blobs.stat(d.digest);
      if (st !== undefined && st.size !== d.size) {
        problems.push({ kind: 'size-mismatch', digest: d.digest, via, message: `blob ${d.digest} is ${st.size} bytes, ${via} says ${d.size}` });
      }
    });
  } catch (err) {
    if (!(err instanceof TsbuildError)) throw err;
    problems.push({ kind: 'bad-index', message: err.message });
  }
  let tmpLeftovers = 0;
  try {
    tmpLeftovers = (await readdir(store.paths.tmp)).length;
  } catch {
    tmpLeftovers = 0;
  }
  const unreferenced = [...all].filter((d) => !reachable.has(d)).length;
  return { blobs, bytes, references, problems, tmpLeftovers, unreferenced };
}
