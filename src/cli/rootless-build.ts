/**
 * Rootless builds: a build by a non-root user re-executes itself as root of a user namespace that
 * maps 0 to the user and 1.. to the user's /etc/subuid and /etc/subgid ranges (as `buildah unshare`
 * and rootless podman do). Inside, every file operation (layer unpack, COPY --chown, the naive
 * snapshotter's copies, packing an upperdir) sees container ids: a file of uid 1000 is written as
 * host uid <subuid start>+999 and packed back as 1000, and files of mapped ids that the user could
 * not read on the host are readable. Sandboxes nest a user namespace with an identity map.
 */
import { spawn } from 'node:child_process';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { TsbuildError } from '../core/index.js';
import { resolveIdMaps, writeIdMaps } from '../sandbox/index.js';
import type { CommandContext } from './command.js';
import { ownEntry, stateDirFor } from './container-deps.js';
import { resolveStoreRoot } from './store-root.js';

/** The node that re-runs the CLI: its binary and flags (e.g. `--import tsx`). */
export interface NodeProcess {
  readonly execPath: string;
  readonly execArgv: readonly string[];
}

// sh waits (unmapped) until the parent has written the id maps, then execs the CLI as root of the namespace.
const WAIT_FOR_MAPS = 'echo ready >&3 && read -r go <&3 && [ "$go" = go ] || exit 125; exec 3>&-; exec "$@"';

/** Node flags with `--import X` / `--loader X` of a bare package name resolved to a URL: the child runs in the build's cwd. */
function resolveNodeFlags(flags: readonly string[]): string[] {
  const out: string[] = [];
  const resolveSpec = (spec: string): string => {
    if (spec.startsWith('.') || spec.startsWith('/') || /^[a-z]+:/.test(spec)) return spec;
    try {
      return import.meta.resolve(spec);
    } catch {
      return spec;
    }
  };
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i] as string;
    const m = /^(--import|--loader|--experimental-loader)=(.*)$/.exec(f);
    if (m !== null) out.push(`${m[1] as string}=${resolveSpec(m[2] as string)}`);
    else if ((f === '--import' || f === '--loader' || f === '--experimental-loader') && i + 1 < flags.length) out.push(f, resolveSpec(flags[++i] as string));
    else out.push(f);
  }
  return out;
}

/**
 * Runs this `tsbuild build` again inside a new user namespace with the invoking user's sub-id ranges
 * (newuidmap/newgidmap; a single-id map with a warning when there are none) and resolves with its
 * exit code (the same argv, through this CLI's own entry). The store root and sandbox state dir are resolved here, for the user, and handed over as
 * TSBUILD_ROOT and TSBUILD_RUN_DIR. `dockerfileText` (a Dockerfile read from stdin) is written to the
 * child's stdin. Throws CLI_USERNS when the namespace cannot be created.
 */
export async function runBuildInUserNamespace(ctx: CommandContext, node: NodeProcess, dockerfileText: string | undefined): Promise<number> {
  const args = ctx.argv;
  if (args === undefined) throw new TsbuildError('INTERNAL', 'a rootless build needs the argv of its invocation to run it again');
  const uid = process.getuid?.() ?? 0;
  const host = { uid, gid: process.getgid?.() ?? 0, user: userInfo().username };
  const planned = await resolveIdMaps(host, { subuid: '/etc/subuid', subgid: '/etc/subgid' });
  if (planned.warning !== undefined) ctx.stderr.write(`WARNING: ${planned.warning}\n`);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(ctx.env)) if (v !== undefined) env[k] = v;
  env.TSBUILD_ROOT = resolveStoreRoot(ctx, uid);
  env.TSBUILD_RUN_DIR = dirname(stateDirFor(ctx, uid));

  const child = spawn('unshare', ['--user', '--', '/bin/sh', '-c', WAIT_FOR_MAPS, 'sh', node.execPath, ...resolveNodeFlags(node.execArgv), ownEntry(), ...args], {
    cwd: ctx.cwd,
    env,
    // Its own process group: a terminal's Ctrl-C reaches only us, and we forward exactly one SIGINT.
    detached: true,
    stdio: [dockerfileText === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe', 'pipe'],
  });
  const control = child.stdio[3] as Readable & Writable;
  control.on('error', () => undefined);
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(dockerfileText);
  let stderr = '';
  let started = false;
  child.stdout?.on('data', (c: Buffer) => ctx.stdout.write(c));
  child.stderr?.on('data', (c: Buffer) => {
    if (!started && stderr.length < 4096) stderr += c.toString();
    ctx.stderr.write(c);
  });
  const forward = (): void => {
    child.kill('SIGINT');
  };
  ctx.signal.addEventListener('abort', forward, { once: true });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', (err) => reject(new TsbuildError('CLI_USERNS', `cannot start unshare(1) for a rootless build: ${err.message}`, { cause: err, exitCode: 125, hint: 'unshare comes from the Debian package "util-linux"' })));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  exited.catch(() => undefined);
  try {
    const ready = await new Promise<boolean>((resolve) => {
      control.once('data', () => resolve(true));
      control.once('close', () => resolve(false));
      child.once('close', () => resolve(false));
      child.once('error', () => resolve(false));
    });
    if (!ready) {
      const end = await exited;
      throw new TsbuildError('CLI_USERNS', `cannot create a user namespace for a rootless build: ${stderr.trim() || `unshare exited ${String(end.code ?? end.signal)}`}`, {
        exitCode: 125,
        hint: 'unprivileged user namespaces must be enabled (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)',
      });
    }
    try {
      await writeIdMaps(child.pid as number, planned.maps);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    started = true;
    control.end('go\n');
    const end = await exited;
    if (end.signal !== null) return 128 + (toSignalNumber(end.signal) ?? 1);
    return end.code ?? 125;
  } finally {
    ctx.signal.removeEventListener('abort', forward);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited.catch(() => undefined);
    }
  }
}

const SIGNALS: Readonly<Partial<Record<NodeJS.Signals, number>>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

function toSignalNumber(s: NodeJS.Signals): number | undefined {
  return SIGNALS[s];
}
