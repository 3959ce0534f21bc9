import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MediaType, type Digest, type ImageConfig, type ImageManifest } from '../../src/core/index.js';
import { addLayer, createManifest, editContainerConfig, serializeDocument } from '../../src/image/index.js';
import { openStore } from '../../src/store/index.js';
import { busyboxMissing, makeBusyboxImage, tarDirectory } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { watchContainerStore } from '../helpers/containers.js';
import { cliAsUser, rootlessMissing, ROOTLESS_USER as USER, type UserCliResult } from '../helpers/rootless.js';
import { tempDir } from '../helpers/tmp.js';
import { registryMissing, startRegistry } from '../helpers/registry.js';

const noBusybox = await busyboxMissing();
const noRegistry = noBusybox ?? (await registryMissing());

type Run = (...a: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/**
 * A store with busybox plus `seeded:1` (busybox + /data/seed.txt, /data/sub/deep.txt and
 * VOLUME /vol over /vol/from-image.txt, a HEALTHCHECK testing that file every 100 ms); every container and volume is removed when the test ends.
 */
async function setup(t: ExecutionContext): Promise<{ root: string; dir: string; r: Run; finish: () => Promise<void> }> {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  await mkdir(join(dir, 'l2', 'data', 'sub'), { recursive: true });
  await mkdir(join(dir, 'l2', 'vol'), { recursive: true });
  await writeFile(join(dir, 'l2', 'data', 'seed.txt'), 'seeded from the image\n');
  await writeFile(join(dir, 'l2', 'data', 'sub', 'deep.txt'), 'deep\n');
  await writeFile(join(dir, 'l2', 'vol', 'from-image.txt'), 'vol content\n');
  await chmod(join(dir, 'l2', 'data'), 0o750);
  await tarDirectory(join(dir, 'l2'), join(dir, 'l2.tar'));
  const store = await openStore(root);
  const base = (await store.refs.get('docker.io/library/busybox:latest')) as { digest: Digest };
  const baseManifest = (await store.blobs.readJson(base.digest)).value as ImageManifest;
  const baseConfig = (await store.blobs.readJson(baseManifest.config.digest)).value as ImageConfig;
  const layer = await store.blobs.put(createReadStream(join(dir, 'l2.tar')));
  let config = addLayer(baseConfig, layer.digest, { created_by: 'COPY data vol /' });
  config = editContainerConfig(config, (c) => ({ ...c, Volumes: { '/vol': {} }, Healthcheck: { Test: ['CMD', 'test', '-e', '/vol/from-image.txt'], Interval: 100_000_000, Retries: 1 } }));
  const c = await store.blobs.putBytes(serializeDocument(config));
  const manifest = createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size },
    [...baseManifest.layers, { mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }]);
  const m = await store.blobs.putBytes(serializeDocument(manifest));
  await store.refs.set('docker.io/library/seeded:1', { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size });

  const { r, finish } = watchContainerStore(t, root, { cli: { cwd: dir, env: { HOST_ONLY: 'from-host' } }, volumes: true });
  return { root, dir, r, finish };
}

async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function inspectOf(r: Run, name: string): Promise<{ State: { Status: string; ExitCode: number; Restarting: boolean }; RestartCount: number; HostConfig: { RestartPolicy: { Name: string; MaximumRetryCount: number } }; Mounts: { Type: string; Name?: string; Destination: string; RW: boolean }[] }> {
  const res = await r('container', 'inspect', name);
  return (JSON.parse(res.stdout) as [never])[0];
}

testIf(noBusybox, 'run --env-file: KEY=VALUE lines, host variables, comments, and -e winning when given files', async (t) => {
  const { dir, r, finish } = await setup(t);
  await writeFile(join(dir, 'a.env'), '# a comment\nFOO=bar baz\n\n  SPACED=x=y\nHOST_ONLY\nUNSET_ONE\nOVER=file\n');
  await writeFile(join(dir, 'b.env'), 'SECOND=2\n');
  const res = await r('run', '--rm', '--env-file', 'a.env', '--env-file', join(dir, 'b.env'), '-e', 'OVER=flag', 'busybox',
    'sh', '-c', 'echo "$FOO|$SPACED|$HOST_ONLY|${UNSET_ONE-unset}|$OVER|$SECOND"');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'bar baz|x=y|from-host|unset|flag|2\n');
  await finish();
});

