import { createWriteStream, linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmdirSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { TsbuildError } from '../core/index.js';
import { makeNode, setXattr } from '../sys/index.js';
import { copyEntry, copyMetadata, type CopyOptions } from './copy-tree.js';

/** One recorded entry of a freshly prepared tree: its inode and change time. */
interface RecordEntry {
  readonly ino: bigint;
  /** Birth time (0 where the file system has none): tells a reused inode number from the same inode. */
  readonly btime: bigint;
  readonly ctime: bigint;
  readonly dir: boolean;
}

/** The state of a tree right after it was copied: any later change alters an inode or a ctime. */
interface TreeRecord {
  readonly byPath: Map<string, RecordEntry>;
  readonly children: Map<string, string[]>;
}

function childRel(parent: string, name: string): string {
  return parent === '' ? name : `${parent}/${name}`;
}

/**
 * Writes the record of `root` to `file`: one JSON line `[path, ino, ctimeNs, isDir, btimeNs]` per entry.
 * The kernel updates ctime on every change (content, mode, owner, xattr, link count), so comparing
 * with this record finds changes without trusting mtimes, which processes can set freely.
 */
export async function writeTreeRecord(root: string, file: string): Promise<void> {
  const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
  const stack: string[] = [''];
  try {
    while (stack.length > 0) {
      const rel = stack.pop() as string;
      for (const name of readdirSync(join(root, rel))) {
        const r = childRel(rel, name);
        const st = lstatSync(join(root, r), { bigint: true });
        if (!out.write(`${JSON.stringify([r, String(st.ino), String(st.ctimeNs), st.isDirectory() ? 1 : 0, String(st.birthtimeNs)])}\n`)) await once(out, 'drain');
        if (st.isDirectory()) stack.push(r);
      }
    }
    out.end();
    await once(out, 'finish');
  } catch (err) {
    out.destroy();
    throw new TsbuildError('SNAPSHOT_IO', `cannot record the tree ${root}: ${(err as Error).message}`, { cause: err });
  }
}

function readTreeRecord(file: string): TreeRecord {
  const byPath = new Map<string, RecordEntry>();
  const children = new Map<string, string[]>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new TsbuildError('SNAPSHOT_CORRUPT', `cannot read the tree record ${file}`, { cause });
  }
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [path, ino, ctime, dir, btime] = JSON.parse(line) as [string, string, string, number, string];
    byPath.set(path, { ino: BigInt(ino), btime: BigInt(btime), ctime: BigInt(ctime), dir: dir === 1 });
    const cut = path.lastIndexOf('/');
    const parent = cut < 0 ? '' : path.slice(0, cut);
    const list = children.get(parent);
    if (list === undefined) children.set(parent, [path.slice(cut + 1)]);
    else list.push(path.slice(cut + 1));
  }
  return { byPath, children };
}

/** Options of {@link writeChangeSet}. */
export interface ChangeSetOptions extends CopyOptions {
  /** Xattr namespace of opaque-directory markers: `trusted` (root) or `user`. */
  readonly xattrPrefix: 'trusted' | 'user';
}

/**
 * Compares the tree `root` with its record `recordFile` and writes what changed into `out` (must not
 * exist) as an overlay upperdir would hold it: changed and new entries (hardlinked from `root`, copied
 * where linking is refused), their parent directories with their metadata, 0/0 char devices for
 * deleted names and `<prefix>.overlay.opaque=y` on directories that replaced an earlier entry.
 * The result is meant for `packLayer(out, { mode: 'changeset' })`. Returns the number of entries written.
 * Nothing may write `root` meanwhile.
 */
export function writeChangeSet(root: string, recordFile: string, out: string, options: ChangeSetOptions): number {
  // SECURITY: `root` was written by the build step's processes (all gone by now). Every entry is
  // lstat-ed and only descended into when it is a real directory; symlinks are linked or recreated
  // as symlinks, never followed, so nothing outside `root` is read or written.
  const record = readTreeRecord(recordFile);
  let count = 0;
  const place = (src: string, dst: string, st: BigIntStats): void => {
    try {
      linkSync(src, dst); // link(2) never follows a symlink it links
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'EXDEV' && code !== 'EMLINK') throw err;
      copyEntry(src, dst, st, options);
    }
  };
  const walk = (rel: string, abs: string, dst: string, fresh: boolean): boolean => {
    let any = false;
    const names = readdirSync(abs);
    for (const name of names) {
      const r = childRel(rel, name);
      const a = join(abs, name);
      const d = join(dst, name);
      const st = lstatSync(a, { bigint: true });
      const rec = fresh ? undefined : record.byPath.get(r);
      if (st.isDirectory()) {
        const same = rec !== undefined && rec.dir && rec.ino === st.ino && rec.btime === st.birthtimeNs;
        mkdirSync(d, 0o700);
        const inner = walk(r, a, d, fresh || !same);
        if (inner || !same || rec?.ctime !== st.ctimeNs) {
          // A directory over an earlier entry hides everything below it, as overlayfs marks it.
          if (rec !== undefined && !same) setXattr(d, `${options.xattrPrefix}.overlay.opaque`, Buffer.from('y'));
          copyMetadata(a, d, st, options);
          count++;
          any = true;
        } else {
          rmdirSync(d);
        }
      } else if (rec === undefined || rec.dir || rec.ino !== st.ino || rec.btime !== st.birthtimeNs || rec.ctime !== st.ctimeNs) {
        place(a, d, st);
        count++;
        any = true;
      }
    }
    if (!fresh) {
      const present = new Set(names);
      for (const name of record.children.get(rel) ?? []) {
        if (present.has(name)) continue;
        makeNode(join(dst, name), 'char', 0, 0, 0); // an overlay whiteout
        count++;
        any = true;
      }
    }
    return any;
  };
  try {
    mkdirSync(out, 0o755);
    walk('', root, out, false);
  } catch (err) {
    if (err instanceof TsbuildError && err.code !== 'CORE_SYSCALL') throw err;
    throw new TsbuildError('SNAPSHOT_DIFF_FAILED', `cannot compute the changes of ${root}: ${(err as Error).message}`, { cause: err });
  }
  return count;
}
