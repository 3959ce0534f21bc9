// node:path for the CLI bundle: scripts/bundle.mjs resolves every `node:path` import of src/ to this module,
// which is node:path with join replaced by fastJoin (the same results, see fast-join.ts). It exports what
// src/ imports from node:path (the bundle fails on a name missing here).
export { basename, delimiter, dirname, extname, format, isAbsolute, normalize, parse, posix, relative, resolve, sep, toNamespacedPath, win32 } from 'node:path';
export { fastJoin as join } from './fast-join.js';
