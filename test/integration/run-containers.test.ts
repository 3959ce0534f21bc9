import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { MediaType, type Digest, type ImageConfig, type ImageManifest } from '../../src/core/index.js';
import { addLayer, createManifest, editContainerConfig, serializeDocument } from '../../src/image/index.js';
import { openStore } from '../../src/store/index.js';
import { cli } from '../cli/run-cli.js';
import { busyboxMissing, makeBusyboxImage, tarDirectory } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { watchContainerStore } from '../helpers/containers.js';
import { tempDir } from '../helpers/tmp.js';

const noBusybox = await busyboxMissing();
const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface PsRow { ID: string; Names: string; State: string; Status: string; Command: string; Image: string }

/** A store with the busybox image, whose containers are force-removed (and checked for leftovers) when the test ends. */
async function setup(t: ExecutionContext): Promise<{ root: string; r: (...a: string[]) => Promise<{ code: number; stdout: string; stderr: string }>; finish: () => Promise<void> }> {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const { r, finish } = watchContainerStore(t, root, { monitors: true });
  return { root, r, finish };
}

async function psJson(r: (...a: string[]) => Promise<{ stdout: string }>): Promise<PsRow[]> {
  return (await r('ps', '-a', '--format', 'json')).stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as PsRow);
}

async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

testIf(noBusybox, 'run: foreground output, exit code and image config when running the busybox image', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 3');
  t.is(res.code, 3);
  t.is(res.stdout, 'out\n');
  t.is(res.stderr, 'err\n');
  // The image's CMD (sh) reads the empty stdin and ends with 0.
  t.is((await r('run', 'busybox')).code, 0);
  res = await r('run', '-e', 'FOO=bar', '-w', '/tmp', '-u', 'nobody', '--name', 'probe', 'busybox', 'sh', '-c', 'echo $FOO $(pwd) $(id -u) $HOME $PATH');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'bar /tmp 65534 /nonexistent /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
  t.is((await r('run', '--entrypoint', 'echo', 'busybox', 'via', 'entrypoint')).stdout, 'via entrypoint\n');
  res = await r('run', 'busybox', 'no-such-command');
  t.is(res.code, 127);
  t.regex(res.stderr, /command not found/);
  t.is((await r('run', 'no-such-image')).code, 1);

  const rows = await psJson(r);
  t.is(rows.length, 5, 'the unknown image created no container');
  t.true(rows.every((row) => row.State === 'exited' && /^[0-9a-f]{12}$/.test(row.ID) && row.Image === 'busybox'));
  t.regex(rows.find((row) => row.Names === 'probe')?.Status ?? '', /^Exited \(0\) /);
  t.true(rows.some((row) => row.Status.startsWith('Exited (3) ') && row.Command === '"sh -c echo out; ech…"'));
  t.true(rows.some((row) => row.Status.startsWith('Exited (127) ')));
  // The foreground output was logged too, both streams.
  const id = rows.find((row) => row.Status.startsWith('Exited (3) '))?.ID as string;
  res = await r('logs', id);
  t.is(res.stdout, 'out\n');
  t.is(res.stderr, 'err\n');
  // Names are unique.
  res = await r('run', '--name', 'probe', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /already in use/);
  // rm removes them all, with their writable layers.
  t.is((await r('rm', ...rows.map((row) => row.ID))).code, 0);
  t.deepEqual(await psJson(r), []);
  await finish();
});

