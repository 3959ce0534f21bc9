import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createReadStream, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CliOptions } from '../cli/run-cli.js';
import { readTar } from '../../src/layer/index.js';
import { busyboxMissing, makeBusyboxImage, tarDirectory } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { processesMentioning, waitForNoProcessMentioning, watchContainerStore } from '../helpers/containers.js';
import { cliAsUser, rootlessBusyboxStore, rootlessMissing, ROOTLESS_USER as USER } from '../helpers/rootless.js';
import { tempDir } from '../helpers/tmp.js';

const noBusybox = await busyboxMissing();
const notRoot = process.getuid?.() === 0 ? undefined : 'cgroup v1 accounting and the freezer need root here';
const why = noBusybox ?? notRoot;

type Cli = (...a: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/**
 * A store with the busybox image whose containers are force-removed when the test ends; `finish`
 * also asserts that nothing is left: no process of the store, no cgroup of its monitors, no mount.
 * (The same checks as run-containers.test.ts.)
 */
async function setup(t: ExecutionContext): Promise<{ root: string; dir: string; r: Cli; rIn: (options: CliOptions, ...a: string[]) => Promise<{ code: number; stdout: string; stderr: string }>; finish: () => Promise<void> }> {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const { r, rIn, finish } = watchContainerStore(t, root, { monitors: true });
  return { root, dir, r, rIn, finish };
}

/** Starts a detached busybox container named `name` running `script`; returns its full ID. */
async function startDetached(t: ExecutionContext, r: Cli, name: string, script: string, ...flags: string[]): Promise<string> {
  const res = await r('run', '-d', '--name', name, ...flags, 'busybox', 'sh', '-c', script);
  t.is(res.code, 0, res.stderr);
  return res.stdout.trim();
}

async function inspectState(r: Cli, name: string): Promise<{ Status: string; Running: boolean; Paused: boolean; Pid: number; StartedAt: string }> {
  const res = await r('container', 'inspect', name);
  return (JSON.parse(res.stdout) as { State: { Status: string; Running: boolean; Paused: boolean; Pid: number; StartedAt: string } }[])[0]!.State;
}

async function psState(r: Cli, name: string): Promise<{ State: string; Status: string } | undefined> {
  const rows = (await r('ps', '-a', '--format', 'json')).stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { Names: string; State: string; Status: string });
  return rows.find((row) => row.Names === name);
}

