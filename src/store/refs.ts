import { isDigest, MediaType, TsbuildError, type Descriptor, type Digest, type ImageIndex } from '../core/index.js';
import { withLock } from './lock.js';
import { readIndex, REF_NAME_ANNOTATION, writeFileAtomic, type StorePaths } from './oci-layout.js';

/** One entry of the store's index.json: an image (manifest or index) and its name, if any. */
export interface RefEntry {
  /** Full normalised reference (`docker.io/library/busybox:latest`), undefined for untagged images. */
  readonly name: string | undefined;
  readonly descriptor: Descriptor;
}

/** The name of an index.json entry (its ref.name annotation). */
export function refNameOf(d: Descriptor): string | undefined {
  return d.annotations?.[REF_NAME_ANNOTATION];
}

/** Tags and untagged images as index.json entries; every update is taken under the store lock and renamed into place. */
export class RefStore {
  constructor(private readonly paths: StorePaths, private readonly lockTimeoutMs = 60_000) {}

  /** All entries, in index order. Throws `STORE_BAD_INDEX`. */
  async list(): Promise<readonly RefEntry[]> {
    const index = await readIndex(this.paths.index);
    return index.manifests.map((d) => ({ name: refNameOf(d), descriptor: d }));
  }

  /** The descriptor named `name` (a full normalised reference), or undefined. */
  async get(name: string): Promise<Descriptor | undefined> {
    return (await this.list()).find((e) => e.name === name)?.descriptor;
  }

  /**
   * Applies `edit` to the entry list under the lock and writes the result atomically; resolves
   * to what `edit` returned. Entries are kept sorted by name (untagged last) for stable output.
   */
  async update<T>(edit: (entries: Descriptor[]) => T): Promise<T> {
    return withLock(this.paths.lock, async () => {
      const index = await readIndex(this.paths.index);
      const entries = [...index.manifests];
      const result = edit(entries);
      for (const d of entries) {
        if (!isDigest(d.digest)) throw new TsbuildError('INTERNAL', `refusing to write a bad digest "${String(d.digest)}" into index.json`);
      }
      entries.sort((a, b) => compareNames(refNameOf(a), refNameOf(b)) || (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
      const next: ImageIndex = { ...index, schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries };
      await writeFileAtomic(this.paths.index, `${JSON.stringify(next, null, 2)}\n`, this.paths.tmp);
      return result;
    }, { timeoutMs: this.lockTimeoutMs });
  }

  /**
   * Points `name` at `target` (replacing a previous target); an untagged entry of the same
   * digest is dropped. Resolves to the digest the name pointed at before, if any.
   */
  async set(name: string, target: Descriptor): Promise<Digest | undefined> {
    return this.update((entries) => {
      let previous: Digest | undefined;
      for (let i = entries.length - 1; i >= 0; i--) {
        const e = entries[i] as Descriptor;
        const n = refNameOf(e);
        if (n === name) previous = e.digest;
        if (n === name || (n === undefined && e.digest === target.digest)) entries.splice(i, 1);
      }
      entries.push(withName(target, name));
      return previous;
    });
  }

  /** Records an image without a name unless an entry of that digest exists already. */
  async addUntagged(target: Descriptor): Promise<void> {
    await this.update((entries) => {
      if (!entries.some((e) => e.digest === target.digest)) entries.push(withName(target, undefined));
    });
  }

  /** Removes the entries that `match` selects; resolves to the removed ones. */
  async remove(match: (entry: RefEntry) => boolean): Promise<RefEntry[]> {
    return this.update((entries) => {
      const removed: RefEntry[] = [];
      for (let i = entries.length - 1; i >= 0; i--) {
        const d = entries[i] as Descriptor;
        const entry = { name: refNameOf(d), descriptor: d };
        if (match(entry)) {
          removed.unshift(entry);
          entries.splice(i, 1);
        }
      }
      return removed;
    });
  }
}

function compareNames(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  return a < b ? -1 : 1;
}

/** `d` with its ref.name annotation set to `name` (or removed when undefined). */
export function withName(d: Descriptor, name: string | undefined): Descriptor {
  const { [REF_NAME_ANNOTATION]: _old, ...others } = d.annotations ?? {};
  const annotations = name === undefined ? others : { ...others, [REF_NAME_ANNOTATION]: name };
  const { annotations: _a, ...rest } = d;
  return Object.keys(annotations).length === 0 ? rest : { ...rest, annotations };
}
