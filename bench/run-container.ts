/**
 * Containers from images, run by `npm run bench -- run` (alias of run-container). Needs root and
 * a current build (`npm run build`: the CLI is timed as users run it, bin/tsbuild.js on dist/).
 *  1. Start-up: wall time (the tool run alone) and CPU time (another run under GNU time) of `tsbuild run
 *     --rm busybox true` (default network: slirp4netns when installed) and of `--network none`, including
 *     Node start-up, against `podman run --rm` (runc, --network none) and `buildah run`
 *     of the same image (pulled from the tsbuild store, an OCI layout), interleaved, medians; and `node -e 0`,
 *     the floor of the tsbuild rows on this machine.
 *  2. Published ports: HTTP load (wrk, else ab) against busybox httpd in a container, through
 *     `-p` (the native port proxy in the container's netns) vs `--network host` (direct): requests/s
 *     and latency of a small page (a new connection per request: httpd closes), and MB/s of a
 *     32 MiB download; rounds interleaved, medians.
 * Flags: --iterations=N (start-up runs per tool, default 15), --seconds=S (per load round, default 4),
 * --rounds=N (default 3), --only=startup|ports.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxImage } from '../test/helpers/base-image.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const TSBUILD = join(REPO, 'bin', 'tsbuild.js');
/** Idle time before each timed start-up run. */
const SETTLE_MS = 150;
const IMAGE = 'docker.io/library/busybox:latest';
/** The container's web root: a small page and a 32 MiB file. */
const WWW_SETUP = 'mkdir -p /www && echo hello > /www/index.html && dd if=/dev/zero of=/www/big bs=1M count=32 2>/dev/null';