/** CPU ticks (user + system) the process has used so far. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

testIf(why, 'exec: runs in the container\'s namespaces, env and cgroup with the exit code propagated when the container runs', async (t) => {
  const { dir, r, rIn, finish } = await setup(t);
  await startDetached(t, r, 'box', 'echo from-run > /made-by-run; exec sleep 1000', '--hostname', 'boxhost', '-e', 'FROM_RUN=1', '--cap-drop', 'NET_RAW');
  const state = await inspectState(r, 'box');
  // PID 1 of the container is its sleep, the exec'd shell is another process of the same pid namespace.
  let res = await r('exec', 'box', 'sh', '-c', 'echo $$; tr "\\0" " " < /proc/1/cmdline; echo; hostname; cat /made-by-run; echo $FROM_RUN $HOSTNAME; pwd; id -u');
  t.is(res.code, 0, res.stderr);
  const [pid, init, host, made, env, pwd, uid] = res.stdout.split('\n');
  t.not(pid, '1');
  t.true(Number(pid) > 1);
  t.is(init, 'sleep 1000 ');
  t.is(host, 'boxhost');
  t.is(made, 'from-run');
  t.is(env, '1 boxhost');
  t.is(pwd, '/');
  t.is(uid, '0');
  // The exec'd process is in the container's cgroup (its cgroup namespace shows it as the root).
  res = await r('exec', 'box', 'cat', '/proc/self/cgroup');
  t.regex(res.stdout, /^\d+:memory:\/$/m);
  const hostView = readFileSync(`/proc/${state.Pid}/cgroup`, 'utf8').match(/^\d+:memory:(.*)$/m)?.[1];
  t.regex(hostView ?? '', /^\/tsbuild\/sandbox-/);
  // Exit codes: the command's, 127 for an unknown command, 126 for a file that is not executable.
  t.is((await r('exec', 'box', 'sh', '-c', 'exit 7')).code, 7);
  res = await r('exec', 'box', 'no-such-command');
  t.is(res.code, 127);
  t.regex(res.stderr, /command not found/);
  t.is((await r('exec', 'box', '/made-by-run')).code, 126);
  // -u resolves in the container's /etc/passwd, -w, -e and --env-file add to the container's env.
  await writeFile(join(dir, 'env.list'), '# comment\nFROM_FILE=yes\n\nFROM_RUN=overridden\n');
  res = await r('exec', '-u', 'nobody', '-w', '/tmp', '-e', 'EXTRA=x', '--env-file', join(dir, 'env.list'), 'box', 'sh', '-c', 'id -u; pwd; echo $EXTRA $FROM_FILE $FROM_RUN');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, '65534\n/tmp\nx yes overridden\n');
  res = await r('exec', '-u', 'nosuchuser', 'box', 'true');
  t.not(res.code, 0);
  // The capabilities are the container's: dropping one at run time holds for exec too.
  t.is((await r('exec', 'box', 'sh', '-c', 'grep CapEff /proc/self/status')).stdout, 'CapEff:\t00000000a80405fb\n');
  t.is((await r('exec', 'box', 'sh', '-c', 'grep NoNewPrivs /proc/self/status')).stdout, 'NoNewPrivs:\t1\n');
  // -i feeds stdin; without -i the command reads an empty stdin.
  res = await rIn({ stdin: 'piped text\n' }, 'exec', '-i', 'box', 'cat');
  t.is(res.stdout, 'piped text\n');
  t.is((await rIn({ stdin: 'ignored\n' }, 'exec', 'box', 'cat')).stdout, '');
  // -t gives the command a terminal of the container's devpts; -it needs a terminal on our side.
  res = await r('exec', '-t', 'box', 'tty');
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /^\/dev\/pts\/\d+\r\n$/);
  res = await r('exec', '-it', 'box', 'sh');
  t.is(res.code, 1);
  t.regex(res.stderr, /not a TTY/);
  // -d leaves the command running in the container and returns at once.
  res = await r('exec', '-d', 'box', 'sh', '-c', 'sleep 0.3; echo later > /detached');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, '');
  await until('the detached exec to write', async () => (await r('exec', 'box', 'cat', '/detached')).stdout === 'later\n');
  await finish();
});

testIf(why, 'exec: a clear error when the container is stopped or unknown', async (t) => {
  const { r, finish } = await setup(t);
  t.is((await r('run', '--name', 'done', 'busybox', 'true')).code, 0);
  let res = await r('exec', 'done', 'true');
  t.is(res.code, 1);
  t.regex(res.stderr, /is not running/);
  res = await r('exec', 'no-such-container', 'true');
  t.is(res.code, 1);
  t.regex(res.stderr, /no such container/i);
  res = await r('exec', 'done');
  t.is(res.code, 125);
  t.regex(res.stderr, /requires at least 2 arguments/);
  await finish();
});

testIf(why, 'pause: a busy loop uses no CPU and shows as paused until unpause when the container is paused', async (t) => {
  const { r, finish } = await setup(t);
  await startDetached(t, r, 'busy', 'while :; do :; done');
  const { Pid: pid } = await inspectState(r, 'busy');
  await until('the loop to use CPU', async () => cpuTicks(pid) > 5);
  let res = await r('pause', 'busy');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'busy\n');
  t.is((await psState(r, 'busy'))?.State, 'paused');
  t.regex((await psState(r, 'busy'))?.Status ?? '', /^Up .* \(Paused\)$/);
  const paused = await inspectState(r, 'busy');
  t.is(paused.Status, 'paused');
  t.true(paused.Paused);
  t.true(paused.Running);
  const before = cpuTicks(pid);
  await new Promise((res2) => setTimeout(res2, 400));
  t.is(cpuTicks(pid), before, 'no CPU time while paused');
  const stats = JSON.parse((await r('stats', '--no-stream', '--format', 'json', 'busy')).stdout) as { CPUPerc: string };
  t.is(stats.CPUPerc, '0.00%');
  res = await r('exec', 'busy', 'true');
  t.is(res.code, 1);
  t.regex(res.stderr, /is paused/);
  res = await r('pause', 'busy');
  t.is(res.code, 1);
  t.regex(res.stderr, /already paused/);
  t.is((await r('unpause', 'busy')).code, 0);
  t.is((await psState(r, 'busy'))?.State, 'running');
  await until('the loop to run again', async () => cpuTicks(pid) > before);
  res = await r('unpause', 'busy');
  t.is(res.code, 1);
  t.regex(res.stderr, /not paused/);
  // A paused container can be stopped: it is thawed to handle the signal.
  t.is((await r('pause', 'busy')).code, 0);
  res = await r('stop', '-t', '1', 'busy');
  t.is(res.code, 0, res.stderr);
  t.is((await psState(r, 'busy'))?.State, 'exited');
  t.is((await r('pause', 'busy')).code, 1);
  await finish();
});

testIf(why, 'stats: memory limit, usage and pids from cgroup accounting when a container runs with -m', async (t) => {
  const { r, finish } = await setup(t);
  // Only lo (no slirp4netns tap0, whose IPv6 neighbour discovery is traffic): NetIO stays 0.
  await startDetached(t, r, 'limited', 'sleep 1000 & sleep 1000 & exec sleep 1000', '-m', '64m', '--network', 'none');
  await startDetached(t, r, 'free', 'exec sleep 1000');
  await until('three processes', async () => (await r('top', 'limited')).stdout.trim().split('\n').length === 4);
  let res = await r('stats', '--no-stream', '--format', 'json', 'limited');
  t.is(res.code, 0, res.stderr);
  const row = JSON.parse(res.stdout) as Record<string, string>;
  t.is(row.Name, 'limited');
  t.is(row.Container, 'limited');
  t.regex(row.ID ?? '', /^[0-9a-f]{12}$/);
  t.regex(row.MemUsage ?? '', /^\d+(\.\d+)?(B|KiB|MiB) \/ 64MiB$/);
  t.regex(row.MemPerc ?? '', /^\d+\.\d\d%$/);
  t.not(row.MemUsage?.split(' ')[0], '0B');
  t.is(row.PIDs, '3');
  t.regex(row.CPUPerc ?? '', /^\d+\.\d\d%$/);
  t.is(row.NetIO, '0B / 0B');
  // Without arguments: every running container, as a table.
  res = await r('stats', '--no-stream');
  t.is(res.code, 0, res.stderr);
  const lines = res.stdout.trim().split('\n');
  t.regex(lines[0] ?? '', /^CONTAINER ID +NAME +CPU % +MEM USAGE \/ LIMIT +MEM % +NET I\/O +BLOCK I\/O +PIDS$/);
  t.is(lines.length, 3);
  t.true(lines.some((l) => /\blimited\b.* \/ 64MiB /.test(l)));
  t.true(lines.some((l) => /\bfree\b/.test(l) && !l.includes('/ 64MiB')), 'without -m the limit is the host memory');
  await finish();
});

testIf(why, 'top: lists the container\'s processes with host pids when it runs', async (t) => {
  const { r, finish } = await setup(t);
  await startDetached(t, r, 'sleeper', 'exec sleep 1000');
  const { Pid: pid } = await inspectState(r, 'sleeper');
  t.is((await r('exec', '-d', 'sleeper', 'sleep', '999')).code, 0);
  await until('the exec\'d process', async () => (await r('top', 'sleeper')).stdout.includes('sleep 999'));
  const res = await r('top', 'sleeper');
  t.is(res.code, 0, res.stderr);
  const [head, ...rows] = res.stdout.trim().split('\n');
  t.regex(head ?? '', /^UID +PID +PPID +C +STIME +TTY +TIME +CMD$/);
  t.is(rows.length, 2);
  t.true(rows.some((l) => new RegExp(`^root +${pid} +\\d+ .* sleep 1000$`).test(l)));
  t.true(rows.some((l) => / sleep 999$/.test(l)));
  t.is((await r('stop', '-t', '0', 'sleeper')).code, 0);
  const stopped = await r('top', 'sleeper');
  t.is(stopped.code, 1);
  t.regex(stopped.stderr, /is not running/);
  await finish();
});

testIf(why, 'restart: stops and starts the container again with its writable layer when it runs', async (t) => {
  const { r, finish } = await setup(t);
  await startDetached(t, r, 'counter', 'echo start >> /starts; exec sleep 1000');
  const first = await inspectState(r, 'counter');
  const res = await r('restart', '-t', '0', 'counter');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'counter\n');
  const second = await inspectState(r, 'counter');
  t.true(second.Running);
  t.not(second.Pid, first.Pid);
  t.not(second.StartedAt, first.StartedAt);
  t.is((await r('exec', 'counter', 'cat', '/starts')).stdout, 'start\nstart\n');
  // A stopped container is simply started.
  t.is((await r('stop', '-t', '0', 'counter')).code, 0);
  t.is((await r('restart', 'counter')).code, 0);
  t.is((await r('exec', 'counter', 'cat', '/starts')).stdout, 'start\nstart\nstart\n');
  await finish();
});

/** The entry names of a tar file (read with the layer module's tar reader). */
async function tarNames(file: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of readTar(createReadStream(file))) {
    names.push(e.header.name);
    for await (const chunk of e.body) void chunk;
  }
  return names;
}