testIf(noBusybox, 'run --env-file: errors name the file and line when the file is bad or missing', async (t) => {
  const { dir, r, finish } = await setup(t);
  await writeFile(join(dir, 'bad.env'), 'OK=1\n# fine\nBAD KEY=2\n');
  let res = await r('run', '--rm', '--env-file', 'bad.env', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /bad\.env:3: invalid variable "BAD KEY"/);
  res = await r('run', '--rm', '--env-file', 'missing.env', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /cannot read env file missing\.env: no such file/);
  t.is((await r('ps', '-aq')).stdout, '', 'no container was created');
  await finish();
});

testIf(noBusybox, 'run -v NAME:/path: a named volume is created, seeded from the image, survives rm and is reused', async (t) => {
  const { root, r, finish } = await setup(t);
  let res = await r('run', '--name', 'first', '-v', 'myvol:/data', 'seeded:1', 'sh', '-c', 'cat /data/seed.txt /data/sub/deep.txt; stat -c %a /data; echo written > /data/new.txt');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'seeded from the image\ndeep\n750\n');
  t.is(readFileSync(join(root, 'volumes', 'myvol', '_data', 'new.txt'), 'utf8'), 'written\n');
  t.false(existsSync(join(root, 'snapshots', 'overlay', 'active', 'x')), 'sanity');
  const info = await inspectOf(r, 'first');
  t.deepEqual(info.Mounts.filter((m) => m.Type === 'volume').map((m) => [m.Name?.length === 64 ? 'anon' : m.Name, m.Destination, m.RW]).sort(), [['anon', '/vol', true], ['myvol', '/data', true]]);
  const binds = (JSON.parse((await r('container', 'inspect', 'first')).stdout) as [{ HostConfig: { Binds: string[] } }])[0].HostConfig.Binds;
  t.true(binds.includes('myvol:/data'), binds.join(' '));
  res = await r('volume', 'rm', 'myvol');
  t.is(res.code, 1);
  t.regex(res.stderr, /volume is in use/);
  t.is((await r('rm', 'first')).code, 0);
  res = await r('volume', 'ls');
  t.regex(res.stdout, /^DRIVER\s+VOLUME NAME\n/);
  t.regex(res.stdout, /local\s+myvol\n/);
  // Reused: the content written before is there, and is not seeded again; read only with :ro.
  res = await r('run', '--rm', '-v', 'myvol:/data:ro', 'busybox', 'sh', '-c', 'cat /data/new.txt; echo x > /data/other 2>/dev/null || echo read-only');
  t.is(res.stdout, 'written\nread-only\n', res.stderr);
  res = await r('volume', 'inspect', 'myvol');
  const [v] = JSON.parse(res.stdout) as [{ Name: string; Driver: string; Mountpoint: string; Scope: string; Labels: object }];
  t.like(v, { Name: 'myvol', Driver: 'local', Mountpoint: join(root, 'volumes', 'myvol', '_data'), Scope: 'local', Labels: {} });
  t.is((await r('volume', 'rm', 'myvol')).stdout, 'myvol\n');
  t.is((await r('volume', 'inspect', 'nope')).code, 1);
  await finish();
});

