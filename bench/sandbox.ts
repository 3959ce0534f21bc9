/**
 * Sandbox start-up cost: median wall time of `/bin/true` in a fresh sandbox (all namespaces,
 * busybox rootfs on overlay, cgroup with limits) against `unshare ... chroot` and `runc run`
 * of the same rootfs, measured in the same run from an already running Node process.
 * Flags: --iterations=N (default 40). Needs root.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandbox } from '../src/sandbox/sandbox.js';
import { createRunSpec, toOciConfig, type RunSpec } from '../src/sandbox/spec.js';
import { makeBusyboxRootfs } from '../test/helpers/rootfs.js';

const LAUNCHER = fileURLToPath(new URL('../build/tsbuild-launcher', import.meta.url));

function exec(cmd: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? -1));
  });
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** One measured case: `prepare` runs untimed before each timed `once`. */
interface BenchCase {
  readonly name: string;
  readonly once: (i: number) => Promise<void>;
  readonly prepare?: (i: number) => Promise<void>;
}

/**
 * Times every case `n` times after 3 warm-ups, interleaved (case A, B, C, A, B, C, ...) so a
 * busy machine slows every case alike; returns the times per case in milliseconds.
 */
async function measure(n: number, cases: readonly BenchCase[]): Promise<number[][]> {
  const times = cases.map(() => [] as number[]);
  for (let i = -3; i < n; i++) {
    for (const [k, c] of cases.entries()) {
      await c.prepare?.(i);
      const t0 = performance.now();
      await c.once(i);
      if (i >= 0) times[k]?.push(performance.now() - t0);
    }
  }
  return times;
}

/** Runs the benchmark and prints medians in milliseconds. */
export async function run(args: string[]): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stdout.write('sandbox bench: needs root (compares with unshare and runc)\n');
    return;
  }
  const n = Number(/^--iterations=(\d+)$/.exec(args.find((a) => a.startsWith('--iterations=')) ?? '')?.[1] ?? 40);
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-bench-sandbox-'));
  try {
    const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
    const sandbox = new Sandbox({ launcherPath: LAUNCHER, stateDir: join(dir, 'state'), host: { uid: 0, gid: 0, user: 'root' }, ownerPid: process.pid });
    const resources = { memory: { limit: 256 * 1024 * 1024 }, cpu: { shares: 512 }, pids: { limit: 512 } };
    const layer = (i: number): { upperdir: string; workdir: string } => ({ upperdir: join(dir, `upper-${i}`), workdir: join(dir, `work-${i}`) });
    const prepareLayer = async (i: number): Promise<void> => {
      await mkdir(layer(i).upperdir);
      await mkdir(layer(i).workdir);
    };
    const overlaySpec = (i: number, withLimits: boolean): RunSpec => createRunSpec({
      args: ['/bin/true'],
      root: { overlay: { lowerdirs: [rootfs], ...layer(i) } },
      ...(withLimits ? { resources } : {}),
    });
    const expectZero = (code: number, what: string): void => {
      if (code !== 0) throw new Error(`${what} exited ${code}`);
    };

    const bundle = join(dir, 'bundle');
    await mkdir(bundle);
    // Without CAP_SYS_RESOURCE (some VMs) runc cannot raise nofile above our hard limit: clamp as our launcher does.
    const hard = Number(/^Max open files\s+\S+\s+(\d+)/m.exec(await readFile('/proc/self/limits', 'utf8'))?.[1] ?? 1048576);
    const nofile = Math.min(1048576, hard);
    const plain = createRunSpec({ args: ['/bin/true'], root: { path: rootfs }, resources });
    const runcSpec: RunSpec = { ...plain, process: { ...plain.process, rlimits: [{ type: 'RLIMIT_NOFILE', soft: nofile, hard: nofile }] } };
    await writeFile(join(bundle, 'config.json'), JSON.stringify(toOciConfig(runcSpec, { rootPath: rootfs })));
    const runcRoot = join(dir, 'runc-root');
    const haveRunc = (await exec('runc', ['--version']).catch(() => -1)) === 0;
    if (!haveRunc) process.stdout.write('runc not found: skipped\n');

    const cases: BenchCase[] = [
      {
        name: 'tsbuild sandbox (overlay, cgroup limits)',
        prepare: (i) => prepareLayer(i + 1000),
        once: async (i) => expectZero((await sandbox.run(overlaySpec(i + 1000, true), { stdout: 'ignore', stderr: 'inherit' })).exitCode, 'sandbox'),
      },
      {
        name: 'tsbuild sandbox (overlay, no cgroup)',
        prepare: (i) => prepareLayer(i + 2000),
        once: async (i) => expectZero((await sandbox.run(overlaySpec(i + 2000, false), { stdout: 'ignore', stderr: 'inherit' })).exitCode, 'sandbox'),
      },
      {
        name: 'tsbuild sandbox (directory root, no cgroup)',
        once: async () => expectZero((await sandbox.run(createRunSpec({ args: ['/bin/true'], root: { path: rootfs } }), { stdout: 'ignore', stderr: 'inherit' })).exitCode, 'sandbox'),
      },
      {
        name: 'spawn /bin/true (no isolation, baseline)',
        once: async () => expectZero(await exec('/bin/true', []), 'true'),
      },
      {
        name: 'unshare -m -u -i -p -n --fork chroot',
        once: async () => expectZero(await exec('unshare', ['-m', '-u', '-i', '-p', '-n', '--fork', 'chroot', rootfs, '/bin/true']), 'unshare'),
      },
      ...(haveRunc
        ? [{
            name: 'runc run (directory root, cgroup limits)',
            once: async (i: number) => expectZero(await exec('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `tsbuild-bench-${process.pid}-${i + 3}`]), 'runc'),
          }]
        : []),
    ];
    const times = await measure(n, cases);
    const results = cases.map((c, k) => [c.name, times[k] ?? []] as const);

    const base = median(results.find(([name]) => name.startsWith('unshare'))?.[1] ?? [0]);
    process.stdout.write(`median wall time of /bin/true over ${n} runs (ms), from a running Node process:\n`);
    for (const [name, times] of results) {
      const m = median(times);
      process.stdout.write(`  ${name.padEnd(46)} ${m.toFixed(1).padStart(7)}   (+${(m - base).toFixed(1)} vs unshare; min ${Math.min(...times).toFixed(1)}, max ${Math.max(...times).toFixed(1)})\n`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
