import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Sandbox } from '../../src/sandbox/sandbox.js';
import type { RunResult, SandboxStdio } from '../../src/sandbox/sandbox.js';
import type { RunSpec } from '../../src/sandbox/spec.js';

/** Repository root. */
export const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** The compiled launcher. */
export const LAUNCHER = join(REPO, 'build', 'tsbuild-launcher');

/** Builds the launcher when missing or older than its sources (atomic, safe in parallel). */
export function ensureLauncher(): string {
  const srcDir = join(REPO, 'src', 'sandbox', 'launcher');
  const newest = Math.max(...readdirSync(srcDir).map((f) => statSync(join(srcDir, f)).mtimeMs));
  if (!existsSync(LAUNCHER) || statSync(LAUNCHER).mtimeMs < newest) {
    execFileSync(process.execPath, [join(REPO, 'scripts', 'build-native.mjs')], { stdio: 'ignore' });
  }
  return LAUNCHER;
}

/** Why namespace tests cannot run here (not root), or undefined. */
export function notRoot(): string | undefined {
  return process.getuid?.() === 0 ? undefined : 'namespace tests need root (CI runs as root)';
}

/**
 * A Sandbox for the current (root) user with its state under `stateDir`. Its runs with piped output
 * (runCaptured) fork their launchers from a zygote, as a build's RUN steps do, so the isolation tests
 * check that path; runs with other stdio spawn theirs. The zygote ends with the test process.
 */
export function rootSandbox(stateDir: string, warnings: string[] = []): Sandbox {
  return new Sandbox({
    launcherPath: ensureLauncher(),
    stateDir,
    host: { uid: 0, gid: 0, user: 'root' },
    ownerPid: process.pid,
    onWarning: (m) => warnings.push(m),
    zygote: true,
  });
}

/** A Sandbox like {@link rootSandbox} without a launcher zygote: every launcher is spawned. */
export function spawningSandbox(stateDir: string): Sandbox {
  return new Sandbox({ launcherPath: ensureLauncher(), stateDir, host: { uid: 0, gid: 0, user: 'root' }, ownerPid: process.pid });
}

/** Output of one sandboxed run. */
export interface Captured extends RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `spec` with captured stdout/stderr. */
export async function runCaptured(sandbox: Sandbox, spec: RunSpec, signal?: AbortSignal, stdin?: SandboxStdio['stdin']): Promise<Captured> {
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks: Buffer[] = [];
  const errChunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  err.on('data', (c: Buffer) => errChunks.push(c));
  const result = await sandbox.run(spec, { stdout: out, stderr: err, ...(stdin === undefined ? {} : { stdin }) }, signal);
  return { ...result, stdout: Buffer.concat(chunks).toString('utf8'), stderr: Buffer.concat(errChunks).toString('utf8') };
}

/** Mount points of the host (this process's mount namespace) at or below any of `dirs`. */
export function mountsUnder(dirs: readonly string[]): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => dirs.some((d) => mp === d || mp.startsWith(`${d}/`)));
}

/** Registers a teardown asserting that nothing is mounted below `dirs` on the host after the test. */
export function assertNoLeftoverMounts(t: ExecutionContext, dirs: readonly string[]): void {
  t.teardown(() => {
    const left = mountsUnder(dirs);
    if (left.length > 0) throw new Error(`leftover mounts on the host: ${left.join(', ')}`);
  });
}