testIf(why, 'cp: copies both ways, also as tar streams and with a stopped container, when paths are resolved inside the container', async (t) => {
  const { dir, r, rIn, finish } = await setup(t);
  const hostSide = join(dir, 'hostside');
  await mkdir(hostSide);
  await writeFile(join(hostSide, 'secret'), 'host secret\n');
  // Hostile links: absolute targets that name host paths, and a link to the root.
  await startDetached(t, r, 'files', `mkdir -p /data/sub; echo a > /data/a; echo b > /data/sub/b; ln -s ${hostSide} /data/escape; ln -s /etc /data/etc; ln -s / /rootlink; exec sleep 1000`);
  await until('the files', async () => (await r('exec', 'files', 'test', '-L', '/rootlink')).code === 0);
  // Out: a directory into an existing host directory, a file to a new name.
  const out = join(dir, 'out');
  await mkdir(out);
  let res = await r('cp', 'files:/data', out);
  t.is(res.code, 0, res.stderr);
  t.is(await readFile(join(out, 'data', 'sub', 'b'), 'utf8'), 'b\n');
  t.is(await readlink(join(out, 'data', 'escape')), hostSide, 'a link is copied as a link');
  t.is((await r('cp', 'files:/data/a', join(out, 'renamed'))).code, 0);
  t.is(await readFile(join(out, 'renamed'), 'utf8'), 'a\n');
  t.is((await psState(r, 'files'))?.State, 'running', 'frozen only while copying');
  // Out through the hostile link: resolved in the container, where that path does not exist.
  res = await r('cp', 'files:/data/escape/secret', join(out, 'stolen'));
  t.is(res.code, 1);
  t.regex(res.stderr, /Could not find the file/);
  await t.throwsAsync(stat(join(out, 'stolen')));
  // In: through /rootlink and /data/etc, which mean the container's / and /etc.
  const marker = `tsbuild-cp-${process.pid}-${Date.now()}`;
  await writeFile(join(dir, marker), 'copied in\n');
  t.is((await r('cp', join(dir, marker), 'files:/data/etc/')).code, 0);
  t.is((await r('cp', join(dir, marker), 'files:/rootlink/tmp/renamed-in')).code, 0);
  t.is((await r('exec', 'files', 'cat', `/etc/${marker}`, '/tmp/renamed-in')).stdout, 'copied in\ncopied in\n');
  await t.throwsAsync(stat(join('/etc', marker)), undefined, 'nothing was written to the host\'s /etc');
  res = await r('cp', join(dir, marker), 'files:/data/escape/');
  t.is(res.code, 1, 'the host directory named by the link does not exist in the container');
  res = await r('cp', join(dir, marker), 'files:/data/escape/planted');
  t.is(res.code, 1);
  t.deepEqual(await readdir(hostSide), ['secret'], 'nothing was written through the link on the host');
  // A directory in, then tar streams both ways.
  await mkdir(join(dir, 'tree', 'inner'), { recursive: true });
  await writeFile(join(dir, 'tree', 'inner', 'x'), 'x\n');
  t.is((await r('cp', join(dir, 'tree'), 'files:/tmp')).code, 0);
  t.is((await r('exec', 'files', 'cat', '/tmp/tree/inner/x')).stdout, 'x\n');
  t.is((await r('exec', 'files', 'stat', '-c', '%a', '/tmp')).stdout, '1777\n', 'the directory copied into keeps its mode');
  res = await r('cp', 'files:/data/sub', '-');
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /sub\/b/);
  const tarFile = join(dir, 'in.tar');
  await tarDirectory(join(dir, 'tree'), tarFile);
  res = await rIn({ stdin: await readFile(tarFile) }, 'cp', '-', 'files:/data/sub');
  t.is(res.code, 0, res.stderr);
  t.is((await r('exec', 'files', 'cat', '/data/sub/inner/x')).stdout, 'x\n');
  // A stopped container: copies go to and come from its layers.
  t.is((await r('stop', '-t', '0', 'files')).code, 0);
  t.is((await r('cp', join(dir, marker), 'files:/tmp/while-stopped')).code, 0);
  t.is((await r('cp', join(dir, marker), 'files:/rootlink/etc/')).code, 0, 'an existing file is replaced');
  t.is((await r('cp', 'files:/data/a', join(out, 'from-stopped'))).code, 0);
  t.is(await readFile(join(out, 'from-stopped'), 'utf8'), 'a\n');
  t.is((await r('start', 'files')).code, 0);
  t.is((await r('exec', 'files', 'cat', '/tmp/while-stopped')).stdout, 'copied in\n');
  t.is((await r('exec', 'files', 'stat', '-c', '%a', '/tmp')).stdout, '1777\n', 'a directory copied up keeps its mode');
  t.is((await r('exec', 'files', 'ls', '/tmp/tree/inner')).stdout, 'x\n', 'content written while running is kept');
  await finish();
});

