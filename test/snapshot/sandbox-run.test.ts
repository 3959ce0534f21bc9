import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Digest } from '../../src/core/index.js';
import { createRunSpec } from '../../src/sandbox/index.js';
import { OverlaySnapshotter } from '../../src/snapshot/index.js';
import { testIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { assertNoLeftoverMounts, rootSandbox, runCaptured } from '../sandbox/sandbox-helpers.js';
import { describeTar, makeDirs, overlayMissing, packDir } from './helpers.js';

const reason = (await overlayMissing()) ?? busyboxMissing();

testIf(reason, 'overlay snapshotter: a RUN in the sandbox over a prepared snapshot gives the expected layer when committed', async (t) => {
  const dirs = await makeDirs(t);
  const work = await tempDir(t, 'tsbuild-snaprun-');
  assertNoLeftoverMounts(t, [work, join(dirs.snapshots, '..')]);
  const base = await packDir(await makeBusyboxRootfs(join(work, 'rootfs')), 'tree');
  const s = new OverlaySnapshotter(dirs);
  const chain = (await s.unpack(undefined, base.diffId, () => Readable.from([base.tar]))).name as Digest;
  const sandbox = rootSandbox(join(work, 'state'));
  let parent = chain;
  const steps = ['echo one > /one; rm /etc/group', 'rm -rf /home; mkdir -p /home/new; echo two > /home/new/f; cat /one'];
  const layers: string[][] = [];
  for (const [i, script] of steps.entries()) {
    const active = await s.prepare(`run-${i}`, parent);
    const m = active.mounts();
    if (m.type !== 'overlay') throw new Error('expected an overlay root');
    const r = await runCaptured(sandbox, createRunSpec({ args: ['sh', '-c', script], root: { overlay: { lowerdirs: m.lowerdirs, upperdir: m.upperdir, workdir: m.workdir } } }));
    t.is(r.exitCode, 0, r.stderr);
    const diff = await s.diff(`run-${i}`);
    const layer = await packDir(diff.dir, diff.mode);
    layers.push(await describeTar(layer.tar));
    parent = (await s.commit(`run-${i}`, layer.diffId)).name as Digest;
  }
  t.deepEqual(layers, [
    ['etc/ directory 755', 'etc/.wh.group', 'one file 644 2c8b08da'],
    ['home/ directory 755', 'home/.wh..wh..opq', 'home/new/ directory 755', 'home/new/f file 644 27dd8ed4'],
  ]);
  const host = await s.lookup(parent, '/home/new/f');
  t.truthy(host);
  t.is(await s.lookup(parent, '/etc/group'), undefined);
});