testIf(noBusybox, 'run: VOLUME paths get anonymous volumes, removed by rm -v and --rm but not by rm when named ones stay', async (t) => {
  const { root, r, finish } = await setup(t);
  let res = await r('run', '--name', 'anon', 'seeded:1', 'sh', '-c', 'cat /vol/from-image.txt; echo mine > /vol/x');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'vol content\n');
  const vols = (await r('volume', 'ls', '-q')).stdout.split('\n').filter((s) => s !== '');
  t.is(vols.length, 1);
  t.regex(vols[0] as string, /^[0-9a-f]{64}$/);
  t.is(readFileSync(join(root, 'volumes', vols[0] as string, '_data', 'x'), 'utf8'), 'mine\n');
  t.is((await r('volume', 'ls', '-q', '--filter', 'dangling=true')).stdout, '', 'in use');
  // -v on the image's VOLUME path with a named volume replaces the anonymous one.
  t.is((await r('run', '--name', 'named', '-v', 'keep:/vol', 'seeded:1', 'true')).code, 0);
  t.is((await r('rm', '-v', 'anon', 'named')).code, 0);
  t.deepEqual((await r('volume', 'ls', '-q')).stdout, 'keep\n', 'the anonymous volume went with rm -v, the named one stays');
  res = await r('run', '--rm', 'seeded:1', 'cat', '/vol/from-image.txt');
  t.is(res.stdout, 'vol content\n');
  t.is(res.code, 0, res.stderr);
  t.deepEqual((await r('volume', 'ls', '-q')).stdout, 'keep\n', `--rm removed its anonymous volume (stderr: ${res.stderr})`);
  // An anonymous volume left by rm without -v is pruned; named ones only with --all.
  t.is((await r('run', '--name', 'left', '-v', '/scratch', 'busybox', 'true')).code, 0);
  t.is((await r('rm', 'left')).code, 0);
  t.is((await r('volume', 'ls', '-q')).stdout.split('\n').filter((s) => s !== '').length, 2);
  res = await r('volume', 'prune', '-f');
  t.regex(res.stdout, /^Deleted Volumes:\n[0-9a-f]{64}\n\n/);
  t.is((await r('volume', 'ls', '-q')).stdout, 'keep\n');
  t.is((await r('volume', 'prune', '-f', '-a')).code, 0);
  t.is((await r('volume', 'ls', '-q')).stdout, '');
  await finish();
});

testIf(noBusybox, 'volume create: names, labels, filters and json output when managing volumes by hand', async (t) => {
  const { r, finish } = await setup(t);
  t.is((await r('volume', 'create', '--label', 'team=a', 'v1')).stdout, 'v1\n');
  t.is((await r('volume', 'create', 'v1')).stdout, 'v1\n', 'creating an existing volume is not an error');
  const anon = (await r('volume', 'create')).stdout.trim();
  t.regex(anon, /^[0-9a-f]{64}$/);
  let res = await r('volume', 'create', 'bad/name');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid characters/);
  t.is((await r('volume', 'ls', '-q', '--filter', 'label=team=a')).stdout, 'v1\n');
  t.is((await r('volume', 'ls', '-q', '--filter', 'name=v')).stdout, 'v1\n');
  res = await r('volume', 'ls', '--format', 'json');
  const rows = res.stdout.trim().split('\n').map((l) => JSON.parse(l) as { Name: string; Driver: string; Labels: string });
  t.deepEqual(rows.map((x) => x.Name).sort(), [anon, 'v1'].sort());
  t.is(rows.find((x) => x.Name === 'v1')?.Labels, 'team=a');
  res = await r('volume', 'rm', 'v1', 'nope');
  t.is(res.code, 1);
  t.is(res.stdout, 'v1\n');
  t.regex(res.stderr, /no such volume: nope/);
  t.is((await r('volume', 'rm', '-f', 'nope', anon)).code, 0);
  await finish();
});

testIf(noBusybox, 'run --mount and --tmpfs: bind, volume and tmpfs mounts with options when given docker syntax', async (t) => {
  const { dir, r, finish } = await setup(t);
  await mkdir(join(dir, 'host'));
  await writeFile(join(dir, 'host', 'h.txt'), 'from host\n');
  let res = await r('run', '--rm',
    '--mount', `type=bind,src=${join(dir, 'host')},dst=/h,readonly`,
    '--mount', 'type=volume,source=mv,target=/m',
    '--mount', 'type=tmpfs,destination=/t,tmpfs-size=1m',
    '--tmpfs', '/t2:size=2m,mode=700',
    'busybox', 'sh', '-c', 'cat /h/h.txt; touch /h/no 2>/dev/null || echo ro; echo v > /m/f; grep -E " /t2? " /proc/mounts | cut -d" " -f2-4; stat -c %a /t2');
  t.is(res.code, 0, res.stderr);
  const lines = res.stdout.split('\n');
  t.deepEqual(lines.slice(0, 2), ['from host', 'ro']);
  t.regex(res.stdout, /\/t tmpfs [^ ]*size=1024k/);
  t.regex(res.stdout, /\/t2 tmpfs [^ ]*size=2048k[^ ]*mode=700/);
  t.regex(res.stdout, /700\n$/);
  t.is((await r('volume', 'ls', '-q')).stdout, 'mv\n');
  res = await r('run', '--rm', '--mount', `type=bind,src=${join(dir, 'missing')},dst=/x`, 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /bind source path does not exist/);
  res = await r('run', '--rm', '--mount', 'type=bind,dst=/x,bogus=1', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid field "bogus"/);
  res = await r('run', '--rm', '--tmpfs', '/t:size=lots', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid tmpfs option "size=lots"/);
  t.is((await r('ps', '-aq')).stdout, '');
  await finish();
});

