import { open, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { TsbuildError } from '../core/index.js';
import { randomHex } from '../sys/index.js';

/** Options of {@link acquireLock}. */
export interface LockOptions {
  /** Give up after this many milliseconds (default 60 s) with `STORE_LOCKED`. */
  readonly timeoutMs?: number;
  /** Abort waiting. */
  readonly signal?: AbortSignal;
  /** Our pid, written into the lock file (default `process.pid`). */
  readonly pid?: number;
}

/** A held lock; `release()` removes the lock file and is idempotent. */
export interface Lock {
  readonly path: string;
  release(): Promise<void>;
}

/** True when a process with this pid exists on this machine (EPERM counts as alive). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Parses `pid@host token`; undefined when the file is still being written (empty) or garbled. */
function parseOwner(text: string): { pid: number; host: string } | undefined {
  const m = /^(\d+)@(\S*) /.exec(text);
  return m === null ? undefined : { pid: Number(m[1]), host: m[2] as string };
}

/**
 * Takes an exclusive lock by creating `path` with O_EXCL and writing `pid@host token` into it.
 * A lock whose owner process (same host) no longer exists is stale and is broken. Waits with
 * short polls until `timeoutMs`; throws `STORE_LOCKED` on timeout, `STORE_IO` on other errors.
 */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<Lock> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const me = `${options.pid ?? process.pid}@${hostname()} ${randomHex(8)}\n`;
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  let emptySince: number | undefined;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const fh = await open(path, 'wx', 0o644);
      try {
        await fh.writeFile(me);
      } finally {
        await fh.close();
      }
      let released = false;
      return {
        path,
        async release() {
          if (released) return;
          released = true;
          // Only remove the file if it is still ours (it may have been broken as stale).
          const now = await readFile(path, 'utf8').catch(() => '');
          if (now === me) await unlink(path).catch(() => undefined);
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new TsbuildError('STORE_IO', `cannot create lock file ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      const owner = parseOwner(text);
      let stale = false;
      if (owner !== undefined) {
        emptySince = undefined;
        stale = owner.host === hostname() && !isAlive(owner.pid);
      } else {
        // A creator killed between create and write leaves an empty file: stale after 2 s.
        emptySince ??= Date.now();
        stale = Date.now() - emptySince > 2000;
      }
      if (stale) {
        // Move it aside atomically, then check that what we moved is what we judged stale;
        // if a live owner slipped in between, put it back (it is the only window of the scheme).
        const aside = `${path}.stale-${randomHex(6)}`;
        try {
          await rename(path, aside);
          const moved = await readFile(aside, 'utf8').catch(() => '');
          if (moved !== text) await rename(aside, path).catch(() => undefined);
          else await unlink(aside).catch(() => undefined);
        } catch {
          // Someone else broke it first.
        }
        continue;
      }
    }
    if (Date.now() > deadline) {
      throw new TsbuildError('STORE_LOCKED', `timed out after ${timeoutMs} ms waiting for the lock ${path}`, {
        hint: `held by ${text?.split(' ')[0] ?? 'another process'}; remove the file if that process is gone`,
      });
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
}

/** Runs `fn` while holding the lock at `path`; always releases it. */
export async function withLock<T>(path: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const lock = await acquireLock(path, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
