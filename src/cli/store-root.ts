import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { openStore, type Store } from '../store/index.js';
import type { CommandContext } from './command.js';

/**
 * The store root: `--root` (relative to the cwd), else `$TSBUILD_ROOT`, else `/var/lib/tsbuild`
 * for uid 0, else `$XDG_DATA_HOME/tsbuild`, else `~/.local/share/tsbuild`.
 */
export function resolveStoreRoot(ctx: Pick<CommandContext, 'global' | 'env' | 'cwd'>, uid: number = process.getuid?.() ?? -1): string {
  if (ctx.global.root !== undefined) return resolve(ctx.cwd, ctx.global.root);
  const env = ctx.env.TSBUILD_ROOT;
  if (env !== undefined && env !== '') return resolve(ctx.cwd, env);
  if (uid === 0) return '/var/lib/tsbuild';
  const xdg = ctx.env.XDG_DATA_HOME;
  if (xdg !== undefined && xdg !== '') return join(resolve(ctx.cwd, xdg), 'tsbuild');
  return join(ctx.env.HOME ?? homedir(), '.local', 'share', 'tsbuild');
}

/** Opens (creating when missing) the store this invocation uses. */
export async function openCliStore(ctx: Pick<CommandContext, 'global' | 'env' | 'cwd'>): Promise<Store> {
  return openStore(resolveStoreRoot(ctx));
}