testIf(noBusybox, 'run --rm: nothing of the container is left when it exits', async (t) => {
  const { root, r, finish } = await setup(t);
  const res = await r('run', '--rm', 'busybox', 'sh', '-c', 'echo data > /written; cat /written');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'data\n');
  t.deepEqual(await psJson(r), []);
  t.deepEqual((await readdir(join(root, 'containers'))).filter((n) => n !== 'names'), []);
  t.deepEqual(await readdir(join(root, 'containers', 'names')), []);
  t.deepEqual(await readdir(join(root, 'snapshots', 'overlay', 'active')).catch(() => []), [], 'the writable layer is removed');
  // -i pipes stdin; the host name is the short container ID, as docker.
  const piped = await cli(['--root', root, 'run', '-i', '--rm', 'busybox', 'sh', '-c', 'cat; hostname; echo $HOSTNAME'], { stdin: 'piped\n' });
  t.is(piped.code, 0, piped.stderr);
  t.regex(piped.stdout, /^piped\n([0-9a-f]{12})\n\1\n$/);
  // A detached --rm container is removed by its monitor.
  t.is((await r('run', '-d', '--rm', 'busybox', 'true')).code, 0);
  await until('the detached --rm container to be removed', async () => (await psJson(r)).length === 0);
  await finish();
});

testIf(noBusybox, 'run -d: ps, logs, stop, start, kill and rm manage a detached container', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '-d', '--name', 'ticker', 'busybox', 'sh', '-c', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done');
  t.is(res.code, 0, res.stderr);
  const id = res.stdout.trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  res = await r('ps');
  t.regex(res.stdout.split('\n')[0] as string, /^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/);
  t.regex(res.stdout.split('\n')[1] as string, new RegExp(`^${id.slice(0, 12)}\\s+busybox\\s+"sh -c i=0; while tr…"\\s+.+\\s+Up .+\\s+ticker$`));
  t.is((await r('ps', '-q')).stdout, `${id.slice(0, 12)}\n`);
  await until('two log lines', async () => (await r('logs', 'ticker')).stdout.split('\n').length > 2);
  res = await r('logs', '--tail', '1', '-t', id.slice(0, 5));
  t.regex(res.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z tick \d+\n$/);
  // rm refuses a running container.
  res = await r('rm', 'ticker');
  t.is(res.code, 1);
  t.regex(res.stderr, /container is running/);
  // sh as PID 1 ignores SIGTERM: stop kills it after the timeout.
  res = await r('stop', '-t', '1', 'ticker');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'ticker\n');
  t.regex((await psJson(r))[0]?.Status ?? '', /^Exited \(137\) /);
  const inspect = JSON.parse((await r('container', 'inspect', 'ticker')).stdout) as [{ Id: string; Name: string; State: { Status: string; ExitCode: number; Running: boolean }; Config: { Cmd: string[] } }];
  t.like(inspect[0], { Id: id, Name: '/ticker', State: { Status: 'exited', ExitCode: 137, Running: false } });
  // docker's plain inspect resolves containers too.
  t.is((await r('inspect', '-f', '{{.State.Status}} {{.Name}}', 'ticker')).stdout, 'exited /ticker\n');
  // start runs it again (same container, same log), kill -s TERM is ignored by PID 1 sh, kill ends it.
  t.is((await r('start', 'ticker')).code, 0);
  t.is((await psJson(r))[0]?.State, 'running');
  t.is((await r('kill', '-s', 'KILL', 'ticker')).code, 0);
  await until('the killed container to exit', async () => (await psJson(r))[0]?.State === 'exited');
  res = await r('kill', 'ticker');
  t.is(res.code, 1);
  t.regex(res.stderr, /is not running/);
  // A container that handles SIGTERM stops at once with its own exit code.
  res = await r('run', '-d', '--name', 'polite', 'busybox', 'sh', '-c', 'trap "exit 7" TERM; while true; do sleep 0.1; done');
  t.is(res.code, 0, res.stderr);
  t.is((await r('stop', 'polite')).code, 0);
  t.regex((await psJson(r)).find((row) => row.Names === 'polite')?.Status ?? '', /^Exited \(7\) /);
  // --stop-signal replaces SIGTERM.
  res = await r('run', '-d', '--name', 'usr1', '--stop-signal', 'USR1', 'busybox', 'sh', '-c', 'trap "exit 5" USR1; while true; do sleep 0.1; done');
  t.is(res.code, 0, res.stderr);
  t.is((await r('stop', 'usr1')).code, 0);
  t.regex((await psJson(r)).find((row) => row.Names === 'usr1')?.Status ?? '', /^Exited \(5\) /);
  t.is((await r('rm', 'ticker', 'polite', 'usr1')).code, 0);
  t.deepEqual(await psJson(r), []);
  t.is((await r('logs', 'ticker')).code, 1);
  await finish();
});

