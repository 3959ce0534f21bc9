import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { TsbuildError } from '../../core/index.js';
import type { CopyEntry } from './copy.js';

/** Options of {@link hostTreeEntries}. */
export interface HostTreeOptions {
  /** Relative paths (and everything below them) to leave out, e.g. `.git`. */
  readonly skip?: ReadonlySet<string>;
  /** Owner of every entry instead of the one on disk. */
  readonly owner?: { readonly uid: number; readonly gid: number };
  /** Modification time (seconds) of every entry instead of the one on disk. */
  readonly mtime?: number;
  /** Metadata of the root directory (it is often a temporary directory with mode 0700). */
  readonly rootMeta?: { readonly mode: number; readonly uid: number; readonly gid: number };
}

function typeOf(st: Stats): CopyEntry['type'] {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
}

function ioError(what: string, cause: unknown): TsbuildError {
  return new TsbuildError('SOLVE_IO', `${what}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause });
}

/**
 * The entries of a directory tree on the host (an extracted archive, a git checkout) as COPY
 * entries: the root first (`rel === ''`), then sorted pre-order. Symlinks are listed, never
 * followed. SECURITY: only `dir` and what lies below it is read.
 */
export function hostTreeEntries(dir: string, options: HostTreeOptions = {}): CopyEntry[] {
  const out: CopyEntry[] = [];
  const add = (hostPath: string, rel: string): void => {
    let st: Stats;
    try {
      st = lstatSync(hostPath);
    } catch (e) {
      throw ioError(`cannot read ${hostPath}`, e);
    }
    const type = typeOf(st);
    const root = rel === '' ? options.rootMeta : undefined;
    let linkTarget: string | undefined;
    if (type === 'symlink') {
      try {
        linkTarget = readlinkSync(hostPath);
      } catch (e) {
        throw ioError(`cannot read symlink ${hostPath}`, e);
      }
    }
    out.push({
      rel,
      type,
      hostPath,
      mode: root?.mode ?? st.mode & 0o7777,
      uid: root?.uid ?? options.owner?.uid ?? st.uid,
      gid: root?.gid ?? options.owner?.gid ?? st.gid,
      mtime: options.mtime ?? st.mtimeMs / 1000,
      size: st.size,
      ...(linkTarget === undefined ? {} : { linkTarget }),
    });
    if (type !== 'dir') return;
    let names: string[];
    try {
      names = readdirSync(hostPath).sort();
    } catch (e) {
      throw ioError(`cannot list ${hostPath}`, e);
    }
    for (const n of names) {
      const childRel = rel === '' ? n : `${rel}/${n}`;
      if (options.skip?.has(childRel) === true) continue;
      add(`${hostPath}/${n}`, childRel);
    }
  };
  add(dir, '');
  return out;
}
