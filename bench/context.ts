/**
 * Build-context throughput, run by `npm run bench -- context`: selectSources + checksumSources of
 * a generated context of 20,000 small files (1-7 KB) plus three large files (60, 80, 100 MB),
 * about 320 MB in all (the W3 workload of the build benchmark):
 *  - cold: no stat cache (every file read and hashed),
 *  - warm: the stat cache saved by the cold run (nothing read),
 *  - touched: one small file's mtime changed (only it is read again),
 *  - changed: one byte of the 100 MB file changed (only it is read again).
 * Each measurement runs in a fresh Node process (like a new build); the time is measured inside it
 * from before the walk to after the stat cache is saved, so Node start-up is excluded.
 * Flags: --dir=PATH (work directory, default under /var/tmp), --keep, --runs=N (median of N, default 3).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StatCache, checksumSources, selectSources } from '../src/context/index.js';

const SELF = fileURLToPath(import.meta.url);
const MB = 1e6;

interface Measure {
  readonly ms: number;
  /** CPU time (user + system) of the measured part: independent of other load on the machine. */
  readonly cpuMs: number;
  readonly entries: number;
  readonly filesRead: number;
  readonly bytesRead: number;
  readonly cacheHits: number;
  readonly rssMb: number;
  readonly digest: string;
}

/** Child side: one walk + checksum + save, printing a JSON measurement. */
async function measureOnce(ctx: string, cacheFile: string): Promise<Measure> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const cache = StatCache.load(cacheFile);
  const sel = selectSources(ctx, ['.']);
  const sums = await checksumSources(sel, { statCache: cache });
  cache.save();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(c0);
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000, ...sums.stats, rssMb: process.resourceUsage().maxRSS / 1024, digest: sums.digest };
}

function runChild(ctx: string, cacheFile: string): Promise<Measure> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--child', ctx, cacheFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`child exited ${code}`));
      else resolve(JSON.parse(out) as Measure);
    });
  });
}

async function generate(ctx: string): Promise<number> {
  let total = 0;
  const pool = randomBytes(1 << 16);
  for (let i = 0; i < 20_000; i++) {
    const dir = join(ctx, 'src', `d${Math.floor(i / 250)}`);
    if (i % 250 === 0) await mkdir(dir, { recursive: true });
    const size = 1000 + ((i * 7919) % 6000);
    const off = (i * 131) % (pool.length - size);
    await writeFile(join(dir, `f${i}.txt`), pool.subarray(off, off + size));
    total += size;
  }
  for (const [name, mb] of [['big60.bin', 60], ['big80.bin', 80], ['big100.bin', 100]] as const) {
    const fh = await open(join(ctx, name), 'w');
    const chunk = randomBytes(1 << 20);
    for (let done = 0; done < mb * MB; done += chunk.length) {
      const n = Math.min(chunk.length, mb * MB - done);
      await fh.write(chunk, 0, n);
    }
    await fh.close();
    total += mb * MB;
  }
  return total;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function line(name: string, all: Measure[]): string {
  const ms = all.map((x) => x.ms);
  const m = all[all.length - 1] as Measure;
  return `${name.padEnd(8)} wall median ${median(ms).toFixed(0).padStart(5)} ms (runs: ${ms.map((x) => x.toFixed(0)).join(', ')})  cpu median ${median(all.map((x) => x.cpuMs)).toFixed(0)} ms  entries ${m.entries}  read ${m.filesRead} files / ${(m.bytesRead / MB).toFixed(1)} MB  cache hits ${m.cacheHits}  peak RSS ${m.rssMb.toFixed(0)} MB\n`;
}

/** Runs the benchmark (see the file comment). */
export async function run(args: string[]): Promise<void> {
  const flag = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const runs = Number(flag('runs') ?? 3);
  const base = await mkdtemp(join(flag('dir') ?? '/var/tmp', 'tsbuild-bench-context-'));
  try {
    const ctx = join(base, 'ctx');
    const t0 = Date.now();
    const total = await generate(ctx);
    process.stdout.write(`generated ${(total / MB).toFixed(0)} MB in 20,003 files (${Date.now() - t0} ms); load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}\n`);
    process.stdout.write('W3 targets for the whole COPY step: cold <= 2000 ms, warm and touched <= 300 ms, changed <= 2000 ms\n');
    await new Promise((r) => setTimeout(r, 200)); // out of the stat cache's racy window
    const cold: Measure[] = [];
    for (let i = 0; i < runs; i++) cold.push(await runChild(ctx, join(base, `cold-${i}.json`)));
    process.stdout.write(line('cold', cold));
    const cacheFile = join(base, 'cold-0.json');
    const phase = async (name: string, before?: () => Promise<void>): Promise<void> => {
      const all: Measure[] = [];
      for (let i = 0; i < runs; i++) {
        if (before !== undefined) {
          await before();
          await new Promise((r) => setTimeout(r, 100));
        }
        all.push(await runChild(ctx, cacheFile));
      }
      process.stdout.write(line(name, all));
    };
    await phase('warm');
    let tick = 1_600_000_000;
    await phase('touched', () => utimes(join(ctx, 'src/d3/f777.txt'), tick, ++tick));
    await phase('changed', async () => {
      const fh = await open(join(ctx, 'big100.bin'), 'r+');
      await fh.write(randomBytes(1), 0, 1, 50_000_000);
      await fh.close();
    });
  } finally {
    if (args.includes('--keep')) process.stdout.write(`kept ${base}\n`);
    else await rm(base, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const m = await measureOnce(process.argv[3] as string, process.argv[4] as string);
  process.stdout.write(JSON.stringify(m));
}
