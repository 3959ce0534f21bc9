import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Digest } from '../../src/core/index.js';
import { isTsbuildError } from '../../src/core/index.js';
import { OverlaySnapshotter, chainIdOfStack, formatOverlayData, MOUNT_DATA_LIMIT } from '../../src/snapshot/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { makeDirs, openRoot, overlayMissing, packDir } from './helpers.js';

const overlayReason = await overlayMissing();
const LAYERS = 120;

testIf(overlayReason, 'overlay snapshotter: a 120-layer chain mounts through short links when the absolute lowerdirs exceed a page', async (t) => {
  const dirs = await makeDirs(t);
  const work = await tempDir(t);
  const s = new OverlaySnapshotter(dirs);
  let chain: Digest | undefined;
  const diffIds: Digest[] = [];
  for (let i = 0; i < LAYERS; i++) {
    const dir = join(work, `l${i}`);
    mkdirSync(join(dir, 'layers'), { recursive: true });
    writeFileSync(join(dir, 'layers', `f${i}`), String(i));
    writeFileSync(join(dir, 'top'), String(i));
    const layer = await packDir(dir, 'tree');
    diffIds.push(layer.diffId);
    chain = (await s.unpack(chain, layer.diffId, () => Readable.from([layer.tar]))).name as Digest;
  }
  t.is(chain, chainIdOfStack(diffIds));
  const active = await s.prepare('deep', chain);
  const m = active.mounts();
  if (m.type !== 'overlay') throw new Error('expected an overlay mount');
  t.is(m.lowerdirs.length, LAYERS);
  // The absolute form cannot be passed to mount(2); the relative one fits.
  const absolute = t.throws(() => formatOverlayData(m));
  t.true(isTsbuildError(absolute, 'SNAPSHOT_TOO_MANY_LAYERS'));
  t.true(formatOverlayData(m, { relative: true }).length <= MOUNT_DATA_LIMIT);
  const { root, close } = await openRoot(t, active, dirs);
  t.is(readFileSync(join(root, 'top'), 'utf8'), String(LAYERS - 1)); // the nearest layer wins
  t.is(readdirSync(join(root, 'layers')).length, LAYERS);
  writeFileSync(join(root, 'written'), 'w');
  await close();
  const diff = await s.diff('deep');
  t.deepEqual(readdirSync(diff.dir), ['written']);
});
