/**
 * `export` and `cp`: a container's file system read from its layers (running or stopped), and
 * files written into it: through /proc/PID/root while it runs (so its overlay sees them), into
 * its writable layer (the upperdir) when it is stopped. Paths are resolved inside the container's
 * root in user space (chroot semantics): a symlink in the container never leads outside it.
 * A running container is frozen (cgroup freezer) while a copy runs, as docker does since
 * CVE-2018-15664: nothing in it can swap a checked directory for a link meanwhile. Without a
 * cgroup (rootless without cgroup v2 delegation) that race remains possible.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpSync, createWriteStream, lchownSync, linkSync, lstatSync, realpathSync, mkdirSync, readdirSync, readlinkSync, statSync, unlinkSync, chmodSync, chownSync, copyFileSync, constants, symlinkSync, utimesSync, type Stats } from 'node:fs';
import { once } from 'node:events';
import { basename, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TsbuildError } from '../core/index.js';
import { packLayer, readTar } from '../layer/index.js';
import { isProcessFrozen, openProcessCgroup } from '../sandbox/index.js';
import type { Snapshotter } from '../snapshot/index.js';
import { setXattr } from '../sys/index.js';
import type { ContainerEntry } from './container-store.js';
import { materializeMerged, mergedChild, mergedRoot, resolveMerged, type MergedEntry, type MergedLayers } from './merged-tree.js';
import { waitForContainerRoot } from './pause.js';
import { isProcessAlive } from './process-info.js';
import { isContainerRunning } from './runner.js';

/** What export and cp need. */
export interface FilesDeps {
  readonly snapshotter: Snapshotter;
  /** A directory on the snapshots' file system for temporary trees (the store's tmp). */
  readonly tmpDir: string;
  /** True when not root: owners and device nodes cannot be recreated. */
  readonly rootless: boolean;
}

/** The layers of a container, nearest first. Throws RUN_LAYER_GONE. */
async function layersOf(deps: FilesDeps, entry: ContainerEntry): Promise<MergedLayers> {
  const active = await deps.snapshotter.open(entry.config.snapshotKey).catch((err: unknown) => {
    throw new TsbuildError('RUN_LAYER_GONE', `the writable layer of container ${entry.config.id.slice(0, 12)} is gone`, { cause: err, exitCode: 1 });
  });
  const m = active.mounts();
  if (m.type === 'bind') return { layers: [m.source], xattrPrefix: 'trusted' };
  return { layers: [m.upperdir, ...m.lowerdirs], xattrPrefix: m.options.includes('userxattr') ? 'user' : 'trusted' };
}