function exec(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

async function must(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await exec(cmd, args, env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.out}`);
  return r.out;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function flag(args: readonly string[], name: string, fallback: string): string {
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
}

function which(name: string): string | undefined {
  return ['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].map((d) => join(d, name)).find((p) => existsSync(p));
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const port = (s.address() as { port: number }).port;
  await new Promise((res) => s.close(res));
  return port;
}

/** GNU time, for the CPU time (user + sys, with the children waited for) of each start: on a busy machine it varies less than wall time. */
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

/** Runs `cmd args` (as must) and returns its CPU time in ms (NaN without GNU time). */
async function mustCpu(work: string, cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<number> {
  if (GNU_TIME === undefined) {
    await must(cmd, args, env);
    return Number.NaN;
  }
  const file = join(work, 'cpu-time.txt');
  await must(GNU_TIME, ['-f', '%U %S', '-o', file, cmd, ...args], env);
  return (await readFile(file, 'utf8')).trim().split(/\s+/).reduce((sum, x) => sum + Number(x) * 1000, 0);
}

/** `env` as bin/tsbuild.js's shebang gives it to Node: without NODE_EXTRA_CA_CERTS (Node parses that file at start). */
function nodeEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  delete out.NODE_EXTRA_CA_CERTS;
  return out;
}

/** One start-up case: the command line of the tool. */
interface StartCase { readonly name: string; readonly cmd: string; readonly args: readonly string[]; readonly env?: NodeJS.ProcessEnv }

async function startup(work: string, root: string, env: NodeJS.ProcessEnv, n: number): Promise<void> {
  const cases: StartCase[] = [
    { name: 'tsbuild run --rm busybox true', cmd: TSBUILD, args: ['--root', root, 'run', '--rm', 'busybox', 'true'], env },
    // The default network starts slirp4netns when installed; podman's row below has no network either.
    { name: 'tsbuild run --rm --network none', cmd: TSBUILD, args: ['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'true'], env },
    // The floor of every tsbuild row, as the shebang starts Node (without NODE_EXTRA_CA_CERTS): machines differ
    // (Node's start took 24-28 ms on one VM and 54-63 ms on the next), and the rows above read against it.
    { name: 'node -e 0 (Node\'s own start-up)', cmd: process.execPath, args: ['-e', '0'], env: nodeEnv(env) },
  ];
  const runc = which('runc');
  const podman = which('podman');
  if (podman !== undefined && runc !== undefined) {
    const g = ['--root', join(work, 'podman-root'), '--runroot', join(work, 'podman-run'), '--storage-driver', 'overlay', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none', '--runtime', runc];
    const id = (await must(podman, [...g, 'pull', '-q', `oci:${root}:${IMAGE}`])).trim().split('\n').pop() ?? '';
    cases.push({ name: 'podman run --rm --network none', cmd: podman, args: [...g, 'run', '--rm', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', id, 'true'] });
  } else {
    process.stdout.write('  (podman not installed: apt-get install podman)\n');
  }
  const buildah = which('buildah');
  let buildahCtr: string | undefined;
  const bg = ['--root', join(work, 'buildah-root'), '--runroot', join(work, 'buildah-run'), '--storage-driver', 'overlay'];
  if (buildah !== undefined && runc !== undefined) {
    const id = (await must(buildah, [...bg, 'pull', '-q', `oci:${root}:${IMAGE}`])).trim().split('\n').pop() ?? '';
    buildahCtr = (await must(buildah, [...bg, 'from', '--pull-never', id])).trim().split('\n').pop();
    const ctr = buildahCtr as string;
    cases.push({ name: 'buildah run (existing working container)', cmd: buildah, args: [...bg, 'run', '--runtime', runc, '--network', 'none', ctr, 'true'] });
  }
  const times = cases.map(() => [] as number[]);
  const cpus = cases.map(() => [] as number[]);
  for (let i = -2; i < n; i++) {
    for (const [k, c] of cases.entries()) {
      // The wall time of the tool run alone; its CPU time from a second run under GNU time, whose own fork and
      // exec (~3.5 ms here) would otherwise count in the wall time. After a pause: what the tool before left
      // running (podman's cleanup process, conmon, buildah's) would otherwise count against the next one.
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const t0 = performance.now();
      await must(c.cmd, c.args, c.env);
      const wall = performance.now() - t0;
      const cpu = await mustCpu(work, c.cmd, c.args, c.env);
      if (i >= 0) {
        times[k]?.push(wall);
        cpus[k]?.push(cpu);
      }
    }
  }
  const load = (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ')[0];
  process.stdout.write(`start-up, median of ${n} interleaved (wall ms of the tool alone, including its own start-up; cpu = user+sys of it and the children it waits for, from another run under GNU time: not podman's conmon; load ${load}):\n`);
  for (const [k, c] of cases.entries()) process.stdout.write(`  ${c.name.padEnd(44)} ${median(times[k] ?? []).toFixed(0).padStart(6)} ms   cpu ${median(cpus[k] ?? []).toFixed(0).padStart(4)} ms\n`);
  if (buildah !== undefined && buildahCtr !== undefined) await exec(buildah, [...bg, 'rm', buildahCtr]);
  if (buildah !== undefined) await exec(buildah, [...bg, 'rm', '--all']);
  if (podman !== undefined) await exec(podman, ['--root', join(work, 'podman-root'), '--runroot', join(work, 'podman-run'), '--storage-driver', 'overlay', 'system', 'reset', '-f']);
}

/**
 * requests/s and mean latency (ms) of `seconds` of load on `url` with 8 connections: busybox
 * httpd listens with a backlog of 9, more would measure its dropped SYNs (1 s retransmits),
 * which through -p land inside the request time (the proxy connects after the request came).
 */
async function load(url: string, seconds: number): Promise<{ rps: number; latencyMs: number; tool: string }> {
  const wrk = which('wrk');
  if (wrk !== undefined) {
    const out = await must(wrk, ['-t2', '-c8', `-d${seconds}s`, url]);
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
    const lat = /Latency\s+([\d.]+)(us|ms|s)/.exec(out);
    const scale = lat?.[2] === 'us' ? 1e-3 : lat?.[2] === 's' ? 1e3 : 1;
    return { rps, latencyMs: Number(lat?.[1]) * scale, tool: 'wrk -t2 -c8' };
  }
  const out = await must('ab', ['-q', '-c', '8', '-t', String(seconds), '-n', '1000000', url]);
  return { rps: Number(/Requests per second:\s+([\d.]+)/.exec(out)?.[1]), latencyMs: Number(/Time per request:\s+([\d.]+) \[ms\] \(mean\)/.exec(out)?.[1]), tool: 'ab -c8' };
}

/** MB/s of downloading `url` (the 32 MiB file) three times in a row with node's http client. */
async function download(url: string): Promise<number> {
  const t0 = performance.now();
  let bytes = 0;
  for (let i = 0; i < 3; i++) {
    bytes += await new Promise<number>((resolve, reject) => {
      get(url, { agent: false }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => { n += c.length; });
        res.on('end', () => resolve(n));
        res.on('error', reject);
      }).on('error', reject);
    });
  }
  return bytes / 1e6 / ((performance.now() - t0) / 1000);
}

