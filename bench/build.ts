/**
 * Build speed against buildah, run by `npm run bench -- build`. Both tools build the same
 * Dockerfiles in the same run, from the same local busybox base (made by test/helpers/base-image.ts
 * in a tsbuild store, which is an OCI layout; buildah pulls it from there with `oci:`):
 *  - tsbuild: `bin/tsbuild.js --root STORE build -q -t NAME CTX`, executed as users run it (through its
 *    shebang; a fresh process each time, so Node start-up is included; run `npm run build` first);
 *  - buildah: `buildah --root R --runroot RR --storage-driver overlay bud --layers --runtime
 *    /usr/sbin/runc --network host -q -t NAME CTX`.
 * Workloads: W0 FROM + LABEL; W1 12 steps (4 RUN, 2 COPY, ENV, WORKDIR, LABEL, EXPOSE, CMD) cold and
 * warm; W2 20 x `RUN echo $i > /f$i` cold, and the same with 1 RUN (the difference / 19 is the cost
 * of one trivial RUN, wall and CPU, without the one-time unpack of the base); W3 COPY of a generated context (20,000 small files and
 * three 60-100 MB files, ~320 MB) cold, warm, one file touched, one file's content changed.
 * "cold" is a fresh store holding only the base image (W1 and W2: the previous one is moved aside, not removed,
 * see retireTree); "warm" rebuilds unchanged ("changed" runs as
 * often as "cold": its COPY always runs again). Runs of both tools
 * are interleaved so a busy machine slows both alike. Wall times are medians; peak RSS is the
 * process tree's largest (`/usr/bin/time -f %M`). Needs root, buildah and runc.
 * Flags: --quick (1 run per case, W3 at a tenth of its size), --iterations=N (runs per case;
 * default 3 cold, 5 warm), --only=w0,w1,w2,w3, --driver=overlay|vfs (buildah's storage driver),
 * --dir=PATH (parent of the work directory; default /var/tmp), --keep (keep the work directory),
 * --no-topdir (the work directory without ext4's "top directory" flag, see run()).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, cp, mkdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxImage } from '../test/helpers/base-image.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const TSBUILD = join(REPO, 'bin', 'tsbuild.js');
const BASE = 'docker.io/library/busybox:latest';
const MB = 1e6;

/** One timed run: wall milliseconds, CPU milliseconds (user + system) and the peak RSS of the process tree in kB. */
interface Sample {
  readonly ms: number;
  readonly cpuMs: number;
  readonly rssKb: number;
}