testIf(noBusybox, 'logs -f: follows a detached container until it exits; start keeps the writable layer and bind mounts work', async (t) => {
  const { r, finish } = await setup(t);
  const host = await tempDir(t);
  let res = await r('run', '-d', '--name', 'writer', '-v', `${host}:/host`, 'busybox', 'sh', '-c', 'echo run >> /layer.txt; sleep 0.3; cat /layer.txt; echo seen > /host/out; echo done >&2');
  t.is(res.code, 0, res.stderr);
  res = await r('logs', '-f', 'writer');
  t.is(res.stdout, 'run\n');
  t.is(res.stderr, 'done\n');
  t.is(await readFile(join(host, 'out'), 'utf8'), 'seen\n');
  t.regex((await psJson(r))[0]?.Status ?? '', /^Exited \(0\) /);
  // The second run sees the first run's file: the writable layer belongs to the container.
  t.is((await r('start', 'writer')).code, 0);
  await until('the second run to end', async () => (await psJson(r))[0]?.State === 'exited');
  res = await r('logs', '--tail', '3', 'writer');
  t.is(res.stdout, 'run\nrun\n');
  t.is(res.stderr, 'done\n');
  t.is((await r('rm', 'writer')).code, 0);
  await finish();
});

testIf(noBusybox, 'run -d: the container keeps running when the CLI is SIGKILLed, and a killed monitor shows as exited', async (t) => {
  const { root, r, finish } = await setup(t);
  // The real CLI in its own process group, killed as a group as soon as it printed the ID.
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--root', root, 'run', '-d', '--name', 'survivor', 'busybox', 'sh', '-c', 'while true; do echo alive; sleep 0.1; done'], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  const id = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) {
        try { process.kill(-(child.pid as number), 'SIGKILL'); } catch { /* already gone */ }
        resolve(out.trim());
      }
    });
    // 'close', not 'exit': a CLI that prints the ID and exits at once may be reported exited before its output is read.
    child.once('close', () => resolve(out.trim()));
    child.once('error', reject);
  });
  t.regex(id, /^[0-9a-f]{64}$/);
  await new Promise((res) => setTimeout(res, 500));
  const before = (await r('logs', 'survivor')).stdout.split('\n').length;
  await new Promise((res) => setTimeout(res, 400));
  t.is((await psJson(r))[0]?.State, 'running');
  t.true((await r('logs', 'survivor')).stdout.split('\n').length > before, 'the container still writes logs');
  // The CLI that created the writable layer is dead: prune (like a build's stale cleanup) must still keep the layer.
  const pruned = await r('prune');
  t.is(pruned.code, 0, pruned.stderr);
  t.deepEqual(await readdir(join(root, 'snapshots', 'overlay', 'active')), [`ctr-${id}`]);
  // kill -9 of the monitor: the container dies with it, and ps never shows a ghost.
  const state = JSON.parse(await readFile(join(root, 'containers', id, 'state.json'), 'utf8')) as { monitorPid: number; pid: number };
  process.kill(state.monitorPid, 'SIGKILL');
  await until('the container to die with its monitor', async () => !readdirSync('/proc').includes(String(state.pid)));
  const row = (await psJson(r))[0];
  t.is(row?.State, 'exited');
  t.regex(row?.Status ?? '', /^Exited \(255\) /);
  t.is((await r('rm', 'survivor')).code, 0);
  await finish();
});

