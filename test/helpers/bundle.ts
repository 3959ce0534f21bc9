import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Running what users run: the CLI's esbuild bundle (scripts/bundle.mjs), built by a test file from
 * the current sources next to dist/cli/main.js, in a plain Node process.
 */
export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const DIST_CLI = join(REPO, 'dist', 'cli');
/** Why bundle tests cannot run, or undefined. */
export const distMissing = existsSync(join(DIST_CLI, 'app.js')) ? undefined : 'dist/ is not built (run npm run build)';

export interface NodeResult { readonly code: number; readonly stdout: string; readonly stderr: string }

/** Runs `node ARGS` (cwd: the repository unless given; env: the test's plus `env`). */
export function runNode(args: readonly string[], options: { readonly cwd?: string; readonly env?: Record<string, string> } = {}): Promise<NodeResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: options.cwd ?? REPO, env: { ...process.env, ...options.env }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

/**
 * One bundle of the current sources per test file: `get()` builds it on first use (its entry,
 * `dist/cli/<prefix>-<random>.js`); `remove()`, for the file's `test.after.always`, deletes the
 * entries and the bundle again.
 */
export function testBundle(prefix: string): { get(): Promise<string>; remove(): Promise<void> } {
  let bundled: Promise<string> | undefined;
  return {
    get() {
      bundled ??= (async () => {
        const file = join(DIST_CLI, `${prefix}-${randomBytes(4).toString('hex')}.js`);
        const r = await runNode([join(REPO, 'scripts', 'bundle.mjs'), '--outfile', file]);
        if (r.code !== 0) throw new Error(`scripts/bundle.mjs failed:\n${r.stderr}${r.stdout}`);
        return file;
      })();
      return bundled;
    },
    async remove() {
      const file = bundled === undefined ? undefined : await bundled.catch(() => undefined);
      if (file === undefined) return;
      const base = basename(file, '.js');
      // The entries (<base>.js, <base>.cjs) and their bundle (<base>.bundle.cjs).
      for (const name of await readdir(DIST_CLI)) if (name === `${base}.js` || name === `${base}.cjs` || name.startsWith(`${base}.bundle.`)) await rm(join(DIST_CLI, name), { force: true });
    },
  };
}

/**
 * Runs `node [-r recorder] ENTRY ARGS`; resolves to its result, the Node built-ins the process loaded and whether
 * it made process.stdout (Node makes it on first use).
 */
export async function runRecordingBuiltins(entry: string, dir: string, args: readonly string[], env: Record<string, string>): Promise<NodeResult & { builtins: string[]; stdoutMade: boolean }> {
  const loaded = join(dir, `loaded-${randomBytes(4).toString('hex')}.json`);
  const preload = join(dir, `record-builtins-${randomBytes(4).toString('hex')}.cjs`);
  await writeFile(preload, [
    "let stdoutMade = false; const d = Object.getOwnPropertyDescriptor(process, 'stdout');",
    "Object.defineProperty(process, 'stdout', { configurable: true, enumerable: d.enumerable, get() { stdoutMade = true; return d.get.call(this); } });",
    `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(loaded)}, JSON.stringify({ modules: process.moduleLoadList, stdoutMade })));`,
    '',
  ].join('\n'));
  const r = await runNode(['-r', preload, entry, ...args], { env });
  const rec = existsSync(loaded) ? (JSON.parse(readFileSync(loaded, 'utf8')) as { modules: string[]; stdoutMade: boolean }) : { modules: [], stdoutMade: false };
  return { ...r, builtins: rec.modules.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length)), stdoutMade: rec.stdoutMade };
}
