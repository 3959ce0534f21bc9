import { access as accessCallback, rename as renameCallback } from 'node:fs';

// Thread-pool file operations as promises, through node:fs's callbacks. node:fs/promises costs ~1.2 ms of
// CPU to load (for its FileHandle it loads readline, the fs watchers and Dir), and a `run` needs only these
// few operations of it; code off that path keeps node:fs/promises. The results and errors are node:fs's.

/** fs.access: resolves when `path` allows `mode` (fs.constants). */
export function accessInPool(path: string, mode: number): Promise<void> {
  return new Promise((resolve, reject) => accessCallback(path, mode, (err) => (err === null ? resolve() : reject(err))));
}

/** fs.rename: resolves once `from` is `to`. */
export function renameInPool(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => renameCallback(from, to, (err) => (err === null ? resolve() : reject(err))));
}

