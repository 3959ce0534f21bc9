import { spawn } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectGarbage, openStore } from '../../src/store/index.js';
import { cli } from '../cli/run-cli.js';
import { activeSnapshots, build, buildMissing, makeFixture, readImage, stepsOf, type BuildFixture } from './build-helpers.js';
import { testSerialIf } from '../helpers/capability.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const missing = await buildMissing();
const RUNS = 12;
const DOCKERFILE = `FROM busybox\n${Array.from({ length: RUNS }, (_, i) => `RUN echo ${i} > /f${i}\n`).join('')}`;
const ITERATIONS = 8;

/** When to kill the build: once a tmp/ entry with this prefix of the build's pid shows up (a commit or a removal in flight), or after a delay. */
type KillPlan = { readonly tmpPrefix: 'gone' | 'snap'; readonly nth: number } | { readonly afterMs: number };

/** Spawns `tsbuild build` (src under tsx) and SIGKILLs it per `plan` if it still runs; resolves with how it ended. */
function buildAndKill(f: BuildFixture, plan: KillPlan): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', join(REPO, 'node_modules/tsx/dist/loader.mjs'), join(REPO, 'src/cli/main.ts'), '--root', f.root, 'build', '-q', '.'], {
      cwd: f.context, env: { ...process.env, ...f.env }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    p.stderr?.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString('utf8')).slice(-2000);
    });
    let timer: NodeJS.Timeout | undefined;
    let poll: NodeJS.Timeout | undefined;
    if ('afterMs' in plan) {
      timer = setTimeout(() => p.kill('SIGKILL'), plan.afterMs);
    } else {
      const seen = new Set<string>();
      poll = setInterval(() => {
        readdir(join(f.root, 'tmp')).then((names) => {
          for (const n of names) if (n.startsWith(`${plan.tmpPrefix}-${p.pid}-`)) seen.add(n);
          if (seen.size >= plan.nth) p.kill('SIGKILL');
        }, () => undefined);
      }, 2);
    }
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      if (poll !== undefined) clearInterval(poll);
      resolve({ code, signal, stderr });
    });
  });
}

testSerialIf(missing, 'tsbuild build: the store stays consistent and the next build works when builds of many RUN steps are SIGKILLed mid-commit', async (t) => {
  t.timeout(600_000);
  const f = await makeFixture(t);
  await writeFile(join(f.context, 'Dockerfile'), DOCKERFILE);
  let killed = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    // Alternately while a commit's scratch dir is removed in the background, while a snapshot dir is private in tmp/, and at any moment.
    const plan: KillPlan = i % 3 === 0 ? { tmpPrefix: 'gone', nth: 1 + (i % 5) } : i % 3 === 1 ? { tmpPrefix: 'snap', nth: 2 + (i % 7) } : { afterMs: 500 + Math.floor(Math.random() * 3000) };
    const r = await buildAndKill(f, plan);
    if (r.signal === 'SIGKILL') killed++;
    else t.is(r.code, 0, r.stderr);
    const fsck = await cli(['--root', f.root, 'fsck', '--json']);
    t.is(fsck.code, 0, `iteration ${i}, kill ${JSON.stringify(plan)}: ${fsck.stdout}${fsck.stderr}`);
    t.true((JSON.parse(fsck.stdout) as { consistent: boolean }).consistent, fsck.stdout);
  }
  t.log(`${killed} of ${ITERATIONS} builds were killed before they ended`);
  t.true(killed >= 2, `only ${killed} of ${ITERATIONS} builds were killed before they ended`);
  // The next build works: it removes the killed builds' active snapshots and gives every RUN's file.
  const done = await build(f, DOCKERFILE);
  t.is(done.code, 0, done.stderr);
  t.deepEqual(await activeSnapshots(f.root), []);
  const again = await build(f, DOCKERFILE, ['-t', 'killed:1']);
  t.is(again.code, 0, again.stderr);
  t.deepEqual(stepsOf(again.events).started.filter((n) => n.includes('RUN')), [], 'a rebuild is fully cached');
  const img = await readImage(f.root, 'killed:1');
  t.is(img.manifest.layers.length, 1 + RUNS);
  // What the killed builds left in tmp/ is garbage of dead processes: gc removes all of it.
  await collectGarbage(await openStore(f.root));
  t.deepEqual(await readdir(join(f.root, 'tmp')), []);
});
