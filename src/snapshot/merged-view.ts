import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { getXattr } from '../sys/index.js';

const MAX_SYMLINK_HOPS = 40;

function split(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/**
 * Finds the host path of what an overlay of `layers` (nearest first, each a directory with overlay
 * whiteouts) shows at `path`, without mounting: the nearest layer's entry wins, a 0/0 char device
 * hides the name, a non-directory hides lower directories, `<prefix>.overlay.opaque=y` stops the merge.
 * Intermediate symlinks are resolved in the merged view (at most 40), a final symlink is returned as
 * itself. Returns undefined when the name does not exist (or a component is not a directory).
 * SECURITY: resolution happens inside the layers only; `..` and absolute symlink targets stop at
 * the snapshot root, so no path outside the layers is ever returned.
 */
export function lookupMerged(layers: readonly string[], path: string, xattrPrefix: 'trusted' | 'user'): string | undefined {
  let pending = split(path);
  let hops = 0;
  const all = layers.map((_, i) => i);
  restart: for (;;) {
    const resolved: string[] = [];
    let set = all;
    for (let i = 0; i < pending.length; i++) {
      const c = pending[i] as string;
      const last = i === pending.length - 1;
      if (c === '..') {
        pending = [...resolved.slice(0, -1), ...pending.slice(i + 1)];
        continue restart;
      }
      let found: { li: number; st: Stats } | undefined;
      for (const li of set) {
        const st = lstatOrUndefined(join(layers[li] as string, ...resolved, c));
        if (st === undefined) continue;
        if (isWhiteout(st)) return undefined;
        found = { li, st };
        break;
      }
      if (found === undefined) return undefined;
      const host = join(layers[found.li] as string, ...resolved, c);
      if (found.st.isSymbolicLink() && !last) {
        if (++hops > MAX_SYMLINK_HOPS) return undefined;
        const target = readlinkSync(host);
        pending = [...(target.startsWith('/') ? [] : resolved), ...split(target), ...pending.slice(i + 1)];
        continue restart;
      }
      if (last) return host;
      if (!found.st.isDirectory()) return undefined;
      // The directories merged at this path: from the winner down, until something hides the rest.
      // A directory's opaque xattr is read only when a lower layer has a directory there too (nothing
      // else to hide): a single-layer lookup never loads the xattr binding (koffi, ~20 ms).
      const next: number[] = [];
      let above: string | undefined;
      for (const li of set) {
        if (li < found.li) continue;
        const p = join(layers[li] as string, ...resolved, c);
        const st = lstatOrUndefined(p);
        if (st === undefined) continue;
        if (!st.isDirectory()) break;
        if (above !== undefined && getXattr(above, `${xattrPrefix}.overlay.opaque`)?.toString() === 'y') break;
        next.push(li);
        above = p;
      }
      set = next;
      resolved.push(c);
    }
    const top = set[0];
    return top === undefined ? undefined : join(layers[top] as string, ...resolved);
  }
}
