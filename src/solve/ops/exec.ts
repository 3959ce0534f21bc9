import { lstatSync, rmdirSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { digestHex, notSupportedYet, sha256Of, TsbuildError } from '../../core/index.js';
import { acquireLock, type Lock } from '../../store/index.js';
import type { ExecOp, Vertex } from '../../plan/index.js';
import {
  createRunSpec, parseGroup, parsePasswd, resolveUserFromTables,
  type MountSpec, type RootSpec, type RunSpec,
} from '../../sandbox/index.js';
import type { ActiveSnapshot } from '../../snapshot/index.js';
import type { RootfsView } from '../rootfs-view.js';
import { viewOf } from '../snapshots.js';
import type { SolveDeps } from '../types.js';

/** Lines of a failing RUN's output quoted in its error. */
const TAIL_LINES = 12;
const MAX_USER_DB = 4 * 1024 * 1024;

/** What the RUN step needs besides its op. */
export interface ExecContext {
  readonly deps: SolveDeps;
  readonly vertex: Vertex;
  /** `--network` of the build: what `RUN` without `--network` gets. */
  readonly defaultNetwork: 'host' | 'none';
  readonly signal: AbortSignal;
}

/** Rejects the RUN features of later work with CLI_NOT_SUPPORTED. */
export function checkExecSupported(op: ExecOp, vertex: Vertex): void {
  const where = (e: TsbuildError): TsbuildError => (vertex.loc === undefined ? e : new TsbuildError(e.code, e.message, { loc: vertex.loc, ...(e.hint === undefined ? {} : { hint: e.hint }) }));
  for (const m of op.mounts) {
    if (m.type === 'cache' && m.from !== undefined) throw where(notSupportedYet('RUN --mount=type=cache,from=...', 'a cache mount starts empty in this version'));
    if (m.type !== 'tmpfs' && m.type !== 'cache') throw where(notSupportedYet(`RUN --mount=type=${m.type}`, 'only type=tmpfs and type=cache mounts work in this version'));
  }
  if (op.security === 'insecure') throw where(notSupportedYet('RUN --security=insecure'));
}

/** The user, groups and home of `user` in the snapshot's /etc/passwd and /etc/group. */
function resolveRunUser(view: RootfsView, user: string): { uid: number; gid: number; additionalGids: number[]; home: string } {
  const passwd = view.readSmallFile('/etc/passwd', MAX_USER_DB);
  const group = view.readSmallFile('/etc/group', MAX_USER_DB);
  const r = resolveUserFromTables(user.trim(), passwd === undefined ? undefined : parsePasswd(passwd), group === undefined ? undefined : parseGroup(group));
  return { uid: r.uid, gid: r.gid, additionalGids: r.additionalGids, home: r.home ?? (r.uid === 0 ? '/root' : '/') };
}

/** The command as written (`[3/5] RUN make all` -> `make all`). */
export function commandText(vertex: Vertex): string {
  return vertex.name.replace(/^\[[^\]]*\]\s*/, '').replace(/^(ONBUILD\s+)?RUN\s+/i, '');
}

/** Splits output into lines for events and keeps the last few for an error message. */
class LineSink {
  readonly stream = new PassThrough();
  #partial = '';

  /** `tail` is shared by stdout and stderr, so it keeps the last lines in the order they came. */
  constructor(private readonly tail: string[], private readonly onLine: (line: string) => void) {
    this.stream.setEncoding('utf8');
    this.stream.on('data', (chunk: string) => {
      const parts = (this.#partial + chunk).split('\n');
      this.#partial = parts.pop() ?? '';
      for (const line of parts) this.#emit(line);
    });
  }

  #emit(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    this.onLine(line);
  }