testIf(noBusybox, 'run --restart on-failure:N: the monitor restarts a failing container N times when it keeps crashing', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '-d', '--name', 'crash', '--restart', 'on-failure:2', 'busybox', 'sh', '-c', 'echo ran; exit 3');
  t.is(res.code, 0, res.stderr);
  await until('the retries to end', async () => {
    const i = await inspectOf(r, 'crash');
    return i.State.Status === 'exited' && i.RestartCount === 2;
  });
  // It stays exited: no third restart.
  await new Promise((res2) => setTimeout(res2, 800));
  const info = await inspectOf(r, 'crash');
  t.like(info, { State: { Status: 'exited', ExitCode: 3, Restarting: false }, RestartCount: 2, HostConfig: { RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 2 } } });
  t.is((await r('logs', 'crash')).stdout, 'ran\nran\nran\n');
  // A clean exit is not restarted by on-failure.
  t.is((await r('run', '--name', 'clean', '--restart', 'on-failure', 'busybox', 'true')).code, 0);
  t.is((await inspectOf(r, 'clean')).RestartCount, 0);
  res = await r('run', '--restart', 'sometimes', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid restart policy "sometimes"/);
  res = await r('run', '--rm', '--restart', 'always', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /--restart and --rm/);
  await finish();
});

testIf(noBusybox, 'run --restart always: a crashed container comes back (Restarting, then Up) until stop ends it for good', async (t) => {
  const { r, finish } = await setup(t);
  t.is((await r('run', '-d', '--name', 'loop', '--restart', 'always', 'busybox', 'sh', '-c', 'echo up; sleep 1.5; exit 1')).code, 0);
  const seen = new Set<string>();
  await until('two restarts', async () => {
    const row = (await r('ps', '-a', '--format', 'json')).stdout.trim();
    if (row !== '') seen.add(((JSON.parse(row) as { Status: string }).Status.split(' ')[0]) as string);
    return (await inspectOf(r, 'loop')).RestartCount >= 2;
  });
  t.true(seen.has('Up'), [...seen].join(','));
  t.is((await r('stop', '-t', '1', 'loop')).code, 0);
  await until('the loop to settle', async () => (await inspectOf(r, 'loop')).State.Status === 'exited');
  const count = (await inspectOf(r, 'loop')).RestartCount;
  await new Promise((res) => setTimeout(res, 1000));
  const after = await inspectOf(r, 'loop');
  t.is(after.State.Status, 'exited', 'stop ended the restart policy');
  t.is(after.RestartCount, count);
  await finish();
});

testIf(noBusybox, 'run --pull: never fails for a missing image, bad values are refused, missing keeps a local image when given', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '--rm', '--pull', 'never', 'not-here:1', 'true');
  t.is(res.code, 1);
  t.regex(res.stderr, /not-here/);
  res = await r('run', '--rm', '--pull', 'sometimes', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid pull option/);
  res = await r('run', '--rm', '--pull', 'missing', 'busybox', 'echo', 'local');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'local\n');
  t.is(res.stderr, '', 'no pull for an image in the store');
  await finish();
});

interface HealthInfo { State: { Health?: { Status: string; FailingStreak: number; Log: { ExitCode: number; Output: string }[] } }; Config: { Healthcheck?: { Test: string[]; Interval: number; Retries: number } } }

