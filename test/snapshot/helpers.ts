import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Digest } from '../../src/core/index.js';
import { packLayer, readTar } from '../../src/layer/index.js';
import {
  NaiveSnapshotter, OverlaySnapshotter, mountSnapshot, probeOverlay, unmountSnapshot,
  type ActiveSnapshot, type SnapshotDirs, type Snapshotter, type SnapshotterKind,
} from '../../src/snapshot/index.js';
import { tempDir } from '../helpers/tmp.js';

/** A layer tar in memory with its diffID. */
export interface TestLayer {
  readonly tar: Buffer;
  readonly diffId: Digest;
}

/** Collects a stream into a buffer (small test data only). */
export async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Packs `dir` with packLayer (the real thing) into a buffer. */
export async function packDir(dir: string, mode: 'tree' | 'changeset'): Promise<TestLayer> {
  const packed = packLayer(dir, { mode });
  const tar = await collect(packed.stream);
  return { tar, diffId: (await packed.done).diffId };
}

/** A fresh store-like pair of directories (snapshots/ and tmp/) removed after the test. */
export async function makeDirs(t: ExecutionContext): Promise<SnapshotDirs> {
  const root = await tempDir(t, 'tsbuild-snap-');
  const dirs = { snapshots: join(root, 'snapshots'), tmp: join(root, 'tmp') };
  mkdirSync(dirs.snapshots);
  mkdirSync(dirs.tmp);
  return dirs;
}

/** Builds a snapshotter of `kind` over `dirs`. */
export function makeSnapshotter(kind: SnapshotterKind, dirs: SnapshotDirs): Snapshotter {
  return kind === 'overlay' ? new OverlaySnapshotter(dirs) : new NaiveSnapshotter(dirs);
}

/** Why overlay snapshots cannot be tested here, or undefined. */
export async function overlayMissing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'mounting needs root';
  const scratch = join('/tmp', `tsbuild-probe-${process.pid}`);
  mkdirSync(scratch, { recursive: true });
  try {
    const p = await probeOverlay(scratch, false);
    return p.ok ? undefined : p.reason;
  } finally {
    execFileSync('rm', ['-rf', scratch]);
  }
}

function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '');
}

/**
 * Makes the active snapshot's root reachable as a directory: overlay is mounted (unmounted in
 * teardown, which also asserts that no mount is left under the test's directories); a bind root
 * is used as it is. Returns the root and an unmount function (idempotent).
 */
export async function openRoot(t: ExecutionContext, active: ActiveSnapshot, dirs: SnapshotDirs): Promise<{ root: string; close: () => Promise<void> }> {
  const m = active.mounts();
  if (m.type === 'bind') return { root: m.source, close: async () => undefined };
  const target = join(dirs.tmp, '..', `mnt-${active.key}`);
  mkdirSync(target, { recursive: true });
  await mountSnapshot(m, target);
  let mounted = true;
  const close = async (): Promise<void> => {
    if (!mounted) return;
    mounted = false;
    await unmountSnapshot(target);
  };
  t.teardown(async () => {
    await close();
    const base = join(dirs.tmp, '..');
    if (mountPoints().some((p) => p.startsWith(base))) throw new Error(`a mount is left under ${base}`);
  });
  return { root: target, close };
}

/** A short description of a layer tar: one line per entry (`name type mode [content sha|link target]`). */
export async function describeTar(tar: Buffer): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readTar(Readable.from([tar]))) {
    const h = e.header;
    const body = await collect(e.body);
    const extra = h.type === 'file' ? createHash('sha256').update(body).digest('hex').slice(0, 8)
      : h.type === 'symlink' || h.type === 'link' ? h.linkname : '';
    const isWhiteout = /(^|\/)\.wh\./.test(h.name);
    out.push(isWhiteout ? h.name : `${h.name} ${h.type} ${(h.mode & 0o7777).toString(8)}${extra === '' ? '' : ` ${extra}`}`);
  }
  return out;
}

/** Describes a directory tree (name, type, mode, content hash or link target), sorted. */
export function describeDir(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const p = join(root, r);
      const st = lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out.push(`${r}/ dir ${mode}`);
        walk(r);
      } else if (st.isSymbolicLink()) out.push(`${r} symlink ${readlinkSync(p)}`);
      else if (st.isFile()) out.push(`${r} file ${mode} ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 8)}`);
      else out.push(`${r} special ${mode}`);
    }
  };
  walk('');
  return out;
}