testIf(why, 'cp -a keeps owners and cp -L follows a link named as the source when given, links resolved inside the container', async (t) => {
  const { dir, r, finish } = await setup(t);
  const hostSide = join(dir, 'hostside');
  await mkdir(hostSide);
  await writeFile(join(hostSide, 'secret'), 'host secret\n');
  await startDetached(t, r, 'own', `mkdir /data; echo t > /data/target; chown 1234:5678 /data/target; ln -s /data/target /data/link; ln -s ${hostSide}/secret /data/hostile; exec sleep 1000`);
  await until('the files', async () => (await r('exec', 'own', 'test', '-L', '/data/hostile')).code === 0);
  const out = join(dir, 'out');
  await mkdir(out);
  // Out: -L copies the link's target under the link's name; without it the link itself.
  t.is((await r('cp', 'own:/data/link', join(out, 'plain'))).code, 0);
  t.is(await readlink(join(out, 'plain')), '/data/target');
  let res = await r('cp', '-L', 'own:/data/link', out);
  t.is(res.code, 0, res.stderr);
  t.is(await readFile(join(out, 'link'), 'utf8'), 't\n');
  // -L resolves inside the container: the host path the link names is not there.
  res = await r('cp', '-L', 'own:/data/hostile', join(out, 'stolen'));
  t.is(res.code, 1);
  t.regex(res.stderr, /Could not find the file/);
  await t.throwsAsync(stat(join(out, 'stolen')));
  // Owners: -a keeps the container's, without it the copy is the caller's.
  t.is((await r('cp', 'own:/data/target', join(out, 'mine'))).code, 0);
  t.is((await stat(join(out, 'mine'))).uid, 0);
  t.is((await r('cp', '-a', 'own:/data/target', join(out, 'kept'))).code, 0);
  const kept = await stat(join(out, 'kept'));
  t.deepEqual([kept.uid, kept.gid], [1234, 5678]);
  // In: -a keeps the host file's owner, -L follows a host link given as the source.
  const hostFile = join(dir, 'owned');
  await writeFile(hostFile, 'owned\n');
  execFileSync('chown', ['4321:8765', hostFile]);
  await symlink(hostFile, join(dir, 'hostlink'));
  t.is((await r('cp', hostFile, 'own:/tmp/as-root')).code, 0);
  t.is((await r('cp', '-a', hostFile, 'own:/tmp/as-owner')).code, 0);
  t.is((await r('cp', join(dir, 'hostlink'), 'own:/tmp/')).code, 0);
  t.is((await r('cp', '-L', join(dir, 'hostlink'), 'own:/tmp/followed')).code, 0);
  res = await r('exec', 'own', 'sh', '-c', 'stat -c %u:%g /tmp/as-root /tmp/as-owner; readlink /tmp/hostlink; cat /tmp/followed; test -L /tmp/followed || echo regular');
  t.is(res.stdout, `0:0\n4321:8765\n${hostFile}\nowned\nregular\n`, res.stderr);
  await finish();
});

