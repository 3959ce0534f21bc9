import { closeSync, openSync, readSync } from 'node:fs';

/**
 * `count` random bytes from the kernel's /dev/urandom, the source crypto.randomBytes draws from too, read
 * synchronously. For names and ids on paths that need nothing else of node:crypto: loading that module
 * costs ~3 ms (two dozen internal modules), which `tsbuild run` paid only for its container and sandbox ids.
 */
export function randomBuffer(count: number): Buffer {
  const buf = Buffer.alloc(count);
  const fd = openSync('/dev/urandom', 'r');
  try {
    let n = 0;
    while (n < count) n += readSync(fd, buf, n, count - n, null);
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** {@link randomBuffer} as lower-case hex (`count` bytes, 2 * `count` characters). */
export function randomHex(count: number): string {
  return randomBuffer(count).toString('hex');
}
