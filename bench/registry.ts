/**
 * Registry client throughput, run by `npm run bench -- registry`, against skopeo in the same run:
 *  - cold push of a generated 3-layer image (gzip tars of incompressible files, compressed once
 *    while generating: the push measures the wire) to an empty local docker-registry, in-process
 *    and as the CLI process (to a third empty registry);
 *  - cold pull of it into an empty store (download + verify + store), then the unpack of its
 *    layers into a directory ("pull+unpack": the two phases one after the other, as before);
 *  - `tsbuild pull` as it is now: download and unpack into snapshots overlapped (the target:
 *    <= 2.2 s for 340 MB), by a bundled driver in plain Node (CPU and RSS; bench/drivers/pull.ts) and
 *    as the CLI process (start-up included);
 *  - no-op push and pull when everything is present (in-process, and as CLI processes: the
 *    issue's target is <= 80 ms each, start-up included; `node -e 0` and skopeo are shown beside);
 *  - push to a new repository of the same registry (cross-repository mount).
 * skopeo: `skopeo copy oci:STORE:REF docker://...` (push) and `docker://... oci:DIR` (pull).
 * Peak RSS is sampled in-process; push, pull and unpack rows also give the CPU time of this process
 * and of the registry process, and the load (wall time alone says little on a shared machine). Flags: --mb=N (image size, default 340; --mb=10 for a quick run),
 * --runs=N (processes per no-op CLI row, median reported; default 10), --cli=FILE (the CLI entry,
 * default bin/tsbuild.js, executed directly; otherwise run by node; e.g. a bundle written with `scripts/bundle.mjs --outfile`), --dir=PATH, --keep.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MediaType, parseReference, type Descriptor, type Digest } from '../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../src/image/index.js';
import { applyLayer, compressGzip, decompress, findCompressionTools, packLayer } from '../src/layer/index.js';
import { HttpRegistryClient, pullImage, pushImage } from '../src/registry/index.js';
import { openStore } from '../src/store/index.js';
import { bundleDriver } from './drivers/bundle.js';

const exec = promisify(execFile);
const REPO = fileURLToPath(new URL('../', import.meta.url));
const MB = 1e6;
const PLATFORM = { os: 'linux', architecture: 'amd64' };

function flag(args: string[], name: string): string | undefined {
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

/**
 * The CLI command as users run it: bin/tsbuild.js executed through its shebang (which defers
 * NODE_EXTRA_CA_CERTS, ~90 ms of Node start-up); a --cli=FILE entry runs through `node`.
 */
