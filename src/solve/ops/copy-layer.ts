/**
 * A COPY layer made straight from its sources: the COPY runs on the view in deferred mode
 * (directories and symlinks are written to the fresh top layer, files only recorded), then the
 * layer tar is generated from that top layer plus the recorded files, each source file read once,
 * and stored as the blob (its sha256, computed by the blob store, is the diffID). The snapshot is
 * not committed: a later step that needs the files unpacks the layer from its blob (ensureChain),
 * as for any cached layer. The tar is the one packLayer would make of the materialised top layer
 * (same order, headers and PAX records; test/solve/copy-layer.test.ts compares them), except for
 * the mtime of directories receiving files, which is "now" in both (the copy time).
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Readable } from 'node:stream';
import { TsbuildError } from '../../core/index.js';
import type { CopyOp } from '../../plan/index.js';
import { getXattr, listXattrNames } from '../../sys/index.js';
import type { FileWrite, RootfsView } from '../rootfs-view.js';
import { commitActiveSnapshot, ensureChain, newSnapshotKey, viewOf } from '../snapshots.js';
import { BUILD_LAYER_MEDIA_TYPE } from './source.js';
import { TarBatcher, type TarXattr } from '../../layer/index.js';
import type { FsState, LayerRef, SolveDeps } from '../types.js';

const BLOCK = 512;
/** Files up to this size are read whole in one synchronous call. */
const SMALL = 256 * 1024;
// SECURITY: never follow a symlink swapped in for a source file, never block on a fifo.
const SRC_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** An entry of the layer: a directory or symlink of the top layer, or a recorded file. */
interface Node {
  readonly name: string;
  readonly key: Buffer;
  readonly file?: FileWrite;
  /** lstat of a top-layer entry. */
  readonly stat?: Stats;
  readonly abs?: string;
  children?: Node[];
}

/** True when a COPY can make its layer this way (its sources stay on disk until the layer is written). */
export function canStreamCopy(op: CopyOp): boolean {
  return op.instruction === 'COPY' && op.from.kind === 'context' && op.heredocs.length === 0;
}

