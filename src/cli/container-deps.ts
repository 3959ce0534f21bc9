import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findCompressionTools, type CompressionTools } from '../layer/index.js';
import { ContainerStore, findSlirp4netns, type CreateDeps, type MonitorCommand, type RunnerDeps, type SlirpLookup } from '../runner/index.js';
import { Sandbox } from '../sandbox/index.js';
import { openSnapshotter } from '../snapshot/index.js';
import type { CommandContext } from './command.js';
import { openCliStore, resolveStoreRoot } from './store-root.js';

/** Directory for sandbox state: $TSBUILD_RUN_DIR, /run/tsbuild as root, else $XDG_RUNTIME_DIR/tsbuild or the store root. */
export function stateDirFor(ctx: Pick<CommandContext, 'global' | 'env' | 'cwd'>, uid: number): string {
  const runDir = ctx.env.TSBUILD_RUN_DIR;
  if (runDir !== undefined && runDir !== '') return join(resolve(ctx.cwd, runDir), 'sandbox');
  if (uid === 0) return '/run/tsbuild/sandbox';
  const runtime = ctx.env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && runtime !== '') return join(runtime, 'tsbuild', 'sandbox');
  return join(resolveStoreRoot(ctx, uid), 'sandbox-state');
}

/** The compiled sandbox launcher ($TSBUILD_LAUNCHER overrides). */
export function launcherPathFor(ctx: Pick<CommandContext, 'env'>): string {
  return ctx.env.TSBUILD_LAUNCHER ?? fileURLToPath(new URL('../../build/tsbuild-launcher', import.meta.url));
}

/** Everything the container commands need, wired from the CLI context. */
export type ContainerDeps = RunnerDeps & CreateDeps & { readonly storeRoot: string };

/** The sandbox of the container commands, owned by this process (a foreground run makes it before the store is opened, to start its sandbox ahead). */
export function containerSandbox(ctx: CommandContext): Sandbox {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  return new Sandbox({
    launcherPath: launcherPathFor(ctx),
    stateDir: stateDirFor(ctx, uid),
    // The login name matters only rootless (the /etc/subuid lookup): read on first use (an NSS lookup, and node:os).
    host: { uid, gid, get user() { return userInfo().username; } },
    ownerPid: process.pid,
    onWarning: (msg) => ctx.stderr.write(`WARNING: ${msg}\n`),
  });
}

/**
 * Opens the store, its containers, the snapshotter and a sandbox owned by this process (`made.sandbox`, else a new one;
 * `made.slirp4netns`: already looked up). `made.onUnpack` runs when the compression tools are first used: by a run,
 * only to unpack its image's layers.
 */
export async function openContainerDeps(ctx: CommandContext, made: { readonly sandbox?: Sandbox; readonly slirp4netns?: SlirpLookup; readonly onUnpack?: () => void } = {}): Promise<ContainerDeps> {
  const sandbox = made.sandbox ?? containerSandbox(ctx);
  const store = await openCliStore(ctx);
  const { snapshotter } = await openSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp });
  const uid = process.getuid?.() ?? 0;
  const launcherPath = launcherPathFor(ctx);
  let compressionTools: CompressionTools | undefined;
  return {
    store,
    storeRoot: resolveStoreRoot(ctx),
    containers: new ContainerStore(store.paths.containers),
    snapshotter,
    sandbox,
    launcherPath,
    rootless: uid !== 0,
    ownerPid: process.pid,
    // Looked up on first use (a PATH scan): only unpacking an image's layers needs them, a run of an unpacked image never.
    get compressionTools(): CompressionTools {
      if (compressionTools === undefined) {
        made.onUnpack?.();
        compressionTools = findCompressionTools(ctx.env.PATH);
      }
      return compressionTools;
    },
    slirp4netns: made.slirp4netns ?? findSlirp4netns(ctx.env.PATH),
  };
}

/**
 * This CLI's process entry, for re-executing it (container monitor, rootless build): main.ts when running
 * from source (tsx), else the built entry: the bundle's CommonJS entry main.cjs (no ES module loading at
 * start-up), else tsc's main.js.
 */
export function ownEntry(): string {
  if (import.meta.url.endsWith('.ts')) return fileURLToPath(new URL('./main.ts', import.meta.url));
  const cjs = fileURLToPath(new URL('./main.cjs', import.meta.url));
  return existsSync(cjs) ? cjs : fileURLToPath(new URL('./main.js', import.meta.url));
}

/** The command that starts the monitor of container `id`: this CLI re-executed (through tsx when running from source). */
export function monitorCommandFor(ctx: CommandContext, storeRoot: string, id: string): MonitorCommand {
  const fromSource = import.meta.url.endsWith('.ts');
  const main = ownEntry();
  let loader: string[] = [];
  if (fromSource) {
    let tsx = 'tsx';
    try {
      tsx = import.meta.resolve('tsx');
    } catch {
      // resolved from the cwd below
    }
    loader = ['--import', tsx];
  }
  return {
    execPath: process.execPath,
    args: [...loader, main, '--root', storeRoot, 'container-monitor', id],
    env: { ...ctx.env, ...(ctx.env.TSBUILD_LAUNCHER === undefined ? { TSBUILD_LAUNCHER: launcherPathFor(ctx) } : {}) },
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
  };
}
