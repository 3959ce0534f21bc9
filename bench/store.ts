/**
 * Store and layer throughput, run by `npm run bench -- store`:
 *  1. unpack: a generated 3-layer image (~520 MB raw, ~340 MB gzip: incompressible, text and
 *     many-small-files layers) is unpacked from our store into a directory by tsbuild (store blob
 *     -> gunzip -> applyLayer; bench/drivers/unpack.ts bundled, in plain Node as the CLI runs) and
 *     by `umoci unpack` of the same image, in the same run;
 *     then save of that image to a docker archive and load of it into an empty store;
 *  2. pack: layer tar + sha256 (packLayer, no compression) of a 320 MB directory of 20,000 files.
 * Each measured step runs in a child process so its peak RSS is its own.
 * Flags: --keep (keep the work directory), --dir=PATH (work directory; default under /var/tmp;
 * /dev/shm takes the disk out of the measurement), --only=unpack|pack, --scale=F (sizes times F, for a
 * quick smoke run), --drop-caches (drop the page cache before each round, where permitted: cold reads).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MediaType, type Descriptor, type Digest } from '../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../src/image/index.js';
import { compressGzip, findCompressionTools, packLayer } from '../src/layer/index.js';
import { loadArchive, openStore, resolveImage, saveArchive } from '../src/store/index.js';
import { bundleDriver } from './drivers/bundle.js';

const SELF = fileURLToPath(import.meta.url);
const REPO = fileURLToPath(new URL('../', import.meta.url));
const MB = 1e6;
const IMAGE = 'docker.io/library/bench-unpack:latest';

/** Deterministic pseudo-random English-like text (compresses about 3:1 with gzip). */
function makeText(bytes: number, seed: number): Buffer {
  const words = ['the', 'store', 'layer', 'image', 'container', 'registry', 'digest', 'manifest', 'build', 'cache', 'overlay',
    'snapshot', 'config', 'history', 'platform', 'index', 'blob', 'tar', 'stream', 'hash', 'of', 'and', 'to', 'a', 'in', 'is'];
  const out = Buffer.alloc(bytes);
  let x = seed >>> 0;
  let i = 0;
  while (i < bytes) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const w = words[x % words.length] as string;
    const n = out.write(x % 17 === 0 ? `${w}${x % 1000}.\n` : `${w} `, i);
    i += n;
    if (n === 0) break;
  }
  return out;
}

