/**
 * CLI start-up, run by `npm run bench -- startup`. Needs a current build (`npm run build`): the CLI is
 * timed as users run it: bin/tsbuild.js (CommonJS) executed through its `#!/usr/bin/env -S ...` line, on
 * the bundle's entry dist/cli/main.cjs. Wall time (medians and minimums of N runs, interleaved) of `node -e 0` (Node alone, as
 * the environment has it and without NODE_EXTRA_CA_CERTS, which costs Node ~90 ms at start-up when it
 * names the system bundle; tsbuild's shebang defers it), `--version`, `images`, `ps`, a no-op
 * `build` of a fully cached Dockerfile and `run --rm busybox true` (root only), each also through the
 * unbundled tsc output (dist/cli/app.js) and through the bundle without its V8 code cache for
 * comparison. Targets: run <= 60 ms, cached build <= 120 ms.
 * Flags: --iterations=N (default 20), --no-unbundled (skip the comparison).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxImage } from '../test/helpers/base-image.js';
import { DEFERRED_CA_VAR, extraCaFile } from '../src/sys/index.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(REPO, 'bin', 'tsbuild.js');
const APP = join(REPO, 'dist', 'cli', 'app.js');

/** GNU time, for the CPU time (user + sys) of each run: on a busy machine it varies less than wall time. */
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

interface Sample { readonly wall: number; readonly cpu: number }

/** `command` is the executable and its arguments; `env` entries set to undefined are removed. */
function exec(command: readonly string[], cwd: string, cpuFile: string, env?: Record<string, string | undefined>): Promise<{ code: number; out: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const [cmd, argv] = GNU_TIME === undefined ? [command[0] as string, command.slice(1)] : [GNU_TIME, ['-f', '%U %S', '-o', cpuFile, ...command]];
    const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
    for (const [k, v] of Object.entries(childEnv)) if (v === undefined) delete childEnv[k];
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd, env: childEnv });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, ms: Number(process.hrtime.bigint() - start) / 1e6 }));
  });
}

async function must(command: readonly string[], cwd: string, cpuFile: string, env?: Record<string, string | undefined>): Promise<Sample> {
  const r = await exec(command, cwd, cpuFile, env);
  if (r.code !== 0) throw new Error(`${command.join(' ')} exited ${r.code}:\n${r.out}`);
  const cpu = GNU_TIME === undefined ? Number.NaN : (await readFile(cpuFile, 'utf8')).trim().split(/\s+/).reduce((sum, x) => sum + Number(x) * 1000, 0);
  return { wall: r.ms, cpu };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** An entry that runs the tsc output without the bundle (what bin/tsbuild.js ran before the bundle). */
const UNBUNDLED_ENTRY = `import { runCli } from ${JSON.stringify(APP)};
process.exitCode = await runCli(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd(), signal: new AbortController().signal });
`;

/** Runs the start-up benchmark; prints one line per case. */
export async function run(args: string[]): Promise<void> {
  const n = Number(args.find((a) => a.startsWith('--iterations='))?.slice(13) ?? 20);
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.cjs'))) {
    process.stdout.write('startup bench: no bundle in dist/cli (run npm run build first)\n');
    return;
  }
  const unbundled = !args.includes('--no-unbundled') && existsSync(APP);
  const work = await mkdtemp(join(tmpdir(), 'tsbuild-bench-startup-'));
  try {
    const root = join(work, 'store');
    const ctx = join(work, 'ctx');
    const unbundledEntry = join(work, 'unbundled.mjs');
    const cpuFile = join(work, 'cpu.txt');
    await writeFile(unbundledEntry, UNBUNDLED_ENTRY);
    const asRoot = process.getuid?.() === 0;
    const cases: { name: string; args: string[]; env?: Record<string, string | undefined> }[] = [
      { name: 'node -e 0 (Node alone)', args: ['-e', '0'] },
      { name: 'node -e 0, no NODE_EXTRA_CA_CERTS', args: ['-e', '0'], env: { NODE_EXTRA_CA_CERTS: undefined } },
      { name: '--version', args: ['--version'] },
      { name: 'images', args: ['--root', root, 'images'] },
      { name: 'ps', args: ['--root', root, 'ps'] },
    ];
    if (asRoot) {
      await makeBusyboxImage(work, root);
      await mkdir(ctx, { recursive: true });
      await writeFile(join(ctx, 'hello.txt'), 'hello\n');
      await writeFile(join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo built > /built\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n');
      await must([BIN, '--root', root, 'build', '-q', '-t', 'bench-cached', '.'], ctx, cpuFile);
      cases.push({ name: 'build (fully cached, -q)', args: ['--root', root, 'build', '-q', '-t', 'bench-cached', '.'] });
      cases.push({ name: 'run --rm busybox true', args: ['--root', root, 'run', '--rm', 'busybox', 'true'] });
    } else {
      process.stdout.write('startup bench: not root, so no build/run cases\n');
    }
    // The bundle with its V8 code cache (dist/cli/.code-cache, written by the first run of each
    // command), without one (TSBUILD_CODE_CACHE_DIR=""), and tsc's output unbundled.
    // The unbundled entry runs through `node`, so it is given the environment the shebang gives the bundle.
    const entries: { label: string; entry: string[]; env?: Record<string, string | undefined> }[] = [
      { label: 'bundle', entry: [BIN] },
      { label: 'no-cache', entry: [BIN], env: { TSBUILD_CODE_CACHE_DIR: '' } },
      ...(unbundled ? [{ label: 'unbundled', entry: [process.execPath, unbundledEntry], env: { NODE_EXTRA_CA_CERTS: undefined, [DEFERRED_CA_VAR]: extraCaFile(process.env) } }] : []),
    ];
    const times = new Map<string, Sample[]>();
    for (let i = 0; i < n; i++) {
      for (const c of cases) {
        for (const e of entries) {
          if (c.args[0] === '-e' && e.label !== 'bundle') continue;
          const command = c.args[0] === '-e' ? [process.execPath, ...c.args] : [...e.entry, ...c.args];
          const key = `${c.name}\0${e.label}`;
          const list = times.get(key) ?? [];
          list.push(await must(command, existsSync(ctx) ? ctx : work, cpuFile, { ...e.env, ...c.env }));
          times.set(key, list);
        }
      }
    }
    process.stdout.write(`ms, median of ${n} interleaved runs: wall (min) cpu=user+sys (node ${process.version}, load ${loadavg()[0]?.toFixed(1)}):\n`);
    for (const c of cases) {
      const cells = entries
        .filter((e) => c.args[0] !== '-e' || e.label === 'bundle')
        .map((e) => {
          const t = times.get(`${c.name}\0${e.label}`) ?? [];
          const wall = t.map((x) => x.wall);
          return `${e.label} ${median(wall).toFixed(0)} (${Math.min(...wall).toFixed(0)}) cpu ${median(t.map((x) => x.cpu)).toFixed(0)}`;
        });
      process.stdout.write(`  ${c.name.padEnd(34)} ${cells.join('   ')}\n`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