async function waitUp(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      get(url, { agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode === 200)); }).on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never answered`);
}

async function ports(root: string, env: NodeJS.ProcessEnv, seconds: number, rounds: number): Promise<void> {
  const [published, direct] = [await freePort(), await freePort()];
  const t = (...a: string[]): Promise<string> => must(TSBUILD, ['--root', root, ...a], env);
  await t('run', '-d', '--name', 'bench-published', '-p', `${published}:80`, 'busybox', 'sh', '-c', `${WWW_SETUP} && exec httpd -f -p 80 -h /www`);
  await t('run', '-d', '--name', 'bench-direct', '--network', 'host', 'busybox', 'sh', '-c', `${WWW_SETUP} && exec httpd -f -p 127.0.0.1:${direct} -h /www`);
  try {
    const cases = [
      { name: 'through -p (port proxy)', port: published },
      { name: '--network host (direct)', port: direct },
    ];
    for (const c of cases) await waitUp(`http://127.0.0.1:${c.port}/index.html`);
    const results = cases.map(() => ({ rps: [] as number[], lat: [] as number[], mbs: [] as number[] }));
    let tool = '';
    for (let r = 0; r < rounds; r++) {
      for (const [k, c] of cases.entries()) {
        const l = await load(`http://127.0.0.1:${c.port}/index.html`, seconds);
        tool = l.tool;
        results[k]?.rps.push(l.rps);
        results[k]?.lat.push(l.latencyMs);
        results[k]?.mbs.push(await download(`http://127.0.0.1:${c.port}/big`));
      }
    }
    process.stdout.write(`published port vs direct, busybox httpd, medians of ${rounds} interleaved rounds (${tool}, ${seconds}s, a new connection per request; download: 3 x 32 MiB):\n`);
    for (const [k, c] of cases.entries()) {
      const x = results[k] as { rps: number[]; lat: number[]; mbs: number[] };
      process.stdout.write(`  ${c.name.padEnd(26)} ${median(x.rps).toFixed(0).padStart(7)} req/s  ${median(x.lat).toFixed(2).padStart(7)} ms mean latency  ${median(x.mbs).toFixed(0).padStart(6)} MB/s\n`);
    }
    const [p, d] = results as [{ rps: number[]; lat: number[]; mbs: number[] }, { rps: number[]; lat: number[]; mbs: number[] }];
    process.stdout.write(`  -p / direct: ${(100 * median(p.rps) / median(d.rps)).toFixed(0)} % of requests/s, ${(100 * median(p.mbs) / median(d.mbs)).toFixed(0)} % of download throughput (target >= 50 %)\n`);
  } finally {
    await exec(TSBUILD, ['--root', root, 'rm', '-f', 'bench-published', 'bench-direct'], env);
  }
}

/** Runs the benchmark and prints its figures. */
export async function run(args: string[]): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stdout.write('run bench: needs root (podman/buildah comparison and the store it builds)\n');
    return;
  }
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js'))) {
    process.stdout.write('run bench: run "npm run build" first (the CLI is timed from dist/)\n');
    return;
  }
  const only = flag(args, 'only', '');
  // Lower case: podman names an image pulled from an OCI layout after its path.
  await removeStaleWorkDirs();
  const work = join(tmpdir(), `tsbuild-bench-run-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(work, { recursive: true });
  try {
    const root = join(work, 'store');
    await mkdir(root, { recursive: true });
    await makeBusyboxImage(work, root);
    const env = { ...process.env, TSBUILD_RUN_DIR: join(work, 'run') };
    if (only === '' || only === 'startup') await startup(work, root, env, Number(flag(args, 'iterations', '15')));
    if (only === '' || only === 'ports') await ports(root, env, Number(flag(args, 'seconds', '4')), Number(flag(args, 'rounds', '3')));
  } finally {
    await removeWorkDir(work);
  }
}

/** Unmounts what podman/buildah mounted in a work directory (their storage roots), then removes it. */
async function removeWorkDir(work: string): Promise<void> {
  await exec('umount', ['-R', '-l', join(work, 'podman-root', 'overlay')]).catch(() => undefined);
  await exec('umount', ['-R', '-l', join(work, 'buildah-root', 'overlay')]).catch(() => undefined);
  await rm(work, { recursive: true, force: true }).catch(() => undefined);
}

/** Work directories of bench runs that were killed before their cleanup ran (their pid is gone). */
async function removeStaleWorkDirs(): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    const m = /^tsbuild-bench-run-(?:(\d+)-)?[0-9a-f]{8}$/.exec(name);
    if (m === null || (m[1] !== undefined && existsSync(`/proc/${m[1]}`))) continue;
    await removeWorkDir(join(tmpdir(), name));
  }
}