async function healthOf(r: Run, name: string): Promise<HealthInfo> {
  return (JSON.parse((await r('container', 'inspect', name)).stdout) as [HealthInfo])[0];
}

async function psStatus(r: Run, name: string): Promise<string> {
  const rows = (await r('ps', '--format', 'json')).stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { Names: string; Status: string });
  return rows.find((x) => x.Names === name)?.Status ?? '';
}

testIf(noBusybox, 'run --health-cmd: starting, healthy, then unhealthy after the retries fail, shown by ps and inspect when the check changes', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '-d', '--name', 'h', '--health-cmd', 'cat /tmp/ok', '--health-interval', '200ms', '--health-retries', '2',
    '--health-start-period', '1m', '--health-start-interval', '100ms', 'busybox', 'sleep', '1000');
  t.is(res.code, 0, res.stderr);
  // Failures in the start period do not count: it stays starting.
  await until('a failed probe', async () => ((await healthOf(r, 'h')).State.Health?.Log.length ?? 0) >= 2);
  let info = await healthOf(r, 'h');
  t.is(info.State.Health?.Status, 'starting');
  t.regex(await psStatus(r, 'h'), /^Up .* \(health: starting\)$/);
  t.is(info.State.Health?.Log[0]?.ExitCode, 1);
  t.regex(info.State.Health?.Log[0]?.Output ?? '', /No such file/);
  t.deepEqual(info.Config.Healthcheck?.Test, ['CMD-SHELL', 'cat /tmp/ok']);
  t.is(info.Config.Healthcheck?.Interval, 200_000_000);
  t.is((await r('exec', 'h', 'sh', '-c', 'echo fine > /tmp/ok')).code, 0);
  await until('healthy', async () => (await healthOf(r, 'h')).State.Health?.Status === 'healthy');
  t.regex(await psStatus(r, 'h'), /^Up .* \(healthy\)$/);
  info = await healthOf(r, 'h');
  t.like(info.State.Health?.Log.at(-1), { ExitCode: 0, Output: 'fine\n' });
  t.true((info.State.Health?.Log.length ?? 0) <= 5, 'only the last five probes are kept');
  t.is((await r('exec', 'h', 'rm', '/tmp/ok')).code, 0);
  await until('unhealthy', async () => (await healthOf(r, 'h')).State.Health?.Status === 'unhealthy');
  info = await healthOf(r, 'h');
  t.true((info.State.Health?.FailingStreak ?? 0) >= 2);
  t.regex(await psStatus(r, 'h'), /^Up .* \(unhealthy\)$/);
  res = await r('run', '--health-interval', 'soon', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid argument "soon" for "--health-interval"/);
  await finish();
});