testIf(noBusybox, 'run: bad input fails clearly and leaves nothing behind when flags or images are wrong', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '-p', '80/sctp', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /not supported yet/);
  res = await r('run', '--name', 'bad name!', 'busybox', 'true');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid container name/);
  res = await r('run', '-u', 'nosuchuser', 'busybox', 'true');
  t.not(res.code, 0);
  res = await r('run', '-d', '--rootfs', '/', 'true');
  t.is(res.code, 125);
  t.is((await r('logs', 'nope')).code, 1);
  t.regex((await r('stop', 'nope')).stderr, /no such container: nope/);
  t.deepEqual(await psJson(r), []);
  await finish();
});

testIf(noBusybox, 'run: a two-layer image shows the merged view (added file, whited-out dir) and its ENTRYPOINT, WorkingDir and User when run', async (t) => {
  const { root, r, finish } = await setup(t);
  // Layer 2 on top of busybox: adds /app/hello.txt, deletes /var (an OCI whiteout), as a build would.
  const dir = await tempDir(t);
  await mkdir(join(dir, 'l2', 'app'), { recursive: true });
  await writeFile(join(dir, 'l2', 'app', 'hello.txt'), 'from layer 2\n');
  await writeFile(join(dir, 'l2', '.wh.var'), '');
  await tarDirectory(join(dir, 'l2'), join(dir, 'l2.tar'));
  const store = await openStore(root);
  const base = await r('inspect', 'busybox');
  const baseInfo = (JSON.parse(base.stdout) as [{ Descriptor: { digest: string } }])[0];
  const baseManifest = (await store.blobs.readJson(baseInfo.Descriptor.digest as Digest)).value as ImageManifest;
  const baseConfig = (await store.blobs.readJson(baseManifest.config.digest)).value as ImageConfig;
  const layer = await store.blobs.put(createReadStream(join(dir, 'l2.tar')));
  let config = addLayer(baseConfig, layer.digest, { created_by: 'COPY app /app' });
  config = editContainerConfig(config, (c) => ({ ...c, Entrypoint: ['cat'], Cmd: ['hello.txt'], WorkingDir: '/app', User: 'nobody' }));
  const c = await store.blobs.putBytes(serializeDocument(config));
  const manifest = createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size },
    [...baseManifest.layers, { mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }]);
  const m = await store.blobs.putBytes(serializeDocument(manifest));
  await store.refs.set('docker.io/library/layered:1', { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size });

  let res = await r('run', '--rm', 'layered:1');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'from layer 2\n');
  res = await r('run', '--rm', '--entrypoint', 'sh', 'layered:1', '-c', 'id -u; pwd; test -e /var && echo var-present || echo var-gone; test -e /etc/passwd && echo base-present');
  t.is(res.stdout, '65534\n/app\nvar-gone\nbase-present\n');
  await finish();
});

testIf(noBusybox, 'run --rm: a container whose writable layer cannot be removed fails the run with the reason, after its command ran', async (t) => {
  const { root, r, finish } = await setup(t);
  // The container's file made immutable on the host while it runs: its writable layer cannot be removed.
  const running = r('run', '--rm', '--name', 'stuck', 'busybox', 'sh', '-c', 'touch /stuck; sleep 1; echo ran; exit 4');
  const immutable: string[] = [];
  const findStuck = (dir: string): string[] => readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.name === 'stuck' && e.isFile()).map((e) => join(e.parentPath, e.name));
  // Whatever happens, the files go mutable again (the store's temporary directory can then be removed).
  t.teardown(() => {
    for (const f of findStuck(root)) execFileSync('chattr', ['-i', f]);
  });
  await until('the container to write its file', async () => findStuck(join(root, 'snapshots')).length > 0);
  for (const f of findStuck(join(root, 'snapshots'))) {
    execFileSync('chattr', ['+i', f]);
    immutable.push(f);
  }
  const res = await running;
  t.is(res.stdout, 'ran\n');
  t.not(res.code, 0);
  t.regex(res.stderr, /cannot remove/);
  for (const f of findStuck(root)) execFileSync('chattr', ['-i', f]);
  t.true(immutable.length > 0);
  await finish();
});