/** Runs a command; resolves with its exit code and the tail of its output (for error messages). */
function exec(cmd: string, args: readonly string[], cwd?: string, env?: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (c: Buffer): void => {
      out = (out + c.toString('utf8')).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

/** Runs a command that must succeed. */
async function must(cmd: string, args: readonly string[], cwd?: string, env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await exec(cmd, args, cwd, env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.out}`);
  return r.out;
}

/** Runs a command under `/usr/bin/time -f '%M %U %S'` and times it from here; it must succeed. */
async function timed(cmd: string, args: readonly string[], rssFile: string, cwd?: string, env?: NodeJS.ProcessEnv): Promise<Sample> {
  const t0 = performance.now();
  await must('/usr/bin/time', ['-f', '%M %U %S', '-o', rssFile, cmd, ...args], cwd, env);
  const ms = performance.now() - t0;
  const [rss, user, sys] = ((await readFile(rssFile, 'utf8')).trim().split('\n').pop() ?? '').split(' ').map(Number);
  return { ms, cpuMs: ((user ?? 0) + (sys ?? 0)) * 1000, rssKb: rss ?? 0 };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Mount points at or below `dir` (deepest first). */
async function mountsBelow(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').map((l) => l.split(' ')[4]).filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/** Removes a directory after unmounting what is mounted below it (buildah's overlay driver mounts its home). */
async function removeTree(dir: string): Promise<void> {
  for (const m of await mountsBelow(dir)) await exec('umount', ['-l', m]);
  if ((await mountsBelow(dir)).length > 0) throw new Error(`mounts left below ${dir}`);
  await rm(dir, { recursive: true, force: true });
}

/**
 * Moves a store aside into `<work>/retired/` (after unmounting what is below it) instead of removing it: it goes
 * with the work directory at the end. On ext4 without a journal (this machine's /var/tmp) every inode allocation
 * skips, one buffer lookup each, the free inodes of its block group deleted in the last 60-360 s (the kernel's
 * recently_deleted()), and a store removed just before a cold build sits in the block groups the next store
 * allocates in: the per-RUN cost then grew with each iteration (W2, 9 iterations: 11.6 -> 28.9 ms of CPU per
 * RUN for tsbuild) with what the bench itself had deleted, not with what was built.
 */
let retired = 0;
async function retireTree(work: string, dir: string): Promise<void> {
  for (const m of await mountsBelow(dir)) await exec('umount', ['-l', m]);
  if ((await mountsBelow(dir)).length > 0) throw new Error(`mounts left below ${dir}`);
  if (!existsSync(dir)) return;
  await mkdir(join(work, 'retired'), { recursive: true });
  await rename(dir, join(work, 'retired', `${retired++}`));
}

/** A builder under test: `reset` makes an empty store with the base (untimed), `build` is timed. */
interface Tool {
  readonly name: string;
  /** `retire`: the previous store is moved aside (retireTree), not removed (W1 and W2). */
  reset(retire?: boolean): Promise<void>;
  build(context: string, tag: string): Promise<Sample>;
}

/** tsbuild with a store copied from the template holding only the base image. */
function tsbuildTool(work: string, template: string): Tool {
  const root = join(work, 'tsbuild-store');
  const env = { ...process.env, TSBUILD_RUN_DIR: join(work, 'tsbuild-run') };
  return {
    name: 'tsbuild',
    async reset(retire = false) {
      await (retire ? retireTree(work, root) : removeTree(root));
      await cp(template, root, { recursive: true });
    },
    build: (context, tag) => timed(TSBUILD, ['--root', root, 'build', '-q', '-t', tag, context], join(work, 'rss'), context, env),
  };
}

/** buildah with its own storage; the base is pulled from the template tsbuild store (an OCI layout). */
function buildahTool(work: string, template: string, driver: string): Tool {
  const global = ['--root', join(work, 'buildah-root'), '--runroot', join(work, 'buildah-runroot'), '--storage-driver', driver];
  return {
    name: 'buildah',
    async reset(retire = false) {
      for (const d of ['buildah-root', 'buildah-runroot']) await (retire ? retireTree(work, join(work, d)) : removeTree(join(work, d)));
      const id = (await must('buildah', [...global, 'pull', '-q', `oci:${template}:${BASE}`])).trim().split('\n').pop() ?? '';
      await must('buildah', [...global, 'tag', id, BASE]);
    },
    build: (context, tag) => timed('buildah', [...global, 'bud', '--layers', '--runtime', '/usr/sbin/runc', '--network', 'host', '-q', '-t', tag, context],
      join(work, 'rss'), context),
  };
}

/** One measured case of a workload. */
interface CaseResult {
  readonly workload: string;
  readonly name: string;
  readonly samples: Map<string, Sample[]>;
}

/** Writes the Dockerfile (and files) of a context. */
async function makeContext(dir: string, dockerfile: string, files: Readonly<Record<string, string>> = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

const W0 = `FROM ${BASE}\nLABEL bench=w0\n`;
const W1 = `FROM ${BASE}
RUN echo one > /one
ENV APP=bench
WORKDIR /app
COPY a.txt /app/
RUN echo two > /app/two
COPY dir /app/dir
RUN cat /app/a.txt /app/dir/b.txt > /app/ab
LABEL bench=w1
EXPOSE 8080
RUN ls /app > /app/list
CMD ["cat", "/app/list"]
`;
const W2_RUNS = 20;
const W2 = `FROM ${BASE}\n${Array.from({ length: W2_RUNS }, (_, i) => `RUN echo ${i + 1} > /f${i + 1}\n`).join('')}`;
const W2_ONE = `FROM ${BASE}\nRUN echo 1 > /f1\n`;
const W3 = `FROM ${BASE}\nCOPY data /data\n`;

/** The W3 context: `count` small files (200 B - 7.8 kB) in 100 directories and three big files. */
async function makeW3(dir: string, scale: number): Promise<{ bytes: number; files: number; small: (i: number) => string }> {
  await makeContext(dir, W3);
  const count = Math.max(10, Math.round(20_000 * scale));
  const small = (i: number): string => join(dir, 'data', `d${i % 100}`, `f${i}.txt`);
  let bytes = 0;
  for (let d = 0; d < 100; d++) await mkdir(join(dir, 'data', `d${d}`), { recursive: true });
  for (let i = 0; i < count; i++) {
    const size = 200 + ((i * 7919) % 7600);
    await writeFile(small(i), randomBytes(Math.ceil(size / 2)).toString('hex').slice(0, size));
    bytes += size;
  }
  for (const [k, mb] of [60, 80, 100].entries()) {
    const size = Math.round(mb * MB * scale);
    await writeFile(join(dir, 'data', `big${k}.bin`), randomBytes(size));
    bytes += size;
  }
  return { bytes, files: count + 3, small };
}

/** Runs `once` for every tool `n` times, interleaved (A, B, A, B, ...), after `before(i)` (untimed). */
async function measure(tools: readonly Tool[], n: number, once: (tool: Tool, i: number) => Promise<Sample>, before?: (i: number) => Promise<void>): Promise<Map<string, Sample[]>> {
  const out = new Map<string, Sample[]>(tools.map((t) => [t.name, []]));
  for (let i = 0; i < n; i++) {
    await before?.(i);
    for (const tool of tools) out.get(tool.name)?.push(await once(tool, i));
  }
  return out;
}

/** Cold builds: a fresh store before each; the last leaves its store for the warm cases. */
function cold(tools: readonly Tool[], n: number, context: string, tag: string, retire = false): Promise<Map<string, Sample[]>> {
  return measure(tools, n, async (tool) => {
    await tool.reset(retire);
    return tool.build(context, tag);
  });
}

/** Warm builds: the same build again (the store holds the previous build). */
function warm(tools: readonly Tool[], n: number, context: string, tag: string, before?: (i: number) => Promise<void>): Promise<Map<string, Sample[]>> {
  return measure(tools, n, (tool) => tool.build(context, tag), before);
}

function fmtS(ms: number): string {
  return `${(ms / 1000).toFixed(3)} s`;
}

/** Prints one line per case: medians per tool, buildah/tsbuild ratio, peak RSS. */
function report(results: readonly CaseResult[], toolNames: readonly string[]): void {
  const head = ['case'.padEnd(26), ...toolNames.map((n) => `${n} median`.padStart(15)), 'ratio'.padStart(7), ...toolNames.map((n) => `${n} RSS`.padStart(13))];
  process.stdout.write(`${head.join(' ')}\n`);
  for (const r of results) {
    const meds = toolNames.map((n) => median((r.samples.get(n) ?? []).map((s) => s.ms)));
    const rss = toolNames.map((n) => Math.max(...(r.samples.get(n) ?? []).map((s) => s.rssKb)) / 1024);
    const ratio = meds[0] !== undefined && meds[1] !== undefined && meds[0] > 0 ? `${(meds[1] / meds[0]).toFixed(1)}x` : '-';
    process.stdout.write(`${[`${r.workload} ${r.name}`.padEnd(26), ...meds.map((m) => fmtS(m).padStart(15)), ratio.padStart(7), ...rss.map((m) => `${m.toFixed(0)} MB`.padStart(13))].join(' ')}\n`);
  }
}

function flag(args: readonly string[], name: string): string | undefined {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a?.slice(name.length + 3);
}

function load(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ');
}

/** Runs the benchmark and prints medians, ratios and peak RSS. */
export async function run(args: string[]): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stdout.write('build bench: needs root (build sandbox, buildah storage)\n');
    return;
  }
  for (const [cmd, why] of [['buildah', 'apt-get install buildah'], ['/usr/sbin/runc', 'apt-get install runc'], ['/usr/bin/time', 'apt-get install time']] as const) {
    if ((await exec(cmd, ['--version']).catch(() => ({ code: -1, out: '' }))).code !== 0) {
      process.stdout.write(`build bench: ${cmd} is missing (${why})\n`);
      return;
    }
  }
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js')) || !existsSync(join(REPO, 'build', 'tsbuild-launcher'))) {
    process.stdout.write('build bench: run "npm run build" first (the bench runs bin/tsbuild.js)\n');
    return;
  }
  const quick = args.includes('--quick');
  const iterations = Number(flag(args, 'iterations') ?? 0);
  const nCold = iterations > 0 ? iterations : quick ? 1 : 3;
  const nWarm = iterations > 0 ? iterations : quick ? 1 : 5;
  const scale = quick ? 0.1 : 1;
  const only = (flag(args, 'only') ?? 'w0,w1,w2,w3').split(',');
  const driver = flag(args, 'driver') ?? 'overlay';
  // Lower case: buildah names an image pulled from oci:PATH after PATH.
  const work = join(flag(args, 'dir') ?? '/var/tmp', `tsbuild-bench-build-${process.pid}-${randomBytes(4).toString('hex')}`);
  const t0 = performance.now();
  process.stdout.write(`load average at start: ${load()}\n`);
  try {
    await mkdir(work, { recursive: true });
    // ext4's Orlov allocator spreads the subdirectories of a directory marked "top" (chattr +T) over its block
    // groups: each tool's store then allocates apart from the inodes the other one just deleted (see retireTree).
    // Measured here (W1+W2, 3 iterations, load 3-6): tsbuild per trivial RUN 10.5-14.2 ms of CPU with it, 21-25
    // without; W1 cold 0.22-0.34 s with it, 0.83-0.92 s without. Not on other file systems (chattr fails: ignored).
    if (!args.includes('--no-topdir')) await exec('chattr', ['+T', work]).catch(() => undefined);
    const template = join(work, 'base-store');
    await makeBusyboxImage(await mkdirp(join(work, 'base')), template, BASE);
    const tools = [tsbuildTool(work, template), buildahTool(work, template, driver)];
    const names = tools.map((t) => t.name);
    const results: CaseResult[] = [];
    const add = (workload: string, name: string, samples: Map<string, Sample[]>): void => {
      results.push({ workload, name, samples });
      process.stdout.write(`  done ${workload} ${name} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
    };

    if (only.includes('w0')) {
      const ctx = await makeContext(join(work, 'w0'), W0);
      add('W0', 'cold', await cold(tools, nCold, ctx, 'bench-w0'));
      add('W0', 'warm', await warm(tools, nWarm, ctx, 'bench-w0'));
    }
    if (only.includes('w1')) {
      const ctx = await makeContext(join(work, 'w1'), W1, { 'a.txt': 'a\n', 'dir/b.txt': 'b\n', 'dir/sub/c.txt': 'c\n' });
      add('W1', 'cold', await cold(tools, nCold, ctx, 'bench-w1', true));
      add('W1', 'warm', await warm(tools, nWarm, ctx, 'bench-w1'));
    }
    if (only.includes('w2')) {
      const ctx = await makeContext(join(work, 'w2'), W2);
      add('W2', 'cold', await cold(tools, nCold, ctx, 'bench-w2', true));
      const one = await makeContext(join(work, 'w2-one'), W2_ONE);
      add('W2', '1 RUN cold', await cold(tools, nCold, one, 'bench-w2-one', true));
    }
    if (only.includes('w3')) {
      const ctx = join(work, 'w3');
      const g = await makeW3(ctx, scale);
      process.stdout.write(`  W3 context: ${g.files} files, ${(g.bytes / MB).toFixed(0)} MB\n`);
      add('W3', 'cold', await cold(tools, nCold, ctx, 'bench-w3'));
      add('W3', 'warm', await warm(tools, nWarm, ctx, 'bench-w3'));
      const later = new Date(Date.now() + 3_600_000);
      add('W3', 'one file touched', await warm(tools, nWarm, ctx, 'bench-w3', async (i) => {
        await utimes(g.small(i + 7), later, new Date(later.getTime() + i * 1000));
      }));
      add('W3', 'one file changed', await warm(tools, nCold, ctx, 'bench-w3', async (i) => {
        await appendFile(g.small(11), `changed ${i}\n`);
      }));
    }

    process.stdout.write(`\nmedian wall time per build (cold: ${nCold} runs, warm: ${nWarm} runs; a fresh process each), ratio = buildah / tsbuild; peak RSS = largest of the runs:\n`);
    report(results, names);
    const med = (w: string, c: string, tool: string, of: (x: Sample) => number = (x) => x.ms): number | undefined => {
      const s = results.find((r) => r.workload === w && r.name === c)?.samples.get(tool);
      return s === undefined ? undefined : median(s.map(of));
    };
    for (const tool of names) {
      const w2 = med('W2', 'cold', tool);
      const w2one = med('W2', '1 RUN cold', tool);
      const cpu = med('W2', 'cold', tool, (x) => x.cpuMs);
      const cpuOne = med('W2', '1 RUN cold', tool, (x) => x.cpuMs);
      if (w2 !== undefined && w2one !== undefined && cpu !== undefined && cpuOne !== undefined) {
        process.stdout.write(`per trivial RUN, ${tool}: ${((w2 - w2one) / (W2_RUNS - 1)).toFixed(1)} ms wall, ${((cpu - cpuOne) / (W2_RUNS - 1)).toFixed(1)} ms CPU ((W2 cold - W2 1 RUN cold) / ${W2_RUNS - 1}, medians)\n`);
      }
    }
    process.stdout.write(`buildah storage driver: ${driver}; load average at end: ${load()}; total ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  } finally {
    if (args.includes('--keep')) process.stdout.write(`kept ${work}\n`);
    else await removeTree(work);
  }
}

async function mkdirp(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}
