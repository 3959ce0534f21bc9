import { access, link, mkdir, open, rename, unlink } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MediaType, TsbuildError, type ImageIndex } from '../core/index.js';
import { randomHex } from '../sys/index.js';

/** The content of the `oci-layout` file. */
export const OCI_LAYOUT_FILE = JSON.stringify({ imageLayoutVersion: '1.0.0' });
/** The annotation holding a ref name in an OCI layout's index.json. */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** The annotation containerd and docker put the full image name in. */
export const IMAGE_NAME_ANNOTATION = 'io.containerd.image.name';
/**
 * On a tag a pull set to one platform's manifest of a multi-platform image: the index's digest (the
 * store keeps the index blob), so another platform already in the store is found without the registry.
 */
export const PULLED_INDEX_ANNOTATION = 'dev.tsbuild.pulled.index';

/** The directories of a store root. */
export interface StorePaths {
  readonly root: string;
  readonly blobs: string;
  readonly index: string;
  readonly lock: string;
  readonly tmp: string;
  readonly snapshots: string;
  readonly cache: string;
  readonly containers: string;
}

/** Computes the paths of a store rooted at `root` (no I/O). */
export function storePaths(root: string): StorePaths {
  return {
    root,
    blobs: join(root, 'blobs', 'sha256'),
    index: join(root, 'index.json'),
    lock: join(root, 'index.json.lock'),
    tmp: join(root, 'tmp'),
    snapshots: join(root, 'snapshots'),
    cache: join(root, 'cache'),
    containers: join(root, 'containers'),
  };
}

/** An empty OCI index. */
export function emptyIndex(): ImageIndex {
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
}

/** Writes `data` to `path` atomically (tmp file in `tmpDir`, fsync, rename). */
export async function writeFileAtomic(path: string, data: string, tmpDir: string): Promise<void> {
  const tmp = join(tmpDir, `file-${process.pid}-${randomHex(8)}`);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new TsbuildError('STORE_IO', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Creates `path` with `data` only if it does not exist yet (atomic: link of a complete tmp file). */
async function createIfMissing(path: string, data: string, tmpDir: string): Promise<void> {
  if (await access(path).then(() => true, () => false)) return;
  const tmp = join(tmpDir, `init-${process.pid}-${randomHex(8)}`);
  await writeFileAtomic(tmp, data, tmpDir);
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new TsbuildError('STORE_IO', `cannot create ${path}: ${(err as Error).message}`, { cause: err });
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/**
 * Creates the store layout under `root` when missing (idempotent, safe concurrently):
 * oci-layout, index.json, blobs/sha256/, tmp/, snapshots/, cache/, containers/.
 * Throws `STORE_IO` (e.g. `STORE_IO` with a hint when the directory is not writable).
 */
export async function initLayout(root: string): Promise<StorePaths> {
  const p = storePaths(root);
  // Every command opens the store: a complete layout is checked with seven stat calls on this thread, where the
  // creating path below takes seven thread-pool round trips in a row (0.5-3 ms at a run's start, while the
  // launcher and slirp4netns start on the same two cores).
  if (layoutComplete(root, p)) return p;
  try {
    for (const dir of [p.blobs, p.tmp, p.snapshots, p.cache, p.containers]) await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new TsbuildError('STORE_IO', `cannot create the store at ${root}: ${(err as Error).message}`, {
      cause: err,
      hint: 'choose a writable directory with --root or $TSBUILD_ROOT',
    });
  }
  await createIfMissing(join(root, 'oci-layout'), OCI_LAYOUT_FILE, p.tmp);
  await createIfMissing(p.index, `${JSON.stringify(emptyIndex(), null, 2)}\n`, p.tmp);
  return p;
}

/** Whether the store at `root` has all of its layout (the directories and files {@link initLayout} creates). */
function layoutComplete(root: string, p: StorePaths): boolean {
  try {
    return [p.blobs, p.tmp, p.snapshots, p.cache, p.containers].every((d) => statSync(d, { throwIfNoEntry: false })?.isDirectory() === true)
      && [join(root, 'oci-layout'), p.index].every((f) => statSync(f, { throwIfNoEntry: false })?.isFile() === true);
  } catch {
    // unreadable (EACCES, ENOTDIR): the creating path reports it
    return false;
  }
}

/** Reads index.json. Throws `STORE_BAD_INDEX` when it is not an OCI index. */
export async function readIndex(path: string): Promise<ImageIndex> {
  let text: string;
  try {
    // Synchronous: index.json is read on the path of every command (a few KiB; one call instead of four round trips).
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyIndex();
    throw new TsbuildError('STORE_IO', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new TsbuildError('STORE_BAD_INDEX', `${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const d = doc as Partial<ImageIndex> | null;
  if (d === null || typeof d !== 'object' || d.schemaVersion !== 2 || !Array.isArray(d.manifests)) {
    throw new TsbuildError('STORE_BAD_INDEX', `${path} is not an OCI image index (schemaVersion 2 with a manifests array)`);
  }
  return d as ImageIndex;
}
