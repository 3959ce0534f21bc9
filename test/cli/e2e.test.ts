import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { hasStackTrace } from './run-cli.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Spawns the real entry point (src/cli/main.ts through tsx) and collects its output. */
function runMain(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('tsbuild process: prints the version and exits 0 when run with --version', async (t) => {
  const r = await runMain(['--version']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `tsbuild version ${version}\n`);
});

test('tsbuild process: exits 125 with a hint and no stack trace when given a bad flag', async (t) => {
  const r = await runMain(['build', '--no-cach', '.']);
  t.is(r.code, 125);
  t.is(r.stdout, '');
  t.regex(r.stderr, /^CLI_BAD_FLAG: unknown flag --no-cach for "tsbuild build"\nhint: did you mean --no-cache\?\n$/);
  t.false(hasStackTrace(r.stderr), r.stderr);
});