  flush(): void {
    if (this.#partial !== '') this.#emit(this.#partial);
    this.#partial = '';
  }
}

/**
 * Paths the sandbox creates as mount points when a root directory lacks them (children first).
 * Over an overlay root they live in the sandbox's init layer; over a plain directory root they would
 * land in the step's change set, so {@link removeCreatedMountPoints} takes them out again.
 */
const MOUNT_POINTS = ['etc/hosts', 'etc/hostname', 'etc/resolv.conf', 'etc', 'proc', 'sys', 'dev'];

function missingMountPoints(root: string): string[] {
  return MOUNT_POINTS.filter((p) => {
    try {
      lstatSync(join(root, p));
      return false;
    } catch {
      return true;
    }
  });
}

/** Removes the mount points the sandbox created (still empty files or directories) from a directory root. */
function removeCreatedMountPoints(root: string, created: readonly string[]): void {
  for (const p of created) {
    const path = join(root, p);
    try {
      const st = lstatSync(path);
      if (st.isFile() && st.size === 0) unlinkSync(path);
      else if (st.isDirectory()) rmdirSync(path);
    } catch {
      // absent or not empty: a file the command wrote, kept
    }
  }
}

/** A persistent cache mount directory and the lock that `sharing=locked|private` holds while the step runs. */
interface CacheDir {
  readonly target: string;
  readonly dir: string;
  readonly readonly: boolean;
  readonly lock: boolean;
}

/**
 * Prepares the directories of `RUN --mount=type=cache` under `<store>/cache/mounts/<sha256(id)>`
 * (created with the mount's mode, uid and gid). Their content never enters a layer or a cache key.
 */
async function prepareCacheDirs(op: ExecOp, cacheRoot: string): Promise<CacheDir[]> {
  const out: CacheDir[] = [];
  for (const m of op.mounts) {
    if (m.type !== 'cache') continue;
    const dir = join(cacheRoot, 'mounts', digestHex(sha256Of(`cache-mount\0${m.id}`)));
    try {
      await mkdir(join(cacheRoot, 'mounts'), { recursive: true });
      await mkdir(dir, { mode: m.mode });
      await chown(dir, m.uid, m.gid);
      await chmod(dir, m.mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new TsbuildError('SOLVE_IO', `cannot create the cache mount directory ${dir}: ${(err as Error).message}`, { cause: err });
      }
    }
    // `private` is served like `locked` (one step at a time) rather than with a throw-away copy.
    out.push({ target: m.target, dir, readonly: m.readonly, lock: m.sharing !== 'shared' });
  }
  return out;
}

/** Builds the RunSpec of a RUN step over the active snapshot (pure apart from reading /etc/passwd). */
export function execRunSpec(op: ExecOp, active: ActiveSnapshot, defaultNetwork: 'host' | 'none', rootless: boolean, cacheDirs: readonly CacheDir[] = [], pipes: readonly MountSpec[] = []): RunSpec {
  const view = viewOf(active);
  const user = resolveRunUser(view, op.user);
  // The working directory is created when missing (as BuildKit does); it becomes part of the layer.
  const cwdParts = view.resolve(op.cwd, true);
  if (view.lookupParts(cwdParts) === undefined) view.ensureDirParts(cwdParts, { uid: 0, gid: 0, mode: 0o755 });
  const m = active.mounts();
  // Lowers relative to the snapshotter's base dir (`l/<short>` links): 100+ layers fit mount(2)'s page.
  const root: RootSpec = m.type === 'bind'
    ? { path: m.source }
    : { overlay: { lowerdirs: m.relativeLowerdirs, upperdir: m.upperdir, workdir: m.workdir, baseDir: m.baseDir, options: m.options } };
  const env = [...op.env, ...op.proxyEnv];
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);
  const mounts: MountSpec[] = op.mounts.flatMap((mt): MountSpec[] => (mt.type === 'tmpfs'
    ? [{ destination: mt.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', ...(mt.size === undefined ? [] : [`size=${mt.size}`])] }]
    : []));
  mounts.push(...pipes);
  for (const c of cacheDirs) mounts.push({ destination: c.target, type: 'bind', source: c.dir, options: ['rbind', c.readonly ? 'ro' : 'rw'] });
  return createRunSpec({
    args: op.args,
    root,
    env,
    cwd: op.cwd,
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
    network: op.network === 'default' ? defaultNetwork : op.network,
    userNamespace: rootless,
    mounts,
  });
}

/**
 * Runs a RUN step in the sandbox over `active`. Output goes to `vertex.log` events; a non-zero exit
 * throws RUN_EXIT (`"cmd" exited N` plus the last lines of output) at the instruction's location.
 */
export async function runExec(op: ExecOp, active: ActiveSnapshot, ctx: ExecContext): Promise<void> {
  const { deps, vertex } = ctx;
  const cacheDirs = await prepareCacheDirs(op, deps.store.paths.cache);
  // `RUN <<EOF` alone: the body is an executable file at /dev/pipes/<name> (read-only, on /dev's tmpfs, never in a layer).
  const pipeFiles: string[] = [];
  const pipes: MountSpec[] = [];
  try {
    for (const h of op.heredocs) {
      const file = join(deps.store.paths.tmp, `pipe-${process.pid}-${randomBytes(6).toString('hex')}`);
      pipeFiles.push(file);
      await writeFile(file, h.content, { mode: 0o755 });
      await chmod(file, 0o755);
      pipes.push({ destination: `/dev/pipes/${h.name}`, type: 'bind', source: file, options: ['bind', 'ro'] });
    }
    await runInSandbox(op, active, ctx, cacheDirs, pipes);
  } catch (err) {
    throw err instanceof TsbuildError || !(err instanceof Error) ? err : new TsbuildError('SOLVE_IO', `cannot prepare the here-document of ${vertex.id}: ${err.message}`, { cause: err });
  } finally {
    await Promise.all(pipeFiles.map((f) => rm(f, { force: true })));
  }
}

async function runInSandbox(op: ExecOp, active: ActiveSnapshot, ctx: ExecContext, cacheDirs: readonly CacheDir[], pipes: readonly MountSpec[]): Promise<void> {
  const { deps, vertex } = ctx;
  const spec = execRunSpec(op, active, ctx.defaultNetwork, deps.sandbox.rootless, cacheDirs, pipes);
  const tail: string[] = [];
  const sink = (stream: 'stdout' | 'stderr'): LineSink => new LineSink(tail, (data) => deps.events({ type: 'vertex.log', vertex: vertex.id, stream, data }));
  const out = sink('stdout');
  const err = sink('stderr');
  const dirRoot = spec.root.path;
  const created = dirRoot === undefined ? [] : missingMountPoints(dirRoot);
  let result;
  const locks: Lock[] = [];
  try {
    // Sorted, so that two steps locking the same directories never wait on each other in a cycle.
    for (const c of [...cacheDirs].sort((a, b) => (a.dir < b.dir ? -1 : 1))) if (c.lock) locks.push(await acquireLock(`${c.dir}.lock`, { signal: ctx.signal, timeoutMs: 24 * 3600_000 }));
    result = await deps.sandbox.run(spec, { stdin: 'ignore', stdout: out.stream, stderr: err.stream }, ctx.signal);
  } finally {
    for (const l of locks) await l.release().catch(() => undefined);
    if (dirRoot !== undefined) removeCreatedMountPoints(dirRoot, created);
  }
  out.flush();
  err.flush();
  if (result.exitCode !== 0) {
    const lines = tail.slice(-TAIL_LINES);
    const why = result.reason === undefined ? `exited ${result.exitCode}` : `exited ${result.exitCode} (${result.reason})`;
    throw new TsbuildError('RUN_EXIT', `"${commandText(vertex)}" ${why}${lines.length === 0 ? '' : `\n${lines.map((l) => `  ${l}`).join('\n')}`}`, {
      ...(vertex.loc === undefined ? {} : { loc: vertex.loc }),
    });
  }
}