function ioError(what: string, cause: unknown): TsbuildError {
  return new TsbuildError('SOLVE_IO', `${what}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause });
}

/** True when a top-layer entry carries an xattr packLayer would keep or interpret (then the fast path is not taken). */
function hasLayerXattrs(abs: string): boolean {
  for (const name of listXattrNames(abs)) {
    if (/^(trusted|user)\.overlay\./.test(name)) {
      if (!name.endsWith('.opaque') || getXattr(abs, name)?.toString() === 'y') return true;
    } else if ((name.startsWith('user.') && !name.includes('=')) || name === 'security.capability') {
      return true;
    }
  }
  return false;
}

/**
 * The tree of the top layer `upper` (directories and symlinks only) with the recorded `files`
 * hung below their parent directories, children sorted bytewise; undefined when the top layer
 * holds anything else (a regular file, a whiteout, xattrs) or a file's parent is missing.
 */
function planTree(upper: string, files: readonly FileWrite[]): Node[] | undefined {
  const byParent = new Map<string, FileWrite[]>();
  for (const f of files) {
    const parent = f.parts.slice(0, -1).join('/');
    let list = byParent.get(parent);
    if (list === undefined) byParent.set(parent, (list = []));
    list.push(f);
  }
  let placed = 0;
  const visit = (abs: string, rel: string): Node[] | undefined => {
    if (hasLayerXattrs(abs)) return undefined;
    const out: Node[] = [];
    for (const name of readdirSync(abs)) {
      const childAbs = `${abs}/${name}`;
      const st = lstatSync(childAbs);
      if (st.isDirectory()) {
        const children = visit(childAbs, rel === '' ? name : `${rel}/${name}`);
        if (children === undefined) return undefined;
        out.push({ name, key: Buffer.from(name), stat: st, abs: childAbs, children });
      } else if (st.isSymbolicLink()) {
        if (hasLayerXattrs(childAbs)) return undefined;
        out.push({ name, key: Buffer.from(name), stat: st, abs: childAbs });
      } else {
        return undefined;
      }
    }
    for (const f of byParent.get(rel) ?? []) {
      const name = f.parts[f.parts.length - 1] as string;
      out.push({ name, key: Buffer.from(name), file: f });
      placed++;
    }
    return out.sort((a, b) => Buffer.compare(a.key, b.key));
  };
  let root: Node[] | undefined;
  try {
    root = visit(upper, '');
  } catch (e) {
    throw ioError(`cannot read ${upper}`, e);
  }
  return root === undefined || placed !== files.length ? undefined : root;
}

/**
 * Appends the header packLayer writes for the same entry (no device numbers, no xattrs: those
 * take the fallback), encoded in place: one object of one shape per entry, no header buffer.
 */
function putHeader(out: TarBatcher, name: string, type: 'file' | 'directory' | 'symlink', mode: number, uid: number, gid: number, size: number, mtime: number, linkname: string): void {
  out.header({ name, type, mode: mode & 0o7777, uid, gid, size, mtime, linkname, devmajor: 0, devminor: 0, xattrs: NO_XATTRS });
}

const NO_XATTRS: readonly TarXattr[] = [];

/** Options of {@link streamLayerTar}. */
interface TarOptions {
  readonly sourceDateEpoch?: number | undefined;
  /** Seconds: the mtime of directories that receive files (they would have been written now). */
  readonly now: number;
}

/** Generates the layer tar of `tree` (from {@link planTree}). */
async function* generateTar(out: TarBatcher, tree: Node[], options: TarOptions): AsyncGenerator<Buffer> {
  const small = Buffer.allocUnsafe(SMALL + 1);
  const clamp = (seconds: number): number => {
    const s = Math.max(0, Math.floor(seconds));
    return options.sourceDateEpoch !== undefined && s > options.sourceDateEpoch ? Math.max(0, Math.floor(options.sourceDateEpoch)) : s;
  };
  const stack: { rel: string; nodes: Node[]; next: number }[] = [{ rel: '', nodes: tree, next: 0 }];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as (typeof stack)[number];
    const node = frame.nodes[frame.next++];
    if (node === undefined) {
      stack.pop();
      continue;
    }
    const name = frame.rel + node.name;
    if (node.file !== undefined) {
      yield* writeFileEntry(out, name, node.file, small, clamp);
    } else {
      const st = node.stat as Stats;
      if (node.children !== undefined) {
        const receives = node.children.some((c) => c.file !== undefined);
        putHeader(out, `${name}/`, 'directory', st.mode, st.uid, st.gid, 0, clamp(receives ? options.now : st.mtimeMs / 1000), '');
        stack.push({ rel: `${name}/`, nodes: node.children, next: 0 });
      } else {
        let target: string;
        try {
          target = readlinkSync(node.abs as string);
        } catch (e) {
          throw ioError(`cannot read symlink /${name}`, e);
        }
        putHeader(out, name, 'symlink', st.mode, st.uid, st.gid, 0, clamp(st.mtimeMs / 1000), target);
      }
    }
    if (out.ready.length > 0) yield* out.ready.splice(0);
  }
  out.zeros(2 * BLOCK);
  out.flush(0);
  yield* out.ready.splice(0);
}

/** Appends the header of a recorded file of `size` bytes. */
function fileHeader(out: TarBatcher, name: string, f: FileWrite, size: number, clamp: (s: number) => number): void {
  putHeader(out, name, 'file', f.meta.mode, f.meta.uid, f.meta.gid, size, clamp(f.meta.mtime ?? Date.now() / 1000), '');
}

/** Writes one recorded file: small ones read whole first, large ones streamed (size from fstat). */
function* writeFileEntry(out: TarBatcher, name: string, f: FileWrite, small: Buffer, clamp: (s: number) => number): Generator<Buffer> {
  let fd: number;
  try {
    fd = openSync(f.source, SRC_FLAGS);
  } catch (e) {
    throw ioError(`cannot copy ${f.source} to /${f.parts.join('/')}`, e);
  }
  try {
    const header = (size: number): void => fileHeader(out, name, f, size, clamp);
    let n = 0;
    if (f.size <= SMALL) {
      // Read to the end (a short read of a regular file is its end) unless it grew past SMALL.
      for (;;) {
        const k = readSync(fd, small, n, small.length - n, null);
        n += k;
        if (k === 0 || n === small.length) break;
      }
      if (n <= SMALL) {
        header(n);
        out.put(small.subarray(0, n));
        out.zeros((BLOCK - (n % BLOCK)) % BLOCK);
        return;
      }
    }
    const st = fstatSync(fd);
    if (!st.isFile()) throw new TsbuildError('SOLVE_IO', `${f.source} is no longer a regular file`);
    const size = st.size;
    header(size);
    // What was read already (a small file that grew) goes first.
    if (n > 0) out.put(small.subarray(0, Math.min(n, size)));
    let left = size - Math.min(n, size);
    while (left > 0) {
      if (out.used === out.buf.length) {
        out.flush();
        yield* out.ready.splice(0);
      }
      const k = readSync(fd, out.buf, out.used, Math.min(left, out.buf.length - out.used), null);
      if (k === 0) throw new TsbuildError('SOLVE_IO', `${f.source} shrank while it was being copied`);
      out.used += k;
      left -= k;
    }
    out.zeros((BLOCK - (size % BLOCK)) % BLOCK);
  } catch (e) {
    throw e instanceof TsbuildError ? e : ioError(`cannot copy ${f.source} to /${f.parts.join('/')}`, e);
  } finally {
    closeSync(fd);
  }
}

/**
 * The layer tar of the top layer `upper` plus the deferred `files` (see RootfsView.deferFiles),
 * made in the buffers of `out` (a consumer gives chunks back with `out.recycle`), or undefined
 * when the top layer holds something this writer does not reproduce (then the caller materialises
 * the files and packs the directory as usual).
 */
export function streamLayerTar(upper: string, files: readonly FileWrite[], options: TarOptions, out = new TarBatcher()): Readable | undefined {
  const tree = planTree(upper, files);
  if (tree === undefined) return undefined;
  return Readable.from(generateTar(out, tree, options), { objectMode: false, highWaterMark: 1 });
}

/** Layers whose files add up to this many bytes are hashed on a worker thread (starting one costs ~20 ms of CPU). */
const THREAD_HASH_BYTES = 32 * 1024 * 1024;

/** Options of {@link withStreamedCopy}. */
export interface StreamedCopyOptions {
  readonly sourceDateEpoch?: number | undefined;
  /** The clock (ms) for the mtime of directories receiving files. */
  readonly now?: () => number;
}

/**
 * Runs `fn` (a COPY) on a view over `state` in deferred mode and stores its layer straight from
 * the sources, without committing a snapshot (see the module comment). Falls back to copying the
 * files and packing the top layer (committing the snapshot then) when the fast path does not fit.
 */
export async function withStreamedCopy(deps: SolveDeps, state: FsState, signal: AbortSignal, options: StreamedCopyOptions, fn: (view: RootfsView) => Promise<void>): Promise<LayerRef> {
  const parent = await ensureChain(deps, state, signal);
  const key = newSnapshotKey();
  const active = await deps.snapshotter.prepare(key, parent);
  let committed = false;
  try {
    const view = viewOf(active);
    view.deferFiles();
    await fn(view);
    signal.throwIfAborted();
    const m = active.mounts();
    const upper = m.type === 'overlay' ? m.upperdir : m.source;
    if (deps.snapshotter.kind === 'overlay') {
      const files = view.deferredFiles();
      const out = new TarBatcher();
      const tar = streamLayerTar(upper, files, { sourceDateEpoch: options.sourceDateEpoch, now: Math.floor((options.now ?? Date.now)() / 1000) }, out);
      if (tar !== undefined) {
        // A big layer's sha256 runs on another core (when there is one) while this thread reads the files into the tar.
        const hashOnThread = availableParallelism() > 1 && files.reduce((n, f) => n + f.size, 0) >= THREAD_HASH_BYTES;
        const blob = await deps.store.blobs.put(tar, undefined, { signal, hashOnThread, release: (chunk) => out.recycle(chunk) });
        return { diffId: blob.digest, digest: blob.digest, size: blob.size, mediaType: BUILD_LAYER_MEDIA_TYPE };
      }
    }
    await view.materializeDeferred();
    const layer = await commitActiveSnapshot(deps, key, signal, options.sourceDateEpoch);
    committed = true;
    return layer;
  } finally {
    if (!committed) await deps.snapshotter.remove(key).catch(() => undefined);
  }
}

export { verticesNeedingFiles } from './step-checks.js';