testIf(why, 'commit: run of the committed image sees the container\'s changes when its writable layer is committed', async (t) => {
  const { r, finish } = await setup(t);
  await startDetached(t, r, 'changed', 'echo committed > /made; rm /bin/vi; exec sleep 1000', '-e', 'FROM_RUN=kept');
  await until('the change', async () => (await r('exec', 'changed', 'cat', '/made')).stdout === 'committed\n');
  let res = await r('commit', '-m', 'a message', '-a', 'Tester', '-c', 'ENV CHANGED=yes', 'changed', 'committed:v1');
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /^sha256:[0-9a-f]{64}\n$/);
  t.is((await inspectState(r, 'changed')).Status, 'running', 'the container runs on (thawed after the commit)');
  res = await r('run', '--rm', 'committed:v1', 'sh', '-c', 'cat /made; echo $CHANGED $FROM_RUN; test -e /bin/vi || echo vi-gone');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'committed\nyes kept\nvi-gone\n');
  // The container's command became the image's CMD; history records the commit.
  const image = (JSON.parse((await r('inspect', 'committed:v1')).stdout) as { Config: { Cmd: string[] }; Author: string }[])[0];
  t.deepEqual(image?.Config.Cmd, ['sh', '-c', 'echo committed > /made; rm /bin/vi; exec sleep 1000']);
  t.is(image?.Author, 'Tester');
  res = await r('history', 'committed:v1');
  t.regex(res.stdout.split('\n')[1] ?? '', /a message/);
  // Without a name: an untagged image, listed by its ID.
  res = await r('commit', 'changed');
  t.is(res.code, 0, res.stderr);
  t.true((await r('images', '-q', '--no-trunc')).stdout.includes(res.stdout.trim()));
  await finish();
});

