import type { ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxImage } from './base-image.js';
import { waitForNoProcessMentioning } from './containers.js';
import { tempDir } from './tmp.js';

/** The unprivileged user scripts/setup.sh creates, with sub-id ranges 200000:65536. */
export const ROOTLESS_USER = 'tsbuild-test';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** What a CLI child process produced (`code` is null when a signal ended it). */
export interface UserCliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link cliAsUser}. */
export interface UserCliOptions {
  /** Working directory of the CLI; the repository when absent. */
  readonly cwd?: string;
  /** Variables added to the otherwise empty environment (after PATH, HOME, TMPDIR, XDG_RUNTIME_DIR). */
  readonly env?: Readonly<Record<string, string>>;
  /** Text fed to stdin (ended either way). */
  readonly stdin?: string;
}

/**
 * Why rootless tests cannot run here, or undefined: they need root (to switch users), the user
 * {@link ROOTLESS_USER}, its /etc/subuid range and newuidmap. `notRootWhy` replaces the first reason.
 */
export function rootlessMissing(notRootWhy = 'rootless tests switch to an unprivileged user and need root to do so'): string | undefined {
  if (process.getuid?.() !== 0) return notRootWhy;
  try {
    execFileSync('id', ['-u', ROOTLESS_USER], { stdio: 'ignore' });
  } catch {
    return `user ${ROOTLESS_USER} missing (scripts/setup.sh creates it)`;
  }
  if (!existsSync('/etc/subuid') || !readFileSync('/etc/subuid', 'utf8').includes(`${ROOTLESS_USER}:`)) return `no /etc/subuid range for ${ROOTLESS_USER} (scripts/setup.sh adds it)`;
  if (!existsSync('/usr/bin/newuidmap')) return 'newuidmap missing (apt-get install uidmap)';
  return undefined;
}

/**
 * Runs the real CLI (src/cli/main.ts under tsx) as {@link ROOTLESS_USER} in a child process with
 * `--root root args...`, an empty environment but PATH and its HOME, TMPDIR (`home/tmp`) and
 * XDG_RUNTIME_DIR (`home/run`) under `home`, and collects its output.
 */
export function cliAsUser(home: string, root: string, args: readonly string[], options: UserCliOptions = {}): Promise<UserCliResult> {
  const env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
  return new Promise((resolve, reject) => {
    const p = spawn('runuser', ['-u', ROOTLESS_USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, `TMPDIR=${home}/tmp`, `XDG_RUNTIME_DIR=${home}/run`, ...env,
      process.execPath, '--import', join(REPO, 'node_modules/tsx/dist/loader.mjs'), join(REPO, 'src/cli/main.ts'), '--root', root, ...args],
    { cwd: options.cwd ?? REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(options.stdin ?? '');
  });
}

/**
 * A store with busybox under `<tmp>/home/store`, owned by {@link ROOTLESS_USER} (home with tmp/
 * and run/), for CLI calls as that user; every container of it is force-removed, and its processes
 * waited for, when the test ends.
 */
export async function rootlessBusyboxStore(t: ExecutionContext, prefix: string): Promise<{ dir: string; home: string; root: string }> {
  const dir = await tempDir(t, prefix);
  await chmod(dir, 0o755);
  const home = join(dir, 'home');
  const root = join(home, 'store');
  for (const d of [home, join(home, 'tmp'), join(home, 'run')]) await mkdir(d, { recursive: true });
  await makeBusyboxImage(dir, root);
  execFileSync('chown', ['-R', `${ROOTLESS_USER}:${ROOTLESS_USER}`, home]);
  t.teardown(async () => {
    const ids = (await cliAsUser(home, root, ['ps', '-aq'])).stdout.split('\n').filter((s) => s !== '');
    if (ids.length > 0) await cliAsUser(home, root, ['rm', '-f', ...ids]);
    await waitForNoProcessMentioning(root);
  });
  return { dir, home, root };
}
