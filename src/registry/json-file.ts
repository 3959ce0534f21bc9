import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Writes `value` as JSON to `path` atomically (tmp file in the same directory, fsync, rename). */
export async function writeJsonAtomic(path: string, value: unknown, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(JSON.stringify(value));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