async function writeTree(dir: string, files: number, sizeOf: (i: number) => number, content: (i: number, size: number) => Buffer): Promise<number> {
  let total = 0;
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${Math.floor(i / 200)}`);
    if (i % 200 === 0) await mkdir(sub, { recursive: true });
    const size = sizeOf(i);
    await writeFile(join(sub, `f${i}.dat`), content(i, size));
    total += size;
  }
  return total;
}

/** Packs `dir` into a gzip layer blob in the store; returns its descriptor and diffID. */
async function storeLayer(root: string, dir: string): Promise<{ layer: Descriptor; diffId: Digest; raw: number }> {
  const store = await openStore(root);
  const packed = packLayer(dir, { mode: 'tree', sourceDateEpoch: 0 });
  const gz = compressGzip(packed.stream, { tools: findCompressionTools(process.env.PATH) });
  const info = await store.blobs.put(gz);
  const r = await packed.done;
  return { layer: { mediaType: MediaType.ociLayerGzip, digest: info.digest, size: info.size }, diffId: r.diffId, raw: r.size };
}

async function generateImage(work: string, root: string, scale: number): Promise<{ raw: number; gz: number }> {
  const n = (count: number): number => Math.max(1, Math.round(count * scale));
  const src = join(work, 'src');
  const layers: { layer: Descriptor; diffId: Digest; raw: number }[] = [];
  // 1: incompressible, a few big files (220 MB).
  await writeTree(join(src, 'l1'), n(11), () => 20 * MB, () => randomBytes(20 * MB));
  // 2: text (180 MB).
  await writeTree(join(src, 'l2'), n(18), () => 10 * MB, (i) => makeText(10 * MB, i + 1));
  // 3: many small files (30,000 files, ~120 MB, half random half text).
  await writeTree(join(src, 'l3'), n(30_000), (i) => 1000 + ((i * 7919) % 7000), (i, size) => (i % 2 === 0 ? randomBytes(size) : makeText(size, i)));
  for (const l of ['l1', 'l2', 'l3']) {
    layers.push(await storeLayer(root, join(src, l)));
    await rm(join(src, l), { recursive: true, force: true });
  }
  const store = await openStore(root);
  let config = createEmptyConfig({ os: 'linux', architecture: 'amd64' }, '2024-01-01T00:00:00Z');
  for (const l of layers) config = addLayer(config, l.diffId, { created_by: 'bench' });
  config = { ...config, config: { Cmd: ['/bin/sh'] } };
  const c = await store.blobs.putBytes(serializeDocument(config));
  const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, layers.map((l) => l.layer))));
  await store.refs.set(IMAGE, { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size });
  return { raw: layers.reduce((n, l) => n + l.raw, 0), gz: layers.reduce((n, l) => n + l.layer.size, 0) };
}

/**
 * This process's peak RSS (VmHWM). Not getrusage(): Linux keeps ru_maxrss across fork and exec,
 * so a child would report at least the size of the benchmark process that spawned it.
 */
async function peakRssKb(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0);
}

/** Child: save the bench image from `root` to `file` (docker format). Prints JSON {ms, maxRssKb}. */
async function childSave(root: string, file: string): Promise<void> {
  const store = await openStore(root);
  const image = await resolveImage(store, IMAGE);
  const t0 = performance.now();
  const out = createWriteStream(file);
  await saveArchive(store, [{ descriptor: image.descriptor, names: [IMAGE] }], out, { format: 'docker' });
  const ms = performance.now() - t0;
  process.stdout.write(`${JSON.stringify({ ms, maxRssKb: await peakRssKb() })}\n`);
}

/** Child: load `file` into the store at `root`. Prints JSON {ms, maxRssKb}. */
async function childLoad(file: string, root: string): Promise<void> {
  const store = await openStore(root);
  const t0 = performance.now();
  await loadArchive(store, createReadStream(file), file);
  const ms = performance.now() - t0;
  process.stdout.write(`${JSON.stringify({ ms, maxRssKb: await peakRssKb() })}\n`);
}

/** Child: tar + sha256 of `dir` without compression. Prints JSON {ms, bytes, diffId, maxRssKb}. */
async function childPack(dir: string): Promise<void> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const packed = packLayer(dir, { mode: 'tree' });
  await pipeline(packed.stream, createWriteStream('/dev/null'));
  const r = await packed.done;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  process.stdout.write(`${JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000, sysMs: cpu.system / 1000, bytes: r.size, diffId: r.diffId, maxRssKb: await peakRssKb() })}\n`);
}

/** Runs a child of this file under tsx (`args`: mode and its arguments), or the bundled script `driver` with `args`. */
function runChild(args: string[], driver?: string): Promise<{ ms: number; maxRssKb: number; bytes?: number; cpuMs?: number; sysMs?: number }> {
  return new Promise((resolve, reject) => {
    const argv = driver === undefined ? ['--import', 'tsx', SELF, '--child', ...args] : [driver, ...args];
    const p = spawn(process.execPath, argv, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim()) as { ms: number; maxRssKb: number }) : reject(new Error(`child ${args[0]} exited ${code}`))));
  });
}

/** Runs a command under /usr/bin/time -f, returning wall ms and peak RSS (KB). */
function timeCommand(cmd: string, args: string[]): Promise<{ ms: number; maxRssKb: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn('/usr/bin/time', ['-f', '%M', cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) return reject(new Error(`${cmd} exited ${code}: ${err.slice(-500)}`));
      resolve({ ms, maxRssKb: Number(err.trim().split('\n').at(-1)) });
    });
  });
}

/**
 * Writes dirty data back (sync) and, with `drop` (flag --drop-caches: cold reads from disk), drops the
 * page cache when the kernel lets us (not in every container). Returns whether the caches were dropped.
 */
async function dropCaches(drop: boolean): Promise<boolean> {
  await new Promise((resolve) => spawn('sync').on('close', resolve));
  if (!drop) return false;
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/**
 * Memory state that explains run-to-run differences: free memory, page cache, dirty pages, and the
 * bytes the guest has handed back to the hypervisor (free page reporting: such memory is backed
 * again only when touched, at a cost that shows up as system time of whoever touches it).
 */
async function describeMemory(): Promise<string> {
  const info = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const mb = (key: string): string => `${(Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(info)?.[1] ?? 0) / 1024).toFixed(0)}`;
  const reported = await readFile('/sys/module/page_reporting/parameters/reported_kib', 'utf8').catch(() => undefined);
  return `free ${mb('MemFree')} MB, cached ${mb('Cached')} MB, dirty ${mb('Dirty')} MB`
    + `${reported === undefined ? '' : `, reported to the host so far ${(Number(reported) / 1024).toFixed(0)} MB`}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`;
}

/** The benchmark entry point (see the file comment). */
export async function run(args: string[]): Promise<void> {
  const base = args.find((a) => a.startsWith('--dir='))?.slice(6) ?? '/var/tmp';
  await mkdir(base, { recursive: true });
  const work = await mkdtemp(join(base, 'tsbuild-bench-store-'));
  try {
    const only = args.find((a) => a.startsWith('--only='))?.slice(7);
    const root = join(work, 'root');
    const scale = Number(args.find((a) => a.startsWith('--scale='))?.slice(8) ?? '1');
    const drop = args.includes('--drop-caches');
    if (only !== 'pack') await benchUnpack(work, root, scale, args.includes('--keep'), drop);
    if (only !== 'unpack') await benchPack(work, scale, drop);
  } finally {
    if (!args.includes('--keep')) await rm(work, { recursive: true, force: true });
    else process.stdout.write(`kept ${work}\n`);
  }
}

async function benchUnpack(work: string, root: string, scale: number, keep: boolean, drop: boolean): Promise<void> {
  process.stdout.write('generating the 3-layer image...\n');
  const t0 = performance.now();
  const size = await generateImage(work, root, scale);
  process.stdout.write(`image: ${(size.raw / MB).toFixed(0)} MB raw, ${(size.gz / MB).toFixed(0)} MB gzip (generated in ${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);

  const driver = await bundleDriver('unpack', work);
  for (let round = 1; round <= 2; round++) {
    const dropped = await dropCaches(drop);
    process.stdout.write(`round ${round}: ${dropped ? 'page cache dropped' : 'page cache kept'}; ${await describeMemory()}\n`);
    const ours = await runChild([root, join(work, `ours-${round}`)], driver);
    await dropCaches(drop);
    const umoci = await timeCommand('umoci', ['unpack', '--image', `${root}:${IMAGE}`, join(work, `umoci-${round}`)]).catch((err: Error) => {
      process.stdout.write(`umoci: ${err.message}\n`);
      return undefined;
    });
    process.stdout.write(`unpack round ${round}: tsbuild ${(ours.ms / 1000).toFixed(2)} s = ${(size.gz / MB / (ours.ms / 1000)).toFixed(0)} MB/s of gzip input `
      + `(${(size.raw / MB / (ours.ms / 1000)).toFixed(0)} MB/s raw), CPU ${((ours.cpuMs ?? 0) / 1000).toFixed(2)} s (system ${((ours.sysMs ?? 0) / 1000).toFixed(2)} s), peak RSS ${(ours.maxRssKb / 1024).toFixed(0)} MB`
      + `${umoci === undefined ? '' : `; umoci ${(umoci.ms / 1000).toFixed(2)} s, peak RSS ${(umoci.maxRssKb / 1024).toFixed(0)} MB`}\n`);
  }
  // Removed only now, not between rounds: round 2 used to start right after deleting round 1's and
  // umoci's trees (1.1 GB, 60,000 files; ext4 here is mounted with `discard`) and took about 5x the
  // CPU of round 1, mostly system time, and umoci's second round was slower too. With the deletes moved
  // here and the page cache dropped before each round, the two rounds measure alike.
  for (let round = 1; round <= 2; round++) {
    await rm(join(work, `ours-${round}`), { recursive: true, force: true });
    await rm(join(work, `umoci-${round}`), { recursive: true, force: true });
  }
  const archive = join(work, 'image.tar');
  const saved = await runChild(['save', root, archive]);
  const loaded = await runChild(['load', archive, join(work, 'root2')]);
  process.stdout.write(`save: ${(saved.ms / 1000).toFixed(2)} s (${(size.gz / MB / (saved.ms / 1000)).toFixed(0)} MB/s), peak RSS ${(saved.maxRssKb / 1024).toFixed(0)} MB; `
    + `load: ${(loaded.ms / 1000).toFixed(2)} s (${(size.gz / MB / (loaded.ms / 1000)).toFixed(0)} MB/s), peak RSS ${(loaded.maxRssKb / 1024).toFixed(0)} MB\n`);
  await rm(archive, { force: true });
  await rm(join(work, 'root2'), { recursive: true, force: true });
  if (!keep) await rm(root, { recursive: true, force: true });
}

