import type { ExecutionContext } from 'ava';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isTsbuildError } from '../../src/core/index.js';
import { chainIdOf, type Snapshotter, type SnapshotterKind } from '../../src/snapshot/index.js';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { makeDirs, makeSnapshotter, overlayMissing, packDir, type TestLayer } from './helpers.js';

const overlayReason = await overlayMissing();

/** Two layers: `a` = 1, then `a` = 2 and `b` = 2. */
async function twoLayers(t: ExecutionContext): Promise<[TestLayer, TestLayer]> {
  const work = await tempDir(t);
  mkdirSync(join(work, 'l1'));
  writeFileSync(join(work, 'l1', 'a'), '1');
  mkdirSync(join(work, 'l2'));
  writeFileSync(join(work, 'l2', 'a'), '2');
  writeFileSync(join(work, 'l2', 'b'), '2');
  return [await packDir(join(work, 'l1'), 'tree'), await packDir(join(work, 'l2'), 'tree')];
}

/** Resolves once `check` holds (polled; generous deadline). */
async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function publishesAfterParent(t: ExecutionContext, kind: SnapshotterKind): Promise<void> {
  const dirs = await makeDirs(t);
  const s: Snapshotter = makeSnapshotter(kind, dirs);
  const [l1, l2] = await twoLayers(t);
  const parent = chainIdOf(undefined, l1.diffId);
  const top = chainIdOf(parent, l2.diffId);
  const ready = deferred();
  let opened = false;
  // The parent is not committed yet: without parentReady this fails with SNAPSHOT_NOT_FOUND.
  const child = s.unpack(parent, l2.diffId, () => {
    opened = true;
    return Readable.from([l2.tar]);
  }, { parentReady: ready.promise });
  if (kind === 'overlay') await until(() => opened); // an overlay layer unpacks while its parent is made
  t.is(await s.stat(top), undefined);
  t.is((await s.unpack(undefined, l1.diffId, () => Readable.from([l1.tar]))).name, parent);
  t.is(await s.stat(top), undefined);
  ready.resolve();
  const info = await child;
  t.true(opened);
  t.is(info.name, top);
  t.is(info.parent, parent);
  t.is(readFileSync((await s.lookup(top, '/a')) as string, 'utf8'), '2');
  t.is(readFileSync((await s.lookup(top, '/b')) as string, 'utf8'), '2');
  t.is(readFileSync((await s.lookup(parent, '/a')) as string, 'utf8'), '1');
  t.deepEqual(readdirSync(dirs.tmp), []);
}

testIf(overlayReason, 'overlay snapshotter: with parentReady a layer unpacks before its parent exists and is published after it', (t) => publishesAfterParent(t, 'overlay'));
testIf(undefined, 'naive snapshotter: with parentReady a layer waits for its parent and is published after it', (t) => publishesAfterParent(t, 'naive'));

async function failedParent(t: ExecutionContext, kind: SnapshotterKind): Promise<void> {
  const dirs = await makeDirs(t);
  const s = makeSnapshotter(kind, dirs);
  const [l1, l2] = await twoLayers(t);
  const parent = chainIdOf(undefined, l1.diffId);
  const ready = deferred();
  const child = s.unpack(parent, l2.diffId, () => Readable.from([l2.tar]), { parentReady: ready.promise });
  ready.reject(new Error('the parent failed'));
  const err = await t.throwsAsync(child);
  t.is(err?.message, 'the parent failed');
  t.deepEqual(await s.list(), []);
  t.deepEqual(readdirSync(dirs.tmp), []);
  // A parentReady that settles while the parent is still missing is no licence to publish.
  const child2 = s.unpack(parent, l2.diffId, () => Readable.from([l2.tar]), { parentReady: Promise.resolve() });
  t.true(isTsbuildError(await t.throwsAsync(child2), 'SNAPSHOT_NOT_FOUND'));
  t.deepEqual(await s.list(), []);
}

testIf(overlayReason, 'overlay snapshotter: a layer whose parent fails is not published', (t) => failedParent(t, 'overlay'));
testIf(undefined, 'naive snapshotter: a layer whose parent fails is not published', (t) => failedParent(t, 'naive'));