function cliCommand(args: string[], cliArgs: readonly string[]): [string, string[]] {
  const entry = flag(args, 'cli');
  return entry === undefined ? [join(REPO, 'bin', 'tsbuild.js'), [...cliArgs]] : [process.execPath, [entry, ...cliArgs]];
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function startRegistry(dir: string): Promise<{ host: string; child: ChildProcess }> {
  const port = await freePort();
  await writeFile(join(dir, 'config.yml'), `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then(() => true, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: `127.0.0.1:${port}`, child };
}

/** CPU time (user + system) in ms that process `pid` has used so far (0 when unreadable). */
async function processCpuMs(pid: number | undefined): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) * 10; // clock ticks of 10 ms
}

/** CPU time (user + system) in ms of this process's waited-for children so far. */
async function childrenCpuMs(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13] ?? 0) + Number(fields[14] ?? 0)) * 10; // cutime + cstime, clock ticks of 10 ms
}

/** The load average now, for the rows measured while other work shares the machine. */
async function loadNow(): Promise<string> {
  return (await readFile('/proc/loadavg', 'utf8').catch(() => '? ? ?')).split(' ').slice(0, 3).join(' ');
}

/**
 * Runs `fn`, returning its wall time in ms, the peak RSS growth sampled meanwhile, this process's
 * CPU time and that of the registry process `serverPid` (wall time alone says little on a loaded machine).
 */
async function measure<T>(fn: () => Promise<T>, serverPid?: number): Promise<{ ms: number; peakMb: number; cpuMs: number; serverCpuMs: number; value: T }> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const s0 = await processCpuMs(serverPid);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    const value = await fn();
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    return { ms, peakMb: (peak - base) / MB, cpuMs: (cpu.user + cpu.system) / 1000, serverCpuMs: (await processCpuMs(serverPid)) - s0, value };
  } finally {
    clearInterval(timer);
  }
}

/** " CPU 812 ms (registry 1300 ms), load 3.1 2.0 1.5" for a row. */
async function cpuNote(m: { cpuMs: number; serverCpuMs: number }): Promise<string> {
  return `CPU ${m.cpuMs.toFixed(0)} ms (registry ${m.serverCpuMs.toFixed(0)} ms), load ${await loadNow()}`;
}

async function timeProcess(cmd: string, args: readonly string[]): Promise<number> {
  const t0 = performance.now();
  await exec(cmd, args, { cwd: REPO, maxBuffer: 1 << 24 });
  return performance.now() - t0;
}

/** The median wall time of `n` runs of a process. */
async function medianProcess(n: number, cmd: string, args: readonly string[]): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push(await timeProcess(cmd, args));
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? Number.NaN;
}

/** Runs the bundled driver (a child of plain Node) with `args`; its own wall time, CPU and peak RSS, and the registry's CPU meanwhile. */
async function runDriver(driver: string, args: object, serverPid: number | undefined): Promise<{ ms: number; peakMb: number; cpuMs: number; serverCpuMs: number }> {
  const s0 = await processCpuMs(serverPid);
  const { stdout } = await exec(process.execPath, [driver, JSON.stringify(args)], { cwd: REPO, maxBuffer: 1 << 20 });
  const r = JSON.parse(stdout.trim().split('\n').at(-1) as string) as { ms: number; cpuMs: number; peakMb: number };
  return { ...r, serverCpuMs: (await processCpuMs(serverPid)) - s0 };
}

/** Benchmark entry point. */
export async function run(args: string[]): Promise<void> {
  const total = Number(flag(args, 'mb') ?? '340') * MB;
  const runs = Math.max(1, Number(flag(args, 'runs') ?? '10'));
  const work = await mkdtemp(join(flag(args, 'dir') ?? '/var/tmp', 'tsbuild-bench-registry-'));
  const children: ChildProcess[] = [];
  try {
    const root = join(work, 'src');
    const store = await openStore(root);
    let config = createEmptyConfig(PLATFORM, '2024-01-01T00:00:00Z');
    const layers: Descriptor[] = [];
    const tools = findCompressionTools(process.env.PATH);
    for (const [i, share] of [0.5, 0.3, 0.2].entries()) {
      // A real layer (so the pull can be unpacked): 4 MB files of random bytes, gzip level 1.
      const dir = join(work, `layer-${i}`);
      await mkdir(dir, { recursive: true });
      const size = Math.floor(total * share);
      for (let f = 0, left = size; left > 0; f++, left -= 4 * MB) await writeFile(join(dir, `f${f}.bin`), randomBytes(Math.min(left, 4 * MB)));
      const packed = packLayer(dir, { mode: 'tree', sourceDateEpoch: 0 });
      const info = await store.blobs.put(compressGzip(packed.stream, { tools, level: 1 }));
      const { diffId } = await packed.done;
      await rm(dir, { recursive: true, force: true });
      layers.push({ mediaType: MediaType.ociLayerGzip, digest: info.digest, size: info.size });
      config = addLayer(config, diffId);
    }
    const c = await store.blobs.putBytes(serializeDocument(config));
    const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, layers)));
    const manifest = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
    await store.refs.set('bench', manifest);
    await store.refs.set('docker.io/library/bench:latest', manifest);
    const bytes = layers.reduce((n, l) => n + l.size, 0);
    const rate = (ms: number): string => `${(bytes / MB / (ms / 1000)).toFixed(0)} MB/s`;
    process.stdout.write(`image: 3 layers, ${(bytes / MB).toFixed(0)} MB\n`);

    const regA = await startRegistry(await mkdtemp(join(work, 'reg-a-')));
    const regB = await startRegistry(await mkdtemp(join(work, 'reg-b-')));
    children.push(regA.child, regB.child);
    const client = new HttpRegistryClient();
    const dest = parseReference(`${regA.host}/bench/img:1`);

    const push = await measure(() => pushImage(client, store, manifest, dest), regA.child.pid);
    process.stdout.write(`tsbuild cold push:   ${push.ms.toFixed(0)} ms  ${rate(push.ms)}  peak +${push.peakMb.toFixed(0)} MB RSS; ${await cpuNote(push)}\n`);
    const skPush = await timeProcess('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${root}:bench`, `docker://${regB.host}/bench/img:1`]);
    process.stdout.write(`skopeo cold push:    ${skPush.toFixed(0)} ms  ${rate(skPush)}\n`);
    // The same cold push as users run it: the CLI process (bundle, plain Node; the row above runs
    // under tsx, which costs this process 2-3x the CPU) to a third, empty registry.
    const regC = await startRegistry(await mkdtemp(join(work, 'reg-c-')));
    children.push(regC.child);
    const cliPushCpu0 = await childrenCpuMs();
    const regCpu0 = await processCpuMs(regC.child.pid);
    const cliPush0 = await timeProcess(...cliCommand(args, ['--root', root, 'push', '-q', 'bench', `${regC.host}/bench/img:1`]));
    process.stdout.write(`tsbuild push (CLI):  ${cliPush0.toFixed(0)} ms  ${rate(cliPush0)}  (cold, the CLI process, start-up included); CPU ${((await childrenCpuMs()) - cliPushCpu0).toFixed(0)} ms (registry ${((await processCpuMs(regC.child.pid)) - regCpu0).toFixed(0)} ms), load ${await loadNow()}\n`);
    regC.child.kill('SIGTERM');

    const dst = await openStore(join(work, 'dst'));
    const pull = await measure(() => pullImage(client, dst, dest, { platform: PLATFORM }), regA.child.pid);
    process.stdout.write(`tsbuild cold pull:   ${pull.ms.toFixed(0)} ms  ${rate(pull.ms)}  peak +${pull.peakMb.toFixed(0)} MB RSS (download + verify + store); ${await cpuNote(pull)}\n`);
    const unpack = await measure(async () => {
      for (const l of layers) await applyLayer(decompress(await dst.blobs.open(l.digest), { tools }), join(work, 'rootfs'));
    });
    await rm(join(work, 'rootfs'), { recursive: true, force: true });
    process.stdout.write(`tsbuild unpack:      ${unpack.ms.toFixed(0)} ms  ${rate(unpack.ms)}  CPU ${unpack.cpuMs.toFixed(0)} ms  peak +${unpack.peakMb.toFixed(0)} MB RSS, load ${await loadNow()}\n`);
    process.stdout.write(`tsbuild pull+unpack: ${(pull.ms + unpack.ms).toFixed(0)} ms  ${rate(pull.ms + unpack.ms)}\n`);
    // What `tsbuild pull` does since it unpacks: download teed into gunzip + the safe extractor, every
    // layer committed as its snapshot (the hook the CLI gives), as a bundled driver and as the CLI process.
    // The driver runs bundled in plain Node (bench/drivers/pull.ts): this process runs under tsx, which
    // made the same pull take 1.3-1.4x the CPU (its GCs), so in-process rows measured the loader.
    const driver = await bundleDriver('pull', work);
    const pullLayers = layers.map((descriptor, index) => ({ index, descriptor, diffId: config.rootfs.diff_ids[index] as Digest }));
    const reference = `${regA.host}/bench/img:1`;
    const realPull = await runDriver(driver, { mode: 'pull', reference, root: join(work, 'real'), layers: pullLayers }, regA.child.pid);
    process.stdout.write(`tsbuild pull:        ${realPull.ms.toFixed(0)} ms  ${rate(realPull.ms)}  peak +${realPull.peakMb.toFixed(0)} MB RSS (download + unpack into snapshots, overlapped; bundled driver); ${await cpuNote(realPull)}\n`);
    // The same work in two phases (blobs first, then each layer into its snapshot from the store):
    // what the overlap is to beat, like for like (the unpack row above has no snapshots or diffID check).
    const twoPhase = await runDriver(driver, { mode: 'two-phase', reference, root: join(work, 'two'), layers: pullLayers }, regA.child.pid);
    process.stdout.write(`pull, then unpack:   ${twoPhase.ms.toFixed(0)} ms  ${rate(twoPhase.ms)}  peak +${twoPhase.peakMb.toFixed(0)} MB RSS (the same two phases one after the other; bundled driver); ${await cpuNote(twoPhase)}\n`);
    await rm(join(work, 'two'), { recursive: true, force: true });
    const cliRoot = join(work, 'real-cli');
    const cliCpu0 = await childrenCpuMs();
    const cliReal = await timeProcess(...cliCommand(args, ['--root', cliRoot, 'pull', '-q', `${regA.host}/bench/img:1`]));
    process.stdout.write(`tsbuild pull (CLI):  ${cliReal.toFixed(0)} ms  ${rate(cliReal)}  (the CLI process, start-up included; CPU ${((await childrenCpuMs()) - cliCpu0).toFixed(0)} ms), load ${await loadNow()}\n`);
    await rm(join(work, 'real'), { recursive: true, force: true });
    await rm(cliRoot, { recursive: true, force: true });
    const skPull = await timeProcess('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${regA.host}/bench/img:1`, `oci:${join(work, 'sk-layout')}:img`]);
    process.stdout.write(`skopeo cold pull:    ${skPull.toFixed(0)} ms  ${rate(skPull)}  (download only)\n`);

    const noopPush = await measure(() => pushImage(client, store, manifest, dest));
    const noopPull = await measure(() => pullImage(client, dst, dest, { platform: PLATFORM }));
    process.stdout.write(`tsbuild no-op push:  ${noopPush.ms.toFixed(1)} ms (in-process)\ntsbuild no-op pull:  ${noopPull.ms.toFixed(1)} ms (in-process)\n`);
    // The CLI as users run it: bin/tsbuild.js starts the esbuild bundle (`npm run build` first).
    // Start-up dominates these rows: each is the median of --runs=N processes (default 10).
    const cliPush = await medianProcess(runs, ...cliCommand(args, ['--root', root, 'push', '-q', 'bench', `${regA.host}/bench/img:1`]));
    const cliPull = await medianProcess(runs, ...cliCommand(args, ['--root', join(work, 'dst'), 'pull', '-q', `${regA.host}/bench/img:1`]));
    const version = await medianProcess(runs, ...cliCommand(args, ['--version']));
    const nodeStart = await medianProcess(runs, process.execPath, ['-e', '0']);
    const skNoop = await medianProcess(runs, 'skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${root}:bench`, `docker://${regB.host}/bench/img:1`]);
    const skNoopPull = await medianProcess(runs, 'skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${regA.host}/bench/img:1`, `oci:${join(work, 'sk-layout')}:img`]);
    const load = (await readFile('/proc/loadavg', 'utf8').catch(() => '? ? ?')).split(' ').slice(0, 3).join(' ');
    process.stdout.write(`tsbuild no-op push:  ${cliPush.toFixed(0)} ms (CLI process, bundle, median of ${runs}; --version takes ${version.toFixed(0)} ms, node -e 0 ${nodeStart.toFixed(0)} ms; load ${load})\n`);
    process.stdout.write(`tsbuild no-op pull:  ${cliPull.toFixed(0)} ms (CLI process, bundle, median of ${runs})\n`);
    process.stdout.write(`skopeo no-op push:   ${skNoop.toFixed(0)} ms (median of ${runs})\nskopeo no-op pull:   ${skNoopPull.toFixed(0)} ms (median of ${runs})\n`);

    const mount = await measure(() => pushImage(client, store, manifest, parseReference(`${regA.host}/other/img:1`)));
    process.stdout.write(`tsbuild mount push:  ${mount.ms.toFixed(0)} ms (${mount.value.mounted} mounted, ${mount.value.uploaded} uploaded)\n`);
    await client.close();
  } finally {
    for (const c of children) c.kill('SIGTERM');
    if (!args.includes('--keep')) await rm(work, { recursive: true, force: true });
  }
}