testIf(why, 'export: a tar of the merged file system with the container\'s files when it has run', async (t) => {
  const { dir, r, finish } = await setup(t);
  t.is((await r('run', '--name', 'exp', 'busybox', 'sh', '-c', 'mkdir /out; echo data > /out/file; rm /bin/vi')).code, 0);
  const file = join(dir, 'export.tar');
  const res = await r('export', '-o', file, 'exp');
  t.is(res.code, 0, res.stderr);
  const names = await tarNames(file);
  t.true(names.includes('out/file'));
  t.true(names.includes('bin/busybox'));
  t.true(names.includes('etc/passwd'));
  t.false(names.includes('bin/vi'), 'a deleted file is not exported');
  t.false(names.some((n) => n.includes('.wh.')), 'no whiteouts: a flat file system');
  t.false(names.some((n) => /^(proc|sys)\/./.test(n)), 'mounts are not exported');
  t.is((await r('export', '-o', join(dir, 'x.tar'), 'no-such-container')).code, 1);
  await t.throwsAsync(stat(join(dir, 'x.tar')));
  await finish();
});

testIf(rootlessMissing() ?? noBusybox, 'exec rootless: an unprivileged user execs, copies, commits and exports when the container runs in a user namespace', async (t) => {
  const { home, root } = await rootlessBusyboxStore(t, 'tsbuild-cmds-rootless-');
  await writeFile(join(home, 'in.txt'), 'from the host\n');
  execFileSync('chown', [`${USER}:${USER}`, join(home, 'in.txt')]);
  const u = (...a: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => cliAsUser(home, root, a);
  let res = await u('run', '-d', '--name', 'rl', 'busybox', 'sh', '-c', 'echo made > /made; exec sleep 1000');
  t.is(res.code, 0, res.stderr);
  res = await u('exec', 'rl', 'sh', '-c', 'echo $$; id -u; cat /made; tr "\\0" " " < /proc/1/cmdline');
  t.is(res.code, 0, res.stderr);
  const [pid, uid, made, init] = res.stdout.split('\n');
  t.true(Number(pid) > 1);
  t.is(uid, '0', 'root in the container\'s user namespace');
  t.is(made, 'made');
  t.is(init, 'sleep 1000 ');
  t.is((await u('exec', '-u', 'nobody', 'rl', 'id', '-u')).stdout, '65534\n');
  t.is((await u('cp', join(home, 'in.txt'), 'rl:/tmp/')).code, 0);
  t.is((await u('exec', 'rl', 'cat', '/tmp/in.txt')).stdout, 'from the host\n');
  res = await u('cp', '-a', join(home, 'in.txt'), 'rl:/tmp/');
  t.is(res.code, 1);
  t.regex(res.stderr, /cp -a in a rootless store is not supported yet/);
  res = await u('cp', 'rl:/made', join(home, 'tmp', 'out.txt'));
  t.is(res.code, 0, res.stderr);
  t.is(await readFile(join(home, 'tmp', 'out.txt'), 'utf8'), 'made\n');
  t.regex((await u('top', 'rl')).stdout, /sleep 1000/);
  res = await u('commit', 'rl', 'rootless-commit:1');
  t.is(res.code, 0, res.stderr);
  t.is((await u('run', '--rm', 'rootless-commit:1', 'cat', '/made', '/tmp/in.txt')).stdout, 'made\nfrom the host\n');
  res = await u('export', '-o', join(home, 'tmp', 'rl.tar'), 'rl');
  t.is(res.code, 0, res.stderr);
  t.true((await tarNames(join(home, 'tmp', 'rl.tar'))).includes('made'));
  t.is((await u('rm', '-f', 'rl')).code, 0);
  // Processes end asynchronously after rm (the monitor's children see their exit pipe close).
  await waitForNoProcessMentioning(root);
  t.deepEqual(processesMentioning(root), [], 'no monitor or container process is left');
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(root), 'no mount is left');
});
