import { readlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { TsbuildError, type SourceLocation } from '../../core/index.js';
import { cleanGoPath, hasGoWildcards, matchGoPattern, type ContextSelection } from '../../context/index.js';
import type { CopyOp, Vertex } from '../../plan/index.js';
import { parseGroup, parsePasswd, resolveUserFromTables } from '../../sandbox/index.js';
import { baseNameOf, type FileWrite, type RootfsView, type WriteMeta } from '../rootfs-view.js';
import { remoteKindOf } from './add-remote-kind.js';
import { parseChmod } from './copy-chmod.js';
import { compileExcludes, excludeEntries, parentsPath, parentsPivot } from './copy-select.js';
import { withLoc } from './step-checks.js';

export { checkCopySupported, contextPatterns } from './step-checks.js';

/** One entry to copy, from the context or from another state, relative to its source root. */
export interface CopyEntry {
  /** `''` for the source root itself, else `a/b` below it. */
  readonly rel: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'other';
  readonly hostPath: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
  readonly linkTarget?: string;
  /** Bytes of a file when selected (a hint choosing how it is copied); unknown is treated as large. */
  readonly size?: number;
}

/** One source of a COPY resolved to its entries. */
export interface CopySource {
  /** The path the source named (its base name is used when copying into a directory). */
  readonly name: string;
  readonly entries: readonly CopyEntry[];
  /** `--parents`: the leading part of `name` not kept below the destination (before a `/./` pivot). */
  readonly pivot?: string;
}

/** All sources of a COPY; `wildcard` when a pattern matched (possibly several) paths. */
export interface CopySources {
  readonly sources: readonly CopySource[];
  readonly wildcard: boolean;
}

const MAX_USER_DB = 4 * 1024 * 1024;


/** The sources of a COPY without what `--exclude` removes. */
export function excludeFromSources(src: CopySources, patterns: readonly string[]): CopySources {
  const matcher = compileExcludes(patterns);
  if (matcher === undefined) return src;
  return { wildcard: src.wildcard, sources: src.sources.map((s) => ({ ...s, entries: excludeEntries(matcher, s.name, s.entries) })) };
}

/** The entries of a context selection (owners become root, as Docker does for context files). */
export function contextSources(sel: ContextSelection): CopySources {
  const sources: CopySource[] = [];
  let wildcard = false;
  for (const s of sel.sources) {
    wildcard ||= s.wildcard;
    const pivot = parentsPivot(s.pattern);
    for (const m of s.matches) {
      sources.push({
        name: m.source,
        ...(pivot === '' ? {} : { pivot }),
        entries: m.entries.map((e) => ({
          rel: e.rel,
          type: e.type,
          hostPath: e.absPath,
          mode: e.stat.mode & 0o7777,
          uid: 0,
          gid: 0,
          mtime: Math.trunc(e.stat.mtimeMs * 1000) / 1e6,
          size: e.stat.size,
          ...(e.linkTarget === undefined ? {} : { linkTarget: e.linkTarget }),
        })),
      });
    }
  }
  return { sources, wildcard };
}

/**
 * Writes the here-document sources of a COPY as files in `tmpDir` (mode 0644, mtime `mtime`) and
 * puts them before the context sources. Returns the
 * sources and a cleanup that removes the temporary files.
 */
export async function withHeredocSources(op: CopyOp, fromContext: CopySources, tmpDir: string, mtime: number): Promise<{ sources: CopySources; cleanup: () => Promise<void> }> {
  if (op.heredocs.length === 0) return { sources: fromContext, cleanup: async () => undefined };
  const files: string[] = [];
  const bodies = new Map(op.heredocs.map((h) => [h.name, h.content] as const));
  const ordered: CopySource[] = [];
  try {
    for (const name of op.sources) {
      const body = bodies.get(name);
      if (body !== undefined) {
        const file = join(tmpDir, `heredoc-${process.pid}-${randomBytes(6).toString('hex')}`);
        await writeFile(file, body, { mode: 0o644 });
        files.push(file);
        ordered.push({ name, entries: [{ rel: '', type: 'file', hostPath: file, mode: 0o644, uid: 0, gid: 0, mtime }] });
      }
    }
  } catch (err) {
    await Promise.all(files.map((f) => rm(f, { force: true })));
    throw new TsbuildError('SOLVE_IO', `cannot write a here-document to ${tmpDir}: ${(err as Error).message}`, { cause: err });
  }
  // Here-documents first, then the context sources in their order.
  ordered.push(...fromContext.sources);
  return {
    sources: { sources: ordered, wildcard: fromContext.wildcard },
    cleanup: async () => {
      await Promise.all(files.map((f) => rm(f, { force: true })));
    },
  };
}

/** Every entry at and below the canonical `parts` of a view (owners kept), root first, sorted pre-order. */
function viewEntries(view: RootfsView, parts: readonly string[]): CopyEntry[] {
  const entries: CopyEntry[] = [];
  const visit = (p: readonly string[], rel: string): void => {
    const e = view.lookupParts(p);
    if (e === undefined) return;
    const st = e.stat;
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    entries.push({
      rel,
      type,
      hostPath: e.hostPath,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtimeMs / 1000,
      size: st.size,
      ...(type === 'symlink' ? { linkTarget: readLink(e.hostPath) } : {}),
    });
    if (type === 'dir') for (const n of view.readdirParts(p)) visit([...p, n], rel === '' ? n : `${rel}/${n}`);
  };
  visit(parts, '');
  return entries;
}

/**
 * The paths below `fixed` (canonical parts of a directory) whose path relative to it matches the Go
 * pattern `wild` (Docker's rules: `filepath.Match` per path, a matched directory is taken whole).
 */
function matchInView(view: RootfsView, fixed: readonly string[], wild: string): string[] {
  const limit = wild.split('/').length;
  const out: string[] = [];
  const visit = (p: readonly string[], rel: string, depth: number): void => {
    for (const name of view.readdirParts(p)) {
      const r = rel === '' ? name : `${rel}/${name}`;
      if (matchGoPattern(wild, r).matched) {
        out.push(r);
        continue;
      }
      if (depth + 1 < limit && view.lookupParts([...p, name])?.stat.isDirectory() === true) visit([...p, name], r, depth + 1);
    }
  };
  if (view.lookupParts(fixed)?.stat.isDirectory() === true) visit(fixed, '', 0);
  return out.sort();
}

/**
 * The entries of `paths` in another state's view (owners kept). Wildcards match as in the build
 * context (each match copied by its base name); SOLVE_COPY_NOT_FOUND for a path or pattern that
 * matches nothing, SOLVE_BAD_PATTERN for a malformed pattern.
 */
export function viewSources(view: RootfsView, paths: readonly string[], loc: SourceLocation | undefined, what: string): CopySources {
  const sources: CopySource[] = [];
  let wildcard = false;
  const notFound = (path: string): TsbuildError => new TsbuildError('SOLVE_COPY_NOT_FOUND', `COPY source "${path}" not found in ${what}`, loc === undefined ? {} : { loc });
  for (const path of paths) {
    const pivot = parentsPivot(path);
    const extra = pivot === '' ? {} : { pivot };
    const clean = cleanGoPath(path.replace(/^\/+/, ''));
    const comps = clean === '.' ? [] : clean.split('/');
    const i = comps.findIndex(hasGoWildcards);
    if (i < 0) {
      const parts = view.resolve(posix.join('/', path), true);
      if (view.lookupParts(parts) === undefined) throw notFound(path);
      sources.push({ name: path, entries: viewEntries(view, parts), ...extra });
      continue;
    }
    wildcard = true;
    const wild = comps.slice(i).join('/');
    if (matchGoPattern(wild, '').bad) {
      throw new TsbuildError('SOLVE_BAD_PATTERN', `COPY source "${path}" is not a valid wildcard pattern`, loc === undefined ? {} : { loc });
    }
    const fixedName = comps.slice(0, i).join('/');
    const matches = matchInView(view, view.resolve(`/${fixedName}`, true), wild);
    if (matches.length === 0) throw notFound(path);
    for (const m of matches) {
      const name = fixedName === '' ? m : `${fixedName}/${m}`;
      sources.push({ name, entries: viewEntries(view, view.resolve(`/${name}`, true)), ...extra });
    }
  }
  return { sources, wildcard };
}

function readLink(path: string): string {
  try {
    return readlinkSync(path);
  } catch (e) {
    throw new TsbuildError('SOLVE_IO', `cannot read symlink ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/**
 * Resolves `--chown=user[:group]` in the destination's /etc/passwd and /etc/group (a lone user also
 * sets the group to the same number, as Docker); errors carry `loc` when given.
 */
export function resolveChown(view: RootfsView, chown: string, loc?: SourceLocation): { uid: number; gid: number } {
  try {
    const passwd = view.readSmallFile('/etc/passwd', MAX_USER_DB);
    const group = view.readSmallFile('/etc/group', MAX_USER_DB);
    const r = resolveUserFromTables(chown, passwd === undefined ? undefined : parsePasswd(passwd), group === undefined ? undefined : parseGroup(group));
    return chown.includes(':') ? { uid: r.uid, gid: r.gid } : { uid: r.uid, gid: r.uid };
  } catch (err) {
    throw err instanceof TsbuildError ? withLoc(err, loc) : err;
  }
}

/** Options of {@link copyInto}. */
export interface CopyIntoOptions {
  /** The `--chown` owner resolved elsewhere (`--link` resolves names in the parent state). */
  readonly owner?: { readonly uid: number; readonly gid: number };
}

/**
 * Copies `src` into the view with Docker's rules: a directory source copies its contents into
 * `dest`; a file goes to `dest` itself unless `dest` ends with `/`, is an existing directory or
 * several sources are copied (then into it under its base name). With `--parents` every source
 * keeps its path (after a `/./` pivot) below `dest`. Modes and mtimes are kept; owners become
 * `--chown`, modes `--chmod` (octal or symbolic) when given. Parent directories are created (0755).
 */
export async function copyInto(view: RootfsView, op: CopyOp, src: CopySources, loc: SourceLocation | undefined, options: CopyIntoOptions = {}): Promise<void> {
  try {
    const owner = options.owner ?? (op.chown === undefined ? undefined : resolveChown(view, op.chown));
    const chmod = op.chmod === undefined ? undefined : parseChmod(op.chmod);
    const dirMeta: WriteMeta = { uid: owner?.uid ?? 0, gid: owner?.gid ?? 0, mode: 0o755 };
    const many = src.sources.length > 1 || src.wildcard;
    const destIsDir = op.dest.endsWith('/');
    const meta = (e: CopyEntry): WriteMeta => ({
      uid: owner?.uid ?? e.uid,
      gid: owner?.gid ?? e.gid,
      mode: chmod === undefined ? e.mode : chmod(e.mode, e.type === 'dir'),
      mtime: e.mtime,
    });
    for (const s of src.sources) {
      const root = s.entries[0];
      if (root === undefined) continue;
      let base: string[];
      if (op.parents) {
        const rel = parentsPath(s.name, s.pivot ?? '');
        base = view.resolve(rel === '' ? op.dest : posix.join(op.dest, rel), root.type === 'dir');
        if (root.type === 'dir') {
          if (view.lookupParts(base) === undefined) {
            view.ensureDirParts(base.slice(0, -1), dirMeta);
            view.writeDir(base, meta(root));
          } else {
            view.ensureDirParts(base, dirMeta);
          }
        } else {
          view.ensureDirParts(base.slice(0, -1), dirMeta);
        }
      } else if (root.type === 'dir') {
        base = view.resolve(op.dest, true);
        if (view.lookupParts(base) === undefined) view.writeDir(base, meta(root));
        else view.ensureDirParts(base, dirMeta);
      } else {
        const target = view.lookup(op.dest, true);
        if (destIsDir || many || (target !== undefined && target.stat.isDirectory())) {
          const dir = view.resolve(op.dest, true);
          view.ensureDirParts(dir, dirMeta);
          base = [...dir, baseNameOf(s.name)];
        } else {
          const dir = view.resolve(posix.dirname(op.dest), true);
          view.ensureDirParts(dir, dirMeta);
          base = [...dir, posix.basename(op.dest)];
        }
      }
      // Directories and symlinks in order (pre-order: a directory before its contents), files after
      // them in one batch; each source is finished before the next (a later one may overwrite).
      const files: FileWrite[] = [];
      for (const e of s.entries) {
        const parts = e.rel === '' ? base : [...base, ...e.rel.split('/')];
        if (e.rel === '' && e.type === 'dir') continue;
        switch (e.type) {
          case 'file':
            files.push({ parts, source: e.hostPath, meta: meta(e), size: e.size ?? Number.MAX_SAFE_INTEGER });
            break;
          case 'dir':
            view.writeDir(parts, meta(e));
            break;
          case 'symlink':
            view.writeSymlink(parts, e.linkTarget ?? '', meta(e));
            break;
          case 'other':
            throw new TsbuildError('SOLVE_COPY_SPECIAL', `cannot copy ${s.name}${e.rel === '' ? '' : `/${e.rel}`}: device nodes, fifos and sockets are not copied`);
        }
      }
      await view.writeFiles(files);
    }
  } catch (err) {
    throw err instanceof TsbuildError ? withLoc(err, loc) : err;
  }
}
