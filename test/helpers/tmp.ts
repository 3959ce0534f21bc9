import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Removes `dir` recursively. As non-root, a tree that `rm` cannot remove (files of the user's
 * sub-ids left by a rootless build's cache mounts or snapshots, directories without write
 * permission) is removed as root of a user namespace over the user's sub-ids, as the store does.
 */
async function removeTempDir(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch (err) {
    if (process.getuid?.() === 0) throw err;
    await run('unshare', ['--map-auto', '--map-root-user', '--', 'rm', '-rf', '--', dir]).catch((nsErr: unknown) => {
      throw new Error(`cannot remove ${dir}: ${(err as Error).message}; also not in a user namespace over the sub-ids: ${(nsErr as Error).message}`, { cause: err });
    });
  }
}

/** Creates a fresh temporary directory removed when the test ends (also on failure). */
export async function tempDir(t: ExecutionContext, prefix = 'tsbuild-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => removeTempDir(dir));
  return dir;
}