testIf(noBusybox, 'run: the image HEALTHCHECK runs by default and --no-healthcheck disables it when given', async (t) => {
  const { r, finish } = await setup(t);
  t.is((await r('run', '-d', '--name', 'img', 'seeded:1', 'sleep', '1000')).code, 0);
  t.is((await r('run', '-d', '--name', 'off', '--no-healthcheck', 'seeded:1', 'sleep', '1000')).code, 0);
  await until('healthy', async () => (await healthOf(r, 'img')).State.Health?.Status === 'healthy');
  const img = await healthOf(r, 'img');
  t.deepEqual(img.Config.Healthcheck?.Test, ['CMD', 'test', '-e', '/vol/from-image.txt']);
  const off = await healthOf(r, 'off');
  t.is(off.State.Health, undefined);
  t.is(off.Config.Healthcheck, undefined);
  t.regex(await psStatus(r, 'off'), /^Up [^(]*$/);
  await finish();
});

testIf(noBusybox, 'run --init: an init is PID 1 that forwards signals, reaps orphans and passes the exit code when the command runs under it', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '--rm', '--init', 'busybox', 'sh', '-c', 'echo $$; tr "\\0" " " < /proc/1/cmdline; echo; exit 4');
  t.is(res.code, 4, res.stderr);
  t.is(res.stdout, '2\n/sbin/tsbuild-init -- sh -c echo $$; tr "\\0" " " < /proc/1/cmdline; echo; exit 4 \n');
  // An orphan (its parent exited at once) is re-parented to the init and reaped: no zombie is left.
  res = await r('run', '--rm', '--init', 'busybox', 'sh', '-c', 'sh -c "sleep 0.2 & exit 0"; sleep 1; grep -l "^State:.Z" /proc/[0-9]*/status | wc -l');
  t.is(res.stdout.trim(), '0', res.stderr);
  // stop's signal reaches the command through the init.
  t.is((await r('run', '-d', '--init', '--name', 'i', 'busybox', 'sh', '-c', 'trap "echo got TERM; exit 7" TERM; echo ready; while true; do sleep 0.1; done')).code, 0);
  await until('the trap to be set', async () => (await r('logs', 'i')).stdout.includes('ready'));
  t.is((await r('stop', '-t', '20', 'i')).code, 0);
  t.is((await r('logs', 'i')).stdout, 'ready\ngot TERM\n');
  t.is((await inspectOf(r, 'i')).State.ExitCode, 7);
  const doc = (JSON.parse((await r('container', 'inspect', 'i')).stdout) as [{ HostConfig: { Init: boolean | null }; Mounts: unknown[]; Path: string }])[0];
  t.is(doc.HostConfig.Init, true);
  t.deepEqual(doc.Mounts, [], 'the init binary is not listed among the mounts');
  t.is(doc.Path, 'sh');
  await finish();
});

testIf(noRegistry, 'run --pull: missing pulls an image the store lacks, always checks the registry again, never keeps to the store', async (t) => {
  const { r, finish } = await setup(t);
  const reg = await startRegistry(t);
  const remote = `${reg.host}/tools/busybox:1`;
  let res = await r('push', 'busybox', remote);
  t.is(res.code, 0, res.stderr);
  t.is((await r('rmi', 'busybox')).code, 0);
  res = await r('run', '--rm', '--pull', 'never', remote, 'true');
  t.is(res.code, 1, 'never: not in the store');
  res = await r('run', '--rm', '--pull', 'missing', remote, 'echo', 'pulled');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'pulled\n');
  t.regex(res.stderr, new RegExp(`^Unable to find image '${remote}' locally\n1: Pulling from ${reg.host}/tools/busybox\n`));
  t.regex(res.stderr, /Status: Downloaded newer image for /);
  res = await r('run', '--rm', '--pull', 'always', remote, 'true');
  t.is(res.code, 0, res.stderr);
  t.regex(res.stderr, /Status: Image is up to date for /);
  t.notRegex(res.stderr, /Unable to find/);
  await finish();
});

const noRootless = noBusybox ?? rootlessMissing();

testIf(noRootless, 'run rootless: named and image volumes are writable by the container\'s root and seeded when an unprivileged user runs them', async (t) => {
  const { dir, root, finish } = await setup(t);
  await chmod(dir, 0o755);
  for (const d of ['home', 'home/tmp', 'home/run']) await mkdir(join(dir, d), { recursive: true });
  execFileSync('chown', ['-R', `${USER}:${USER}`, join(dir, 'home'), root]);
  const asUser = (...args: string[]): Promise<UserCliResult> => cliAsUser(join(dir, 'home'), root, args);
  let res = await asUser('run', '--name', 'rl', '-v', 'rlvol:/data', 'seeded:1', 'sh', '-c', 'cat /data/seed.txt /vol/from-image.txt; echo mine > /data/new; echo v > /vol/x; id -u; stat -c "%u %a" /data');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'seeded from the image\nvol content\n0\n0 750\n');
  const uid = Number(execFileSync('id', ['-u', USER]).toString().trim());
  t.is((await import('node:fs')).statSync(join(root, 'volumes', 'rlvol', '_data', 'new')).uid, uid, 'the container\'s root is the user on the host');
  res = await asUser('rm', '-v', 'rl');
  t.is(res.code, 0, res.stderr);
  res = await asUser('volume', 'ls', '-q');
  t.is(res.stdout, 'rlvol\n');
  t.is((await asUser('volume', 'rm', 'rlvol')).code, 0);
  await finish();
});
