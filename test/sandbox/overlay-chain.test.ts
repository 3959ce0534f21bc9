import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { Digest } from '../../src/core/index.js';
import { isTsbuildError } from '../../src/core/index.js';
import { runWithOciRuntime } from '../../src/sandbox/oci-runtime.js';
import { encodeLauncherSpec, OVERLAY_DATA_LIMIT, overlayMountData } from '../../src/sandbox/launcher-spec.js';
import { createRunSpec, type OverlayRoot } from '../../src/sandbox/spec.js';
import { OverlaySnapshotter, type OverlayMount } from '../../src/snapshot/index.js';
import { testIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { overlayMissing, packDir } from '../snapshot/helpers.js';
import { assertNoLeftoverMounts, ensureLauncher, REPO, rootSandbox, runCaptured } from './sandbox-helpers.js';

// Top-level await before any test is declared (ava requires synchronous declarations).
const rootReason = (await overlayMissing()) ?? busyboxMissing();
const LAYERS = 120;
const USER = 'tsbuild-test';
const BASE = '/var/lib/tsbuild/store/snapshots/overlay';

/** 119 lowers as the snapshotter names them, below the base dir. */
const relLowers = Array.from({ length: 119 }, (_, i) => `l/${i.toString(16).padStart(12, '0')}`);

function badSpec(t: ExecutionContext, root: OverlayRoot, userns = false): void {
  t.true(isTsbuildError(t.throws(() => overlayMountData(root, { userns })), 'SANDBOX_BAD_SPEC'), JSON.stringify(root));
}

test('sandbox overlay root: relative lowerdirs and paths below baseDir are passed relative when a baseDir is given', (t) => {
  const m = overlayMountData({ lowerdirs: ['l/aaa', `${BASE}/l/bbb`, '/elsewhere/c'], upperdir: `${BASE}/active/k/upper`, workdir: `${BASE}/active/k/work`, baseDir: BASE }, { above: ['/run/init'], userns: false });
  t.deepEqual(m, { data: 'lowerdir=/run/init:l/aaa:l/bbb:/elsewhere/c,upperdir=active/k/upper,workdir=active/k/work', baseDir: BASE });
  // Without a baseDir nothing changes (the old behaviour).
  t.deepEqual(overlayMountData({ lowerdirs: ['/a', '/b'], upperdir: '/u', workdir: '/w' }, { userns: true }), { data: 'lowerdir=/a:/b,upperdir=/u,workdir=/w,userxattr' });
});

test('sandbox overlay root: allowed options are appended once and userxattr is not doubled when in a user namespace', (t) => {
  const root: OverlayRoot = { lowerdirs: ['/a'], upperdir: '/u', workdir: '/w', options: ['userxattr', 'index=off', 'index=off'] };
  t.is(overlayMountData(root, { userns: true }).data, 'lowerdir=/a,upperdir=/u,workdir=/w,userxattr,index=off');
  t.is(overlayMountData({ ...root, options: ['redirect_dir=off', 'metacopy=off', 'index=off'] }, { userns: false }).data, 'lowerdir=/a,upperdir=/u,workdir=/w,redirect_dir=off,metacopy=off,index=off');
});

test('sandbox overlay root: injected options, separators in paths and relative paths without baseDir are rejected when encoding', (t) => {
  const ok: OverlayRoot = { lowerdirs: ['l/a'], upperdir: '/u', workdir: '/w', baseDir: BASE };
  for (const o of ['index=off,upperdir=/etc', 'lowerdir=/etc', 'upperdir=/tmp', 'xino=on', 'userxattr ', '', 'redirect_dir=on']) badSpec(t, { ...ok, options: [o] });
  badSpec(t, { ...ok, lowerdirs: ['l/a,upperdir=/etc'] });
  badSpec(t, { ...ok, lowerdirs: ['l/a:/etc'] });
  badSpec(t, { ...ok, lowerdirs: ['l\\,a'] });
  badSpec(t, { ...ok, lowerdirs: [''] });
  badSpec(t, { ...ok, upperdir: 'up,per' });
  badSpec(t, { ...ok, baseDir: 'relative/base' });
  badSpec(t, { ...ok, baseDir: '/base\nx' });
  badSpec(t, { lowerdirs: ['l/a'], upperdir: '/u', workdir: '/w' });
  badSpec(t, { lowerdirs: ['/a'], upperdir: 'u', workdir: '/w' });
  badSpec(t, { ...ok, lowerdirs: [] });
  const spec = createRunSpec({ args: ['true'], root: { overlay: { ...ok, options: ['metacopy=off,lowerdir=/'] } } });
  t.true(isTsbuildError(t.throws(() => encodeLauncherSpec(spec, { rootfs: '/mnt' })), 'SANDBOX_BAD_SPEC'));
});

test('sandbox overlay root: the launcher gets the base dir as its own token when the lowerdirs are relative', (t) => {
  const spec = createRunSpec({ args: ['true'], root: { overlay: { lowerdirs: relLowers, upperdir: `${BASE}/active/k/upper`, workdir: `${BASE}/active/k/work`, baseDir: BASE } } });
  const tokens = encodeLauncherSpec(spec, { rootfs: '/mnt', extraLowerdirs: ['/run/init'] }).toString('utf8').split('\0');
  const data = tokens[tokens.indexOf('overlay') + 1] ?? '';
  t.true(data.startsWith('lowerdir=/run/init:l/000000000000:l/000000000001:'));
  t.true(data.length <= OVERLAY_DATA_LIMIT);
  t.is(tokens[tokens.indexOf('overlaydir') + 1], BASE);
  // A directory root or absolute lowers without baseDir keep the old token stream.
  t.false(encodeLauncherSpec(createRunSpec({ args: ['true'], root: { path: '/r' } }), { rootfs: '/r' }).toString('utf8').split('\0').includes('overlaydir'));
});

test('sandbox overlay root: data over one page is SANDBOX_OVERLAY_TOO_LONG naming the fix when the chain is long', (t) => {
  const absolute: OverlayRoot = { lowerdirs: relLowers.map((l) => `${BASE}/${l}`), upperdir: '/u', workdir: '/w' };
  const e = t.throws(() => overlayMountData(absolute, { userns: false }));
  t.true(isTsbuildError(e, 'SANDBOX_OVERLAY_TOO_LONG'));
  t.regex(e?.message ?? '', /119 lowerdirs take \d+ bytes, more than mount\(2\)'s one page/);
  // The same absolute lowers with the base dir shrink to the relative form.
  t.true(overlayMountData({ ...absolute, baseDir: BASE }, { userns: false }).data.length <= OVERLAY_DATA_LIMIT);
  const huge: OverlayRoot = { lowerdirs: Array.from({ length: 300 }, (_, i) => `l/${i.toString(16).padStart(12, '0')}`), upperdir: '/u', workdir: '/w', baseDir: BASE };
  const h = t.throws(() => overlayMountData(huge, { userns: false }));
  t.true(isTsbuildError(h, 'SANDBOX_OVERLAY_TOO_LONG'));
  t.regex((h as { hint?: string } | undefined)?.hint ?? '', /squash/);
});

/** A 120-layer chain in a temp store (busybox at the bottom, /lowest in it; /layers/f<i> and /top in layer i), one per xattr mode, shared by the tests of this file. */
const chains = new Map<boolean, Promise<{ store: string; s: OverlaySnapshotter; chain: Digest }>>();
const stores: string[] = [];
test.after.always(async () => {
  for (const d of stores) await rm(d, { recursive: true, force: true });
});

async function buildChain(userxattr: boolean): Promise<{ store: string; s: OverlaySnapshotter; chain: Digest }> {
  const store = mkdtempSync(join(tmpdir(), 'tsbuild-ovlchain-store-'));
  stores.push(store);
  chmodSync(store, 0o755);
  const dirs = { snapshots: join(store, 'snapshots'), tmp: join(store, 'tmp') };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  const s = new OverlaySnapshotter(dirs, { userxattr });
  const rootfs = await makeBusyboxRootfs(join(store, 'src', 'rootfs'));
  writeFileSync(join(rootfs, 'lowest'), 'lowest\n');
  const base = await packDir(rootfs, 'tree');
  let chain = (await s.unpack(undefined, base.diffId, () => Readable.from([base.tar]))).name as Digest;
  for (let i = 1; i < LAYERS; i++) {
    const dir = join(store, 'src', `l${i}`);
    mkdirSync(join(dir, 'layers'), { recursive: true });
    writeFileSync(join(dir, 'layers', `f${i}`), `${i}\n`);
    writeFileSync(join(dir, 'top'), `${i}\n`);
    const layer = await packDir(dir, 'tree');
    chain = (await s.unpack(chain, layer.diffId, () => Readable.from([layer.tar]))).name as Digest;
  }
  return { store, s, chain };
}

/** A fresh work dir (checked for leftover mounts) and a child of the shared chain prepared under `key`. */
async function makeChain(t: ExecutionContext, userxattr: boolean, key: string): Promise<{ work: string; store: string; mount: OverlayMount }> {
  const work = await tempDir(t, 'tsbuild-ovlchain-');
  chmodSync(work, 0o755);
  let built = chains.get(userxattr);
  if (built === undefined) {
    built = buildChain(userxattr);
    chains.set(userxattr, built);
  }
  const { store, s, chain } = await built;
  assertNoLeftoverMounts(t, [work, store]);
  const m = (await s.prepare(key, chain)).mounts();
  if (m.type !== 'overlay') throw new Error('expected an overlay mount');
  t.is(m.lowerdirs.length, LAYERS);
  return { work, store, mount: m };
}

const SCRIPT = 'cat /lowest /layers/f1 /layers/f119 /top; ls /layers | wc -l; echo made > /made';
const EXPECTED = ['lowest', '1', '119', '119', String(LAYERS - 1)];

/** The snapshotter's mount as a sandbox root: short relative lowers from its base dir, with its probed options. */
function rootOf(m: OverlayMount): OverlayRoot {
  return { lowerdirs: m.relativeLowerdirs, upperdir: m.upperdir, workdir: m.workdir, baseDir: m.baseDir, options: m.options };
}

testIf(rootReason, 'sandbox overlay root: a 120-layer snapshot chain runs from relative lowerdirs and writes land in the upperdir when run as root', async (t) => {
  const { work, mount: m } = await makeChain(t, false, 'launcher');
  const sandbox = rootSandbox(join(work, 'state'));
  // The absolute form does not fit: a clear error before anything is started.
  const tooLong = await t.throwsAsync(sandbox.run(createRunSpec({ args: ['true'], root: { overlay: { lowerdirs: m.lowerdirs, upperdir: m.upperdir, workdir: m.workdir } } })));
  t.true(isTsbuildError(tooLong, 'SANDBOX_OVERLAY_TOO_LONG'), String(tooLong));
  const r = await runCaptured(sandbox, createRunSpec({ args: ['sh', '-c', SCRIPT], root: { overlay: rootOf(m) } }));
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n').map((l) => l.trim()), EXPECTED);
  t.deepEqual(readdirSync(m.upperdir), ['made']);
  t.is(readFileSync(join(m.upperdir, 'made'), 'utf8'), 'made\n');
});

testIf(rootReason, 'sandbox overlay root: a volatile mount (no sync at unmount) runs and marks its work dir when the upper is used once', async (t) => {
  const { work, mount: m } = await makeChain(t, false, 'volatile');
  const sandbox = rootSandbox(join(work, 'state'));
  const r = await runCaptured(sandbox, createRunSpec({ args: ['sh', '-c', `grep -c volatile /proc/self/mountinfo; ${SCRIPT}`], root: { overlay: { ...rootOf(m), options: [...m.options, 'volatile'] } } }));
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n').map((l) => l.trim()), ['1', ...EXPECTED]);
  t.deepEqual(readdirSync(m.upperdir), ['made']);
  t.true(existsSync(join(m.workdir, 'work', 'incompat', 'volatile')), 'the kernel marked the upper as volatile');
});

function runcMissing(): string | undefined {
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'runc is not installed (apt-get install runc)';
  }
}

testIf(rootReason ?? runcMissing(), 'sandbox overlay root: runc runs a 120-layer snapshot chain mounted from relative lowerdirs when given as the runtime', async (t) => {
  const { work, mount: m } = await makeChain(t, false, 'runc');
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
  err.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  const spec = createRunSpec({ args: ['sh', '-c', SCRIPT], root: { overlay: rootOf(m) } });
  const r = await runWithOciRuntime('runc', spec, { stdout: out, stderr: err }, undefined, { stateDir: join(work, 'state'), ownerPid: process.pid, rootless: false });
  t.is(r.exitCode, 0, stderr);
  t.deepEqual(stdout.trim().split('\n').map((l) => l.trim()), EXPECTED);
  t.true(readdirSync(m.upperdir).includes('made'));
  t.is(readFileSync(join(m.upperdir, 'made'), 'utf8'), 'made\n');
});

function lookupUser(): { uid: number; gid: number } | undefined {
  try {
    return { uid: Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', USER], { encoding: 'utf8' })) };
  } catch {
    return undefined;
  }
}
const ids = lookupUser();
const rootlessReason = rootReason
  ?? (ids === undefined ? `user ${USER} missing (scripts/setup.sh creates it)` : !existsSync('/usr/bin/newuidmap') ? 'newuidmap missing (apt-get install uidmap)' : undefined);

testIf(rootlessReason, 'sandbox overlay root: a 120-layer snapshot chain runs with userxattr from relative lowerdirs when run as an unprivileged user', async (t) => {
  const { work, store, mount: m } = await makeChain(t, true, 'rootless');
  t.true(m.options.includes('userxattr'));
  const home = join(work, 'home');
  for (const d of [home, join(home, 'tmp')]) mkdirSync(d, { recursive: true });
  // A rootless user's store and root filesystems belong to it (container root = the user).
  execFileSync('chown', ['-R', '-h', `${ids?.uid}:${ids?.gid}`, store, home]);
  const r = spawnSync('runuser', ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, `TMPDIR=${home}/tmp`,
    process.execPath, '--import', 'tsx', join(REPO, 'test/sandbox/fixtures/overlay-chain-rootless.ts'), ensureLauncher(), join(home, 'state'), USER, JSON.stringify(rootOf(m)), SCRIPT],
  { cwd: REPO, encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => l.trim());
  t.deepEqual(lines.slice(0, EXPECTED.length), EXPECTED, r.stderr);
  t.like(JSON.parse(lines.at(-1) ?? '{}'), { exitCode: 0 });
  t.deepEqual(readdirSync(m.upperdir), ['made']);
  t.is(readFileSync(join(m.upperdir, 'made'), 'utf8'), 'made\n');
});
