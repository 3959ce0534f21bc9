import { closeSync, openSync, readlinkSync, readSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { notSupportedYet, TsbuildError, type SourceLocation } from '../../core/index.js';
import type { ContextSelection } from '../../context/index.js';
import type { CopyOp, Vertex } from '../../plan/index.js';
import { parseGroup, parsePasswd, resolveUserFromTables } from '../../sandbox/index.js';
import { baseNameOf, type RootfsView, type WriteMeta } from '../rootfs-view.js';

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
}

/** One source of a COPY resolved to its entries. */
export interface CopySource {
  /** The path the source named (its base name is used when copying into a directory). */
  readonly name: string;
  readonly entries: readonly CopyEntry[];
}

/** All sources of a COPY; `wildcard` when a pattern matched (possibly several) paths. */
export interface CopySources {
  readonly sources: readonly CopySource[];
  readonly wildcard: boolean;
}

const MAX_USER_DB = 4 * 1024 * 1024;

function withLoc(e: TsbuildError, loc: SourceLocation | undefined): TsbuildError {
  return loc === undefined ? e : new TsbuildError(e.code, e.message, { loc, ...(e.hint === undefined ? {} : { hint: e.hint }) });
}

/** Rejects the COPY/ADD features of later work with CLI_NOT_SUPPORTED. */
export function checkCopySupported(op: CopyOp, vertex: Vertex): void {
  const no = (what: string, hint?: string): never => {
    throw withLoc(notSupportedYet(what, hint), vertex.loc);
  };
  if (op.instruction === 'ADD' && op.sources.some((s) => /^[a-z][a-z0-9+.-]*:\/\//i.test(s) || /^git@/.test(s))) {
    no('ADD of a URL or git repository', 'download the file in a RUN step or use COPY for local files');
  }
  if (op.instruction === 'ADD' && op.from.kind !== 'context') no('ADD --from');
  if (op.checksum !== undefined) no('ADD --checksum');
  if (op.heredocs.length > 0 && op.from.kind !== 'context') no('here-documents with COPY --from');
  if (op.parents) no('COPY --parents');
  if (op.exclude.length > 0) no('COPY --exclude');
  if (op.chmod !== undefined && !/^[0-7]{3,4}$/.test(op.chmod)) no(`symbolic --chmod (${op.chmod})`, 'use an octal mode like 0755');
  if (op.from.kind !== 'context' && op.sources.some((s) => /[*?[\\]/.test(s))) no('wildcards in COPY --from sources');
}

/** True when the file starts like a tar, gzip, bzip2, xz or zstd archive (what ADD would extract). */
function looksLikeArchive(path: string): boolean {
  const head = Buffer.alloc(512);
  let n = 0;
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    n = readSync(fd, head, 0, head.length, 0);
  } catch (e) {
    throw new TsbuildError('SOLVE_IO', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const b = head.subarray(0, n);
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return true;
  if (b.length >= 3 && b.subarray(0, 3).toString('latin1') === 'BZh') return true;
  if (b.length >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return true;
  if (b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return true;
  return b.length >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar';
}

/** ADD of local files is COPY unless a source file is an archive (auto-extraction arrives later: CLI_NOT_SUPPORTED). */
export function checkAddSources(op: CopyOp, src: CopySources, loc: SourceLocation | undefined): void {
  if (op.instruction !== 'ADD') return;
  for (const s of src.sources) {
    const root = s.entries[0];
    if (root?.type === 'file' && looksLikeArchive(root.hostPath)) {
      throw withLoc(notSupportedYet(`ADD of a local archive (${s.name}: extracting it)`, 'extract it in a RUN step, or COPY it'), loc);
    }
  }
}

/** The entries of a context selection (owners become root, as Docker does for context files). */
export function contextSources(sel: ContextSelection): CopySources {
  const sources: CopySource[] = [];
  let wildcard = false;
  for (const s of sel.sources) {
    wildcard ||= s.wildcard;
    for (const m of s.matches) {
      sources.push({
        name: m.source,
        entries: m.entries.map((e) => ({
          rel: e.rel,
          type: e.type,
          hostPath: e.absPath,
          mode: Number(e.stat.mode & 0o7777n),
          uid: 0,
          gid: 0,
          mtime: Number(e.stat.mtimeNs / 1000n) / 1e6,
          ...(e.linkTarget === undefined ? {} : { linkTarget: e.linkTarget }),
        })),
      });
    }
  }
  return { sources, wildcard };
}

/** The context patterns of a COPY (its sources without the here-document names). */
export function contextPatterns(op: CopyOp): string[] {
  const names = new Set(op.heredocs.map((h) => h.name));
  return op.sources.filter((s) => !names.has(s));
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

/** The entries of `paths` in another state's view (owners kept); SOLVE_COPY_NOT_FOUND for a missing path. */
export function viewSources(view: RootfsView, paths: readonly string[], loc: SourceLocation | undefined, what: string): CopySources {
  const sources: CopySource[] = [];
  for (const path of paths) {
    const parts = view.resolve(posix.join('/', path), true);
    const root = view.lookupParts(parts);
    if (root === undefined) {
      throw new TsbuildError('SOLVE_COPY_NOT_FOUND', `COPY source "${path}" not found in ${what}`, loc === undefined ? {} : { loc });
    }
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
        ...(type === 'symlink' ? { linkTarget: readLink(e.hostPath) } : {}),
      });
      if (type === 'dir') for (const n of view.readdirParts(p)) visit([...p, n], rel === '' ? n : `${rel}/${n}`);
    };
    visit(parts, '');
    sources.push({ name: path, entries });
  }
  return { sources, wildcard: false };
}

function readLink(path: string): string {
  try {
    return readlinkSync(path);
  } catch (e) {
    throw new TsbuildError('SOLVE_IO', `cannot read symlink ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** Resolves `--chown=user[:group]` in the destination's /etc/passwd and /etc/group (a lone user also sets the group to the same number, as Docker). */
export function resolveChown(view: RootfsView, chown: string): { uid: number; gid: number } {
  const passwd = view.readSmallFile('/etc/passwd', MAX_USER_DB);
  const group = view.readSmallFile('/etc/group', MAX_USER_DB);
  const r = resolveUserFromTables(chown, passwd === undefined ? undefined : parsePasswd(passwd), group === undefined ? undefined : parseGroup(group));
  return chown.includes(':') ? { uid: r.uid, gid: r.gid } : { uid: r.uid, gid: r.uid };
}

/**
 * Copies `src` into the view with Docker's rules: a directory source copies its contents into
 * `dest`; a file goes to `dest` itself unless `dest` ends with `/`, is an existing directory or
 * several sources are copied (then into it under its base name). Modes and mtimes are kept;
 * owners become `--chown` when given. Parent directories are created (0755).
 */
export async function copyInto(view: RootfsView, op: CopyOp, src: CopySources, loc: SourceLocation | undefined): Promise<void> {
  const owner = op.chown === undefined ? undefined : resolveChown(view, op.chown);
  const chmod = op.chmod === undefined ? undefined : parseInt(op.chmod, 8);
  const dirMeta: WriteMeta = { uid: owner?.uid ?? 0, gid: owner?.gid ?? 0, mode: 0o755 };
  const many = src.sources.length > 1 || src.wildcard;
  const destIsDir = op.dest.endsWith('/');
  const meta = (e: CopyEntry): WriteMeta => ({
    uid: owner?.uid ?? e.uid,
    gid: owner?.gid ?? e.gid,
    mode: chmod ?? e.mode,
    mtime: e.mtime,
  });
  try {
    for (const s of src.sources) {
      const root = s.entries[0];
      if (root === undefined) continue;
      let base: string[];
      if (root.type === 'dir') {
        base = view.resolve(op.dest, true);
        if (view.lookupParts(base) === undefined) view.writeDir(base, { ...meta(root), mode: chmod ?? root.mode });
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
      for (const e of s.entries) {
        const parts = e.rel === '' ? base : [...base, ...e.rel.split('/')];
        if (e.rel === '' && e.type === 'dir') continue;
        switch (e.type) {
          case 'file':
            await view.writeFile(parts, e.hostPath, meta(e));
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
    }
  } catch (err) {
    throw err instanceof TsbuildError ? withLoc(err, loc) : err;
  }
}
