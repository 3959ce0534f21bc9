import { lstatSync, rmdirSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { isTsbuildError, notSupportedYet, TsbuildError } from '../../core/index.js';
import type { ContextSelection } from '../../context/index.js';
import { acquireLock, type Lock } from '../../store/index.js';
import type { ExecOp, Vertex } from '../../plan/index.js';
import {
  createRunSpec, listHostDevices, parseGroup, parsePasswd, resolveUserFromTables,
  type MountSpec, type RootSpec, type RunSpec,
} from '../../sandbox/index.js';
import type { ActiveSnapshot } from '../../snapshot/index.js';
import type { RootfsView } from '../rootfs-view.js';
import { viewOf } from '../snapshots.js';
import type { FsState, SolveDeps } from '../types.js';
import { prepareBindMounts, type PreparedBind } from './mount-bind.js';
import { prepareCacheDirs, type CacheDir } from './mount-cache.js';
import { prepareSecretMounts, type SecretMounts } from './mount-secrets.js';
import { createMountStubs, type StubTarget } from './mount-stubs.js';

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
  /** States of the step's inputs by vertex id (the sources of `from=` mounts). */
  readonly inputs?: ReadonlyMap<string, FsState>;
  /** The context selection of the context bind at `op.mounts[index]`. */
  readonly contextSelection?: (index: number) => ContextSelection | undefined;
  /** `--secret` contents by id. */
  readonly secrets?: ReadonlyMap<string, Uint8Array>;
  /** `--ssh` agent sockets by id. */
  readonly sshAgents?: ReadonlyMap<string, string>;
}