/** Runs `fn` with a fresh private directory under the store's tmp, removed afterwards. */
async function withScratch<T>(deps: FilesDeps, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(deps.tmpDir, 'ctr-files-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `fn` with a running container frozen (thawed afterwards unless it was paused already); a
 * container that is stopped, already paused or without a cgroup is left as it is.
 */
async function withFrozen<T>(deps: FilesDeps, entry: ContainerEntry, fn: () => Promise<T>): Promise<T> {
  const s = entry.state;
  const running = isContainerRunning(s) && s.pid > 0 && isProcessAlive(s.pid, s.pidStartTime);
  const cgroup = running && !isProcessFrozen(s.pid) ? await openProcessCgroup(s.pid, { rootless: deps.rootless }) : undefined;
  await cgroup?.freeze();
  try {
    return await fn();
  } finally {
    await cgroup?.thaw();
  }
}

/** Writes `stream` into `sink` without ending it. */
async function copyInto(stream: Readable, sink: Writable): Promise<void> {
  for await (const chunk of stream) {
    if (!sink.write(chunk as Buffer)) await once(sink, 'drain');
  }
}

/** Packs the merged tree of `entry` (or only its contents) as a tar into `sink`. */
async function packMerged(deps: FilesDeps, m: MergedLayers, entry: MergedEntry, name: string | undefined, sink: Writable): Promise<void> {
  await withScratch(deps, async (dir) => {
    const top = join(dir, 'tree');
    if (name === undefined) materializeMerged(m, entry, top, !deps.rootless);
    else {
      mkdirSync(top);
      materializeMerged(m, entry, join(top, name), !deps.rootless);
    }
    const packed = packLayer(top, { mode: 'tree' });
    await copyInto(packed.stream, sink);
    await packed.done;
  });
}

/** `docker export`: the container's merged file system (without its mounts) as a tar into `sink` (not ended). */
export async function exportContainer(deps: FilesDeps, entry: ContainerEntry, sink: Writable): Promise<void> {
  const m = await layersOf(deps, entry);
  await packMerged(deps, m, mergedRoot(m), undefined, sink);
}

/** `cp` flags: `-a` keeps the source's owners, `-L` follows a symlink given as the source path. */
export interface CopyOptions {
  readonly archive?: boolean;
  readonly followLink?: boolean;
}

/** Gives every entry under `dest` the owner of the same entry under `src` (links not followed). */
function copyOwners(src: string, dest: string): void {
  const st = lstatSync(src);
  lchownSync(dest, st.uid, st.gid);
  if (st.isDirectory()) for (const name of readdirSync(src)) copyOwners(join(src, name), join(dest, name));
}

/** Where `cp` copies out to: a tar stream, or a host path. */
export type CopyOutTarget = { readonly kind: 'tar'; readonly sink: Writable } | { readonly kind: 'host'; readonly path: string };

function notFound(path: string, entry: ContainerEntry): TsbuildError {
  return new TsbuildError('RUN_NO_SUCH_PATH', `Could not find the file ${path} in container ${entry.config.name}`, { exitCode: 1 });
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/**
 * `docker cp CONTAINER:SRC DEST`: SRC resolved in the container's layers (a final symlink is
 * copied as a link; `SRC/.` copies a directory's contents), written as a tar (its top entry named
 * after SRC) or to the host path DEST (into it when it is a directory). Throws RUN_NO_SUCH_PATH,
 * RUN_BAD_PATH, RUN_COPY.
 */
export async function copyFromContainer(deps: FilesDeps, entry: ContainerEntry, src: string, target: CopyOutTarget, options: CopyOptions = {}): Promise<void> {
  await withFrozen(deps, entry, () => copyOut(deps, entry, src, target, options));
}

async function copyOut(deps: FilesDeps, entry: ContainerEntry, src: string, target: CopyOutTarget, options: CopyOptions): Promise<void> {
  const m = await layersOf(deps, entry);
  const contentOnly = /\/\.$/.test(src) || src === '.';
  // -L: a final link is followed, within the container's root like every other link.
  const r = resolveMerged(m, src, contentOnly || src.endsWith('/') || options.followLink === true);
  if (r.entry === undefined) throw notFound(src, entry);
  if (src.endsWith('/') && !r.entry.stat.isDirectory()) throw new TsbuildError('RUN_BAD_PATH', `${src}: not a directory in the container`, { exitCode: 1 });
  // A followed link is copied under the link's own name, as docker cp -L does.
  const given = src.split('/').filter((c) => c !== '' && c !== '.').pop();
  const ownName = options.followLink === true && given !== undefined && given !== '..' ? given : r.name;
  const name = contentOnly || r.entry.parts.length === 0 ? undefined : ownName;
  if (target.kind === 'tar') {
    await packMerged(deps, m, r.entry, name, target.sink);
    return;
  }
  const existing = statOrUndefined(target.path);
  let dest = target.path;
  if (existing?.isDirectory() === true && name !== undefined) dest = join(target.path, name);
  else if (existing === undefined) {
    if (target.path.endsWith('/')) throw new TsbuildError('RUN_COPY', `destination directory ${target.path} does not exist`, { exitCode: 1 });
  } else if (!existing.isDirectory() && r.entry.stat.isDirectory()) {
    throw new TsbuildError('RUN_COPY', `cannot copy a directory to the file ${target.path}`, { exitCode: 1 });
  }
  const entryFound = r.entry;
  await withScratch(deps, async (dir) => {
    const tree = join(dir, 'tree');
    materializeMerged(m, entryFound, tree, !deps.rootless);
    try {
      // The tree shares inodes with the layers: cp copies (new inodes), it never changes them.
      cpSync(tree, dest, { recursive: true, verbatimSymlinks: true, force: true, preserveTimestamps: true });
      // -a: the owners in the container; without it the files belong to whoever runs cp, as with docker.
      if (options.archive === true) copyOwners(tree, dest);
    } catch (err) {
      throw new TsbuildError('RUN_COPY', `cannot copy to ${dest}: ${(err as Error).message}`, { cause: err, exitCode: 1 });
    }
  });
}

/** Writes into a container: its live root while it runs, else its writable layer. */
interface Writer {
  readonly view: MergedLayers;
  /** Makes sure the directory `parts` exists (as a real directory, never through a link); returns its host path. */
  ensureDir(parts: readonly string[]): string;
  /** Prepares the name `parts` for a new entry (its parent exists); returns the host path, and whether a new directory there must hide lower content. */
  prepare(parts: readonly string[]): { host: string; opaque: boolean };
  readonly xattrPrefix: 'trusted' | 'user';
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function badPath(parts: readonly string[], why: string): TsbuildError {
  return new TsbuildError('RUN_BAD_PATH', `/${parts.join('/')} ${why} in the container`, { exitCode: 1 });
}

/** A writer through /proc/PID/root of a running container. */
function liveWriter(pid: number): Writer {
  const root = `/proc/${pid}/root`;
  const view: MergedLayers = { layers: [root], xattrPrefix: 'trusted' };
  return {
    view,
    xattrPrefix: 'trusted',
    ensureDir(parts) {
      let host = root;
      for (const [i, c] of parts.entries()) {
        host = join(host, c);
        const st = lstatOrUndefined(host);
        if (st === undefined) mkdirSync(host, 0o755);
        // SECURITY: never descend through a link (it could point anywhere on the host from here).
        else if (!st.isDirectory()) throw badPath(parts.slice(0, i + 1), 'is not a directory');
      }
      return host;
    },
    prepare(parts) {
      this.ensureDir(parts.slice(0, -1));
      return { host: join(root, ...parts), opaque: false };
    },
  };
}

/** Copies owner, mode and times of a merged directory to its new upper copy. */
function copyDirAttributes(dest: string, st: Stats, privileged: boolean): void {
  if (privileged) chownSync(dest, st.uid, st.gid);
  chmodSync(dest, st.mode & 0o7777);
  utimesSync(dest, st.atime, st.mtime);
}

/** A writer into the upperdir of a stopped container (directories copied up with their attributes). */
function layerWriter(m: MergedLayers, privileged: boolean): Writer {
  const upper = m.layers[0] as string;
  const isWhiteout = (st: Stats | undefined): boolean => st !== undefined && st.isCharacterDevice() && st.rdev === 0;
  return {
    view: m,
    xattrPrefix: m.xattrPrefix,
    ensureDir(parts) {
      for (let i = 0; i < parts.length; i++) {
        // Walked afresh each time: a directory just made in the upper layer changes the merge below it.
        let parent: MergedEntry | undefined = mergedRoot(m);
        for (const c of parts.slice(0, i)) parent = parent === undefined ? undefined : mergedChild(m, parent, c);
        if (parent === undefined) throw badPath(parts.slice(0, i), 'vanished');
        const child = mergedChild(m, parent, parts[i] as string);
        const host = join(upper, ...parts.slice(0, i + 1));
        if (child === undefined) {
          const st = lstatOrUndefined(host);
          if (isWhiteout(st)) unlinkSync(host);
          mkdirSync(host, 0o755);
          // A name deleted in this layer and made again: nothing below may show through.
          if (isWhiteout(st)) setXattr(host, `${m.xattrPrefix}.overlay.opaque`, Buffer.from('y'));
        } else if (!child.stat.isDirectory()) {
          throw badPath(parts.slice(0, i + 1), 'is not a directory');
        } else if (lstatOrUndefined(host)?.isDirectory() !== true) {
          mkdirSync(host);
          copyDirAttributes(host, child.stat, privileged);
        }
      }
      return join(upper, ...parts);
    },
    prepare(parts) {
      this.ensureDir(parts.slice(0, -1));
      const host = join(upper, ...parts);
      const st = lstatOrUndefined(host);
      if (isWhiteout(st)) {
        unlinkSync(host);
        return { host, opaque: true };
      }
      return { host, opaque: false };
    },
  };
}

/** The writer for a container: live while it runs, else its writable layer. */
async function writerOf(deps: FilesDeps, entry: ContainerEntry): Promise<Writer> {
  const s = entry.state;
  if (isContainerRunning(s) && s.pid > 0 && isProcessAlive(s.pid, s.pidStartTime)) {
    // SECURITY: until the sandbox has pivoted, /proc/PID/root is the host's root.
    if (!(await waitForContainerRoot(s.pid))) throw new TsbuildError('RUN_NOT_RUNNING', `container ${entry.config.id} is not running`, { exitCode: 1 });
    return liveWriter(s.pid);
  }
  return layerWriter(await layersOf(deps, entry), !deps.rootless);
}

/**
 * Copies the host entry `src` to `dest` (inside the container): a directory merges into an
 * existing one, anything else replaces a non-directory. Symlinks are copied as links, devices and
 * sockets skipped. SECURITY: `dest`'s parent is a real directory; entries are lstat'ed, never followed.
 */
function copyHostEntry(src: string, dest: string, opaque: boolean, xattrPrefix: string, archive: boolean): void {
  const st = lstatSync(src);
  const existing = lstatOrUndefined(dest);
  if (st.isDirectory()) {
    if (existing !== undefined && !existing.isDirectory()) throw new TsbuildError('RUN_COPY', `cannot overwrite non-directory ${dest} with a directory`, { exitCode: 1 });
    if (existing === undefined) {
      mkdirSync(dest, 0o700);
      if (opaque) setXattr(dest, `${xattrPrefix}.overlay.opaque`, Buffer.from('y'));
    }
    for (const name of readdirSync(src)) copyHostEntry(join(src, name), join(dest, name), false, xattrPrefix, archive);
    chmodSync(dest, st.mode & 0o7777);
    if (archive) lchownSync(dest, st.uid, st.gid);
    return;
  }
  if (existing?.isDirectory() === true) throw new TsbuildError('RUN_COPY', `cannot overwrite directory ${dest} with a non-directory`, { exitCode: 1 });
  if (existing !== undefined) unlinkSync(dest);
  if (st.isSymbolicLink()) symlinkSync(readlinkSync(src), dest);
  else if (st.isFile()) {
    copyFileSync(src, dest, constants.COPYFILE_EXCL);
    chmodSync(dest, st.mode & 0o7777);
  } else return;
  // -a keeps the host owners; the mode is set again because a chown clears setuid/setgid bits.
  if (archive) {
    lchownSync(dest, st.uid, st.gid);
    if (!st.isSymbolicLink()) chmodSync(dest, st.mode & 0o7777);
  }
}

/** Where `cp` copies in from: a host path, or a tar stream extracted into a directory. */
export type CopyInSource = { readonly kind: 'host'; readonly path: string } | { readonly kind: 'tar'; readonly stream: Readable };

/**
 * `docker cp SRC CONTAINER:DEST`: DEST resolved inside the container (symlinks followed within
 * it); into DEST when it is a directory, else as DEST (its parent must exist). A running
 * container sees the files at once; a stopped one gets them in its writable layer. A tar source
 * is extracted into the directory DEST (its entries never pass through a link). Throws
 * RUN_NO_SUCH_PATH, RUN_BAD_PATH, RUN_COPY, LAYER_* for a bad tar.
 */
export async function copyToContainer(deps: FilesDeps, entry: ContainerEntry, source: CopyInSource, dest: string, options: CopyOptions = {}): Promise<void> {
  await withFrozen(deps, entry, () => copyIn(deps, entry, source, dest, options));
}

async function copyIn(deps: FilesDeps, entry: ContainerEntry, source: CopyInSource, dest: string, options: CopyOptions): Promise<void> {
  const archive = options.archive === true;
  const w = await writerOf(deps, entry);
  const r = resolveMerged(w.view, dest, true);
  try {
    if (source.kind === 'tar') {
      if (r.entry === undefined || !r.entry.stat.isDirectory()) throw new TsbuildError('RUN_BAD_PATH', `${dest} is not a directory in container ${entry.config.name}: a tar is extracted into a directory`, { exitCode: 1 });
      await extractTar(w, r.entry.parts, source.stream, archive);
      return;
    }
    const found = lstatOrUndefined(source.path);
    if (found === undefined) throw new TsbuildError('RUN_COPY', `could not find the file ${source.path} on the host`, { exitCode: 1 });
    // -L: the host link given as the source is followed (its target copied under the link's name).
    const srcPath = options.followLink === true && found.isSymbolicLink() ? realpathSync(source.path) : source.path;
    const srcStat = srcPath === source.path ? found : lstatSync(srcPath);
    const contentOnly = /\/\.$/.test(source.path);
    let parts: readonly string[];
    if (r.entry?.stat.isDirectory() === true) parts = contentOnly ? r.entry.parts : [...r.entry.parts, basename(source.path)];
    else if (r.entry === undefined) {
      if (r.parent === undefined || dest.endsWith('/')) throw notFound(dest.endsWith('/') ? dest : dest.replace(/\/[^/]*$/, '') || '/', entry);
      parts = [...r.parent.parts, r.name];
    } else {
      if (srcStat.isDirectory()) throw new TsbuildError('RUN_COPY', `cannot copy a directory to the file ${dest} in the container`, { exitCode: 1 });
      parts = r.entry.parts;
    }
    if (contentOnly && srcStat.isDirectory()) {
      const host = w.ensureDir(parts);
      for (const name of readdirSync(srcPath)) copyHostEntry(join(srcPath, name), join(host, name), false, w.xattrPrefix, archive);
      return;
    }
    const target = w.prepare(parts);
    copyHostEntry(srcPath, target.host, target.opaque, w.xattrPrefix, archive);
  } catch (err) {
    if (err instanceof TsbuildError) throw err;
    throw new TsbuildError('RUN_COPY', `cannot copy into container ${entry.config.name}: ${(err as Error).message}`, { cause: err, exitCode: 1 });
  }
}

/** Extracts a tar into the container directory `base`: directories, files, symlinks and hard links; other types skipped. */
async function extractTar(w: Writer, base: readonly string[], stream: Readable, archive: boolean): Promise<void> {
  for await (const { header, body } of readTar(stream)) {
    const rel = header.name.split('/').filter((c) => c !== '' && c !== '.');
    // SECURITY: no name may climb out of the destination.
    if (header.name.startsWith('/') || rel.includes('..')) throw new TsbuildError('RUN_COPY', `unsafe path ${JSON.stringify(header.name)} in the tar`, { exitCode: 1 });
    const parts = [...base, ...rel];
    if (header.type === 'directory') {
      const host = w.ensureDir(parts);
      if (archive) lchownSync(host, header.uid, header.gid);
      chmodSync(host, header.mode & 0o7777);
    } else if (header.type === 'file' || header.type === 'symlink' || header.type === 'link') {
      const target = w.prepare(parts);
      const existing = lstatOrUndefined(target.host);
      if (existing?.isDirectory() === true) throw new TsbuildError('RUN_COPY', `cannot overwrite directory /${parts.join('/')} with a non-directory`, { exitCode: 1 });
      if (existing !== undefined) unlinkSync(target.host);
      if (header.type === 'symlink') symlinkSync(header.linkname, target.host);
      else if (header.type === 'link') {
        const linked = header.linkname.split('/').filter((c) => c !== '' && c !== '.');
        if (header.linkname.startsWith('/') || linked.includes('..')) throw new TsbuildError('RUN_COPY', `unsafe link target ${JSON.stringify(header.linkname)} in the tar`, { exitCode: 1 });
        const from = w.prepare([...base, ...linked]).host;
        if (lstatOrUndefined(from)?.isFile() !== true) throw new TsbuildError('RUN_COPY', `hard link target ${header.linkname} is not a file extracted before`, { exitCode: 1 });
        linkSync(from, target.host);
      } else {
        await pipeline(body, createWriteStream(target.host, { flags: 'wx', mode: header.mode & 0o7777 }));
        if (archive) lchownSync(target.host, header.uid, header.gid);
        chmodSync(target.host, header.mode & 0o7777);
        continue;
      }
      if (archive && header.type === 'symlink') lchownSync(target.host, header.uid, header.gid);
    }
    for await (const chunk of body) void chunk; // skip the content of entries not written
  }
}
