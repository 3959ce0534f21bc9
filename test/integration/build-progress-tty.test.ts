import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { testSerialIf } from '../helpers/capability.js';
import { REPO } from '../sandbox/sandbox-helpers.js';
import { buildMissing, makeFixture } from './build-helpers.js';

const run = promisify(execFile);
const missing = (await buildMissing()) ?? (existsSync('/usr/bin/script') ? undefined : 'script (util-linux) is not installed');
const TSX = join(REPO, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');

/** Runs `tsbuild build ARGS .` under a pseudo-terminal of 60 columns (util-linux script) and returns what the terminal received. */
async function buildOnTerminal(f: Awaited<ReturnType<typeof makeFixture>>, args: string): Promise<string> {
  const log = join(f.dir, 'typescript');
  const cmd = `stty cols 60 rows 24; exec ${process.execPath} --import ${TSX} ${join(REPO, 'src', 'cli', 'main.ts')} --root ${f.root} build ${args} .`;
  await run('script', ['-qfec', cmd, log], { cwd: f.context, env: { ...f.env, TERM: 'xterm' } as NodeJS.ProcessEnv, timeout: 120_000 }).catch(() => undefined);
  return readFile(log, 'utf8');
}

testSerialIf(missing, 'tty progress: a real build on a terminal shows CACHED markers, the miss reason and a FINISHED summary with only cursor-movement escapes', async (t) => {
  const f = await makeFixture(t, { 'app.txt': 'v1\n' });
  await writeFile(join(f.context, 'Dockerfile'), 'FROM busybox\nRUN echo one > /one\nCOPY app.txt /app/\nRUN echo built && cat /app/app.txt\n');
  await buildOnTerminal(f, '--progress=auto -t tty:1');
  await writeFile(join(f.context, 'app.txt'), 'v2\n');
  const out = await buildOnTerminal(f, '--progress=auto -t tty:2');
  t.regex(out, / => CACHED \[2\/4\] RUN echo one > \/one/);
  t.regex(out, / => \[3\/4\] COPY app\.txt \/app\/ \(file app\.txt changed\) +\d+\.\ds/);
  t.regex(out, /\[\+\] Building \d+\.\ds \(\d+\/\d+\) FINISHED: \d+ ran, 1 cached/);
  const escapes = new Set([...out.matchAll(/\x1b\[[0-9;?]*[A-Za-z]/g)].map((m) => m[0].replace(/\d+/, 'N')));
  t.deepEqual([...escapes].sort(), ['\x1b[J', '\x1b[K', '\x1b[NA'].sort(), 'only erase and cursor-up sequences');
  for (const line of out.split(/\r?\n/).filter((l) => !/^Script (started|done)/.test(l))) {
    const visible = line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split('\r').at(-1) ?? '';
    t.true(visible.length <= 60, `line wider than the terminal: ${visible}`);
  }
});