export { checkExecSupported } from './step-checks.js';

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
  constructor(private readonly tail: string[], private readonly onLine: (line: string) => void, private readonly redact: (line: string) => string = (l) => l) {
    this.stream.setEncoding('utf8');
    this.stream.on('data', (chunk: string) => {
      const parts = (this.#partial + chunk).split('\n');
      this.#partial = parts.pop() ?? '';
      for (const line of parts) this.#emit(line);
    });
  }

  #emit(raw: string): void {
    const line = this.redact(raw);
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

/** What a step mounts besides its root, and the environment its secrets add. */
export interface StepMounts {
  readonly cacheDirs: readonly CacheDir[];
  /** Bind, secret, ssh and here-document mounts. */
  readonly extra: readonly MountSpec[];
  /** `KEY=VALUE` added to (and overriding) the step's environment, never recorded anywhere. */
  readonly env: readonly string[];
  /** An overlay root's extra top lowerdir holding the mount points (see mount-stubs.ts). */
  readonly stubLowerdir?: string | undefined;
}

const NO_MOUNTS: StepMounts = { cacheDirs: [], extra: [], env: [] };

/** Mounts ordered parents first (by path depth, stably), so a nested target is not hidden by its parent's mount. */
function byDepth(mounts: readonly MountSpec[]): MountSpec[] {
  const depth = (m: MountSpec): number => m.destination.split('/').filter((p) => p !== '').length;
  return mounts.map((m, i) => ({ m, i })).sort((a, b) => depth(a.m) - depth(b.m) || a.i - b.i).map((x) => x.m);
}

/** `base` with each `KEY=VALUE` of `extra` replacing the same key. */
function mergeEnv(base: readonly string[], extra: readonly string[]): string[] {
  const keys = new Set(extra.map((e) => e.slice(0, e.indexOf('='))));
  return [...base.filter((e) => !keys.has(e.slice(0, e.indexOf('=')))), ...extra];
}

/** Builds the RunSpec of a RUN step over the active snapshot (pure apart from reading /etc/passwd and creating WORKDIR). */
export function execRunSpec(op: ExecOp, active: ActiveSnapshot, defaultNetwork: 'host' | 'none', rootless: boolean, step: StepMounts = NO_MOUNTS): RunSpec {
  const view = viewOf(active);
  const user = resolveRunUser(view, op.user);
  // The working directory is created when missing (as BuildKit does); it becomes part of the layer.
  const cwdParts = view.resolve(op.cwd, true);
  if (view.lookupParts(cwdParts) === undefined) view.ensureDirParts(cwdParts, { uid: 0, gid: 0, mode: 0o755 });
  const m = active.mounts();
  // Lowers relative to the snapshotter's base dir (`l/<short>` links): 100+ layers fit mount(2)'s page.
  const lowerdirs = step.stubLowerdir === undefined || m.type === 'bind' ? undefined : [step.stubLowerdir, ...m.relativeLowerdirs];
  // `volatile`: the upper is this step's alone (committed or removed afterwards, never mounted again), so its
  // unmount skips the sync of the whole upper file system (tens of ms on a busy disk); snapshots are not
  // fsynced anyway (see snapshot/layout.ts). The launcher mounts without it where the kernel refuses it.
  const root: RootSpec = m.type === 'bind'
    ? { path: m.source }
    : { overlay: { lowerdirs: lowerdirs ?? m.relativeLowerdirs, upperdir: m.upperdir, workdir: m.workdir, baseDir: m.baseDir, options: [...m.options, 'volatile'] } };
  const env = [...op.env, ...op.proxyEnv];
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);
  const mounts: MountSpec[] = op.mounts.flatMap((mt): MountSpec[] => (mt.type === 'tmpfs'
    ? [{ destination: mt.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', ...(mt.size === undefined ? [] : [`size=${mt.size}`])] }]
    : []));
  mounts.push(...step.extra);
  for (const c of step.cacheDirs) mounts.push({ destination: c.target, type: 'bind', source: c.dir, options: ['rbind', c.readonly ? 'ro' : 'rw'] });
  return createRunSpec({
    args: op.args,
    root,
    env: mergeEnv(env, step.env),
    cwd: op.cwd,
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
    network: op.network === 'default' ? defaultNetwork : op.network,
    userNamespace: rootless,
    mounts: byDepth(mounts),
    // BuildKit's insecure mode (granted by --allow security.insecure, checked before any step): privileged.
    ...(op.security === 'insecure' ? { privileged: true, devices: listHostDevices() } : {}),
  });
}

/** The mount points a step's mounts need (for the stubs). */
function stubTargets(op: ExecOp, binds: readonly PreparedBind[], secrets: SecretMounts): StubTarget[] {
  const out: StubTarget[] = [];
  for (const m of op.mounts) if (m.type === 'tmpfs' || m.type === 'cache') out.push({ path: m.target, dir: true });
  for (const b of binds) out.push({ path: b.spec.destination, dir: b.dir });
  for (const s of secrets.mounts) out.push({ path: s.destination, dir: false });
  return out;
}

/** A function masking every secret text in a line. */
function redactor(texts: readonly string[]): (line: string) => string {
  if (texts.length === 0) return (l) => l;
  const sorted = [...new Set(texts)].sort((a, b) => b.length - a.length);
  return (line) => sorted.reduce((l, t) => l.split(t).join('****'), line);
}

/**
 * Runs a RUN step in the sandbox over `active`. Output goes to `vertex.log` events (secret texts
 * masked); a non-zero exit throws RUN_EXIT (`"cmd" exited N` plus the last lines of output) at the
 * instruction's location. Every mount's helper state (secret files, agent proxies, bind copies and
 * snapshots, mount point stubs) is removed afterwards, also on failure.
 */
export async function runExec(op: ExecOp, active: ActiveSnapshot, ctx: ExecContext): Promise<void> {
  const { deps, vertex } = ctx;
  const inputs = ctx.inputs ?? new Map<string, FsState>();
  const loc = vertex.loc;
  const cleanups: (() => Promise<void> | void)[] = [];
  // `RUN <<EOF` alone: the body is an executable file at /dev/pipes/<name> (read-only, on /dev's tmpfs, never in a layer).
  const pipeFiles: string[] = [];
  const extra: MountSpec[] = [];
  try {
    const cacheDirs = await prepareCacheDirs(op, deps.store.paths.cache, { deps, signal: ctx.signal, inputs, loc });
    const secrets = await prepareSecretMounts(op, {
      secrets: ctx.secrets ?? new Map(), sshAgents: ctx.sshAgents ?? new Map(), tmpDir: deps.store.paths.tmp, rootless: deps.sandbox.rootless, loc,
    });
    cleanups.push(secrets.cleanup);
    const root = active.mounts();
    const { binds, cleanup } = await prepareBindMounts(op, {
      deps, signal: ctx.signal, inputs, contextSelection: ctx.contextSelection ?? (() => undefined), loc, overlayOptions: root.type === 'overlay' ? root.options : undefined,
    });
    cleanups.push(cleanup);
    extra.push(...binds.map((b) => b.spec), ...secrets.mounts);
    for (const h of op.heredocs) {
      const file = join(deps.store.paths.tmp, `pipe-${process.pid}-${randomBytes(6).toString('hex')}`);
      pipeFiles.push(file);
      await writeFile(file, h.content, { mode: 0o755 });
      await chmod(file, 0o755);
      extra.push({ destination: `/dev/pipes/${h.name}`, type: 'bind', source: file, options: ['bind', 'ro'] });
    }
    const stubs = createMountStubs(viewOf(active), active.mounts(), stubTargets(op, binds, secrets), deps.store.paths.tmp);
    cleanups.push(() => stubs.remove());
    await runInSandbox(op, active, ctx, { cacheDirs, extra, env: secrets.env, stubLowerdir: stubs.lowerdir }, redactor(secrets.redact));
  } catch (err) {
    throw err instanceof TsbuildError || !(err instanceof Error) ? err : new TsbuildError('SOLVE_IO', `cannot prepare the mounts of ${vertex.id}: ${err.message}`, { cause: err });
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
    await Promise.all(pipeFiles.map((f) => rm(f, { force: true })));
  }
}

async function runInSandbox(op: ExecOp, active: ActiveSnapshot, ctx: ExecContext, step: StepMounts, redact: (line: string) => string): Promise<void> {
  const { deps, vertex } = ctx;
  const spec = execRunSpec(op, active, ctx.defaultNetwork, deps.sandbox.rootless, step);
  const tail: string[] = [];
  const sink = (stream: 'stdout' | 'stderr'): LineSink => new LineSink(tail, (data) => deps.events({ type: 'vertex.log', vertex: vertex.id, stream, data }), redact);
  const out = sink('stdout');
  const err = sink('stderr');
  const dirRoot = spec.root.path;
  const created = dirRoot === undefined ? [] : missingMountPoints(dirRoot);
  let result;
  const locks: Lock[] = [];
  try {
    // Sorted, so that two steps locking the same directories never wait on each other in a cycle.
    for (const c of [...step.cacheDirs].sort((a, b) => (a.dir < b.dir ? -1 : 1))) if (c.lock) locks.push(await acquireLock(`${c.dir}.lock`, { signal: ctx.signal, timeoutMs: 24 * 3600_000 }));
    result = await deps.sandbox.run(spec, { stdin: 'ignore', stdout: out.stream, stderr: err.stream }, ctx.signal);
  } catch (e) {
    // The command could not start (missing, not executable): said at the RUN's line, as a failed build (exit 1).
    if (!isTsbuildError(e) || !e.code.startsWith('SANDBOX_COMMAND_')) throw e;
    throw new TsbuildError(e.code, e.message, { cause: e, ...(e.hint === undefined ? {} : { hint: e.hint }), ...(vertex.loc === undefined ? {} : { loc: vertex.loc }) });
  } finally {
    for (const l of locks) await l.release().catch(() => undefined);
    if (dirRoot !== undefined) removeCreatedMountPoints(dirRoot, created);
  }
  out.flush();
  err.flush();
  if (result.exitCode !== 0) {
    const lines = tail.slice(-TAIL_LINES);
    const why = result.reason === undefined ? `exited ${result.exitCode}` : `exited ${result.exitCode} (${result.reason})`;
    throw new TsbuildError('RUN_EXIT', `"${redact(commandText(vertex))}" ${why}${lines.length === 0 ? '' : `\n${lines.map((l) => `  ${l}`).join('\n')}`}`, {
      ...(vertex.loc === undefined ? {} : { loc: vertex.loc }),
    });
  }
}
