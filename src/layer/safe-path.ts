import { lstatSync, mkdirSync, readlinkSync } from 'node:fs';
import { TsbuildError } from '../core/index.js';

/** Maximum symlinks followed while resolving one path (the kernel's MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/**
 * Splits an archive member name into clean components. `./` and empty parts are dropped and
 * `a/../b` is folded lexically. SECURITY: absolute names and `..` that climb above the root
 * are rejected with `code` (LAYER_UNSAFE_PATH for entries, LAYER_BAD_LINK for hardlink targets).
 */
export function splitMemberName(name: string, code: 'LAYER_UNSAFE_PATH' | 'LAYER_BAD_LINK' = 'LAYER_UNSAFE_PATH'): string[] {
  if (name.startsWith('/')) throw new TsbuildError(code, `absolute path ${JSON.stringify(name)} in a layer tar`);
  if (name.includes('\0')) throw new TsbuildError(code, `path with a NUL byte in a layer tar`);
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.pop() === undefined) throw new TsbuildError(code, `path ${JSON.stringify(name)} escapes the layer root`);
      continue;
    }
    out.push(part);
  }
  return out;
}

/**
 * Resolves directories inside `root` as if `root` were `/` (chroot semantics, done in user space).
 * SECURITY: every component is lstat'ed; a symlink is replaced by its target resolved against the
 * root (absolute targets restart at the root, `..` stops at the root), so the returned real path
 * only names real directories below `root`, and the kernel never follows a link out of it.
 */
export class ScopedResolver {
  private readonly cache = new Map<string, string>();

  constructor(readonly root: string) {}

  /** Forgets cached resolutions; call after anything that may remove or replace a directory or symlink. */
  invalidate(): void {
    this.cache.clear();
  }

  /** True when `parts` resolves from the cache (no file system access). */
  isCached(parts: readonly string[]): boolean {
    return this.cache.has(parts.join('/'));
  }

  /** Remembers that logical directory `parts` is the real directory `real`. */
  remember(parts: readonly string[], real: string): void {
    this.cache.set(parts.join('/'), real);
  }

  /**
   * Returns the real path of the directory named by `parts`, creating missing directories (mode 0755)
   * when `create`; undefined when it is missing and not created. Throws LAYER_SYMLINK_LOOP,
   * LAYER_NOT_A_DIRECTORY.
   */
  resolveDir(parts: readonly string[], create: boolean, onCreate?: (real: string) => void): string | undefined {
    const key = parts.join('/');
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const cur: string[] = [];
    const todo = [...parts];
    let links = 0;
    while (todo.length > 0) {
      const c = todo.shift() as string;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        cur.pop(); // SECURITY: `..` at the root stays at the root
        continue;
      }
      cur.push(c);
      const real = `${this.root}/${cur.join('/')}`;
      const st = lstatSync(real, { throwIfNoEntry: false });
      if (st === undefined) {
        if (!create) return undefined;
        mkdirSync(real, 0o755);
        onCreate?.(real);
        continue;
      }
      if (st.isDirectory()) continue;
      if (st.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) {
          throw new TsbuildError('LAYER_SYMLINK_LOOP', `too many levels of symbolic links resolving ${JSON.stringify(key)} in the layer`);
        }
        cur.pop();
        const target = readlinkSync(real);
        if (target.startsWith('/')) cur.length = 0; // SECURITY: absolute targets restart at the root
        todo.unshift(...target.split('/'));
        continue;
      }
      throw new TsbuildError('LAYER_NOT_A_DIRECTORY', `${JSON.stringify(key)}: /${cur.join('/')} is not a directory`);
    }
    const real = cur.length === 0 ? this.root : `${this.root}/${cur.join('/')}`;
    this.cache.set(key, real);
    return real;
  }
}