async function benchPack(work: string, scale: number, drop: boolean): Promise<void> {
  const files = Math.max(1, Math.round(20_000 * scale));
  process.stdout.write(`generating ${files} files (${(320 * scale).toFixed(0)} MB)...\n`);
  const tree = join(work, 'tree');
  const total = await writeTree(tree, files, (i) => 8000 + ((i * 7919) % 16000), (i, s) => (i % 3 === 0 ? makeText(s, i) : randomBytes(s)));
  for (let round = 1; round <= 3; round++) {
    const dropped = await dropCaches(drop);
    process.stdout.write(`round ${round}: ${dropped ? 'page cache dropped' : 'page cache kept'}; ${await describeMemory()}\n`);
    const r = await runChild(['pack', tree]);
    process.stdout.write(`pack round ${round}: ${(total / MB).toFixed(0)} MB in ${files} files -> tar ${((r.bytes ?? 0) / MB).toFixed(0)} MB + sha256 in ${(r.ms / 1000).toFixed(2)} s `
      + `= ${((r.bytes ?? 0) / MB / (r.ms / 1000)).toFixed(0)} MB/s, CPU ${((r.cpuMs ?? 0) / 1000).toFixed(2)} s (system ${((r.sysMs ?? 0) / 1000).toFixed(2)} s), peak RSS ${(r.maxRssKb / 1024).toFixed(0)} MB\n`);
  }
  const tar = await timeCommand('sh', ['-c', `tar -C ${tree} -cf - . | sha256sum >/dev/null`]);
  process.stdout.write(`reference: GNU tar | sha256sum of the same tree: ${(tar.ms / 1000).toFixed(2)} s\n`);
  await rm(tree, { recursive: true, force: true });
}

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url && process.argv[2] === '--child') {
  const [mode, a, b] = process.argv.slice(3);
  if (mode === 'pack') await childPack(a as string);
  else if (mode === 'save') await childSave(a as string, b as string);
  else if (mode === 'load') await childLoad(a as string, b as string);
  else throw new Error(`unknown child mode ${String(mode)}`);
}
