/**
 * Layer unpack for a non-root caller outside any user namespace (e.g. `tsbuild run` as a user): the
 * layer is applied by a child process that runs as root of a user namespace mapping the caller to 0
 * and its first /etc/subuid and /etc/subgid ranges to 1.. (`unshare --map-auto --map-root-user`, the
 * same mapping a rootless build and its sandboxes use), so a file of uid 1000 is stored as host uid
 * <subuid start>+999 exactly as a rootless build would have stored it. A rootless build itself runs
 * in such a namespace already and unpacks in-process.
 */
import { execFile, spawn, type ExecFileOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { TsbuildError, type ErrorCode } from '../core/index.js';
import type { ApplyOptions } from '../layer/index.js';

/** execFile as a promise, made on first use (at module load it would load node:child_process for every command that imports the snapshotter). */
const runFile = (file: string, args: readonly string[], options: ExecFileOptions = {}): Promise<unknown> => promisify(execFile)(file, [...args], options);
const UNSHARE = ['--map-auto', '--map-root-user', '--'];

/** Whether `unshare --map-auto --map-root-user` works for this user (sub-id ranges, newuidmap, user namespaces). */
export async function canUnpackAsSubIds(): Promise<boolean> {
  if (process.getuid?.() === 0) return false;
  try {
    await runFile('unshare', [...UNSHARE, 'true']);
    return true;
  } catch {
    return false;
  }
}

/** The child entry next to this file: unpack-child.js compiled, unpack-child.ts under tsx. */
function findChildEntry(): string {
  const js = fileURLToPath(new URL('./unpack-child.js', import.meta.url));
  return existsSync(js) ? js : fileURLToPath(new URL('./unpack-child.ts', import.meta.url));
}

/**
 * Applies the uncompressed layer `tar` into `dest` (see applyLayer) in a child process that is root of
 * a user namespace over the caller's sub-ids, owners restored. The stream is consumed to its end (destroyed on failure).
 * Layer errors keep their `LAYER_*` code; a failing child is SNAPSHOT_IO; an abort kills the child.
 */
export async function applyLayerAsSubIds(tar: Readable, dest: string, options: Pick<ApplyOptions, 'whiteouts' | 'overlayXattrPrefix'>, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  const child = spawn('unshare', [...UNSHARE, process.execPath, ...process.execArgv, findChildEntry(), dest, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { if (err.length < 8192) err += c.toString(); });
  child.stdin.on('error', () => undefined);
  tar.on('error', () => child.kill('SIGKILL'));
  tar.pipe(child.stdin);
  const abort = (): void => { child.kill('SIGKILL'); };
  signal?.addEventListener('abort', abort, { once: true });
  let done = false;
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', (e) => reject(new TsbuildError('SNAPSHOT_IO', `cannot start unshare(1) to unpack into ${dest}: ${e.message}`, { cause: e })));
      child.once('close', (c) => resolve(c));
    });
    tar.unpipe(child.stdin);
    if (signal?.aborted === true) throw new TsbuildError('SNAPSHOT_ABORTED', `unpacking into ${dest} was aborted`);
    const result = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { ok: boolean; code?: string; message?: string; hint?: string })[0];
    if (result?.ok === true && code === 0) {
      done = true;
      tar.resume(); // the hash of the caller covers every byte, also padding after the end-of-archive blocks
      return;
    }
    if (result !== undefined && result.ok === false) {
      throw new TsbuildError((result.code ?? 'SNAPSHOT_IO') as ErrorCode, result.message ?? 'unpack failed', result.hint === undefined ? {} : { hint: result.hint });
    }
    throw new TsbuildError('SNAPSHOT_IO', `unpacking into ${dest} in a user namespace failed (exit ${String(code)}): ${err.trim().split('\n').slice(-3).join(' ')}`);
  } finally {
    signal?.removeEventListener('abort', abort);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (!done) tar.destroy(); // as applyLayer does on failure: the caller's source is released
  }
}
