import { accessSync, closeSync, constants, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type v8 from 'node:v8';
import type vm from 'node:vm';
import { ONE_TIME_WORK_EVENT } from './one-time-work.js';

// Runs the CLI bundle (one CommonJS file, scripts/bundle.mjs) with a V8 code cache: Node 20 has no
// module compile cache (22.1) and compiling the ~1.1 MB bundle costs more than loading it. One
// cache file per command (each holds the functions that command compiled), named by the bundle's
// content hash (V8 itself checks only the source's length), the Node version and the architecture.
// A missing, stale, corrupt or unwritable cache falls back to a plain compile, silently; a cache
// that was missing or rejected is written when the process exits (write, fsync and rename).

/** What `runBundle` needs to know about the bundle and the cache. */
export interface BundleRun {
  /** The bundle, a CommonJS file. */
  readonly file: string;
  /** A hash of the bundle's contents (scripts/bundle.mjs computes it): part of the cache's name; the file's first line is `// tsbuild-bundle-key KEY`. */
  readonly key: string;
  /** Where the cache files live; undefined: no cache. */
  readonly cacheDir: string | undefined;
  /** Which cache file of the bundle to use (the command's name). */
  readonly name: string;
}

/** What happened to the cache (for tests): used, or why not, and whether it was written at exit. */
export type CacheState = 'used' | 'missing' | 'corrupt' | 'rejected' | 'off' | 'other-bundle';

const MAGIC = 0x39765374; // 'tSv9' (the SHA-1 header of earlier versions was 'tSv8')
const HEADER = 8; // magic, payload length (u32 each, little endian)

// node:vm and node:v8 through require, when a bundle runs: the entry answers `--version` without them.
const requireHere = createRequire(import.meta.url);

/**
 * Runs `fn` with V8's own checksum of code caches on: V8 then writes a checksum into each cache it
 * makes and rejects a cache whose payload does not match it (release builds check neither by
 * default, and a damaged cache could crash or run wrong code). Off again afterwards: the flag is
 * part of the hash V8 keys code caches by, so left on it would make V8 reject Node's own cache of
 * its built-in modules (node:crypto: 2 -> 5 ms to load). The checksum costs ~0.1 ms for the 0.5 MB
 * cache of `run` and loading node:v8 ~0.6 ms (besides node:stream, which every command loads), where
 * the earlier check, node:crypto's SHA-1, cost ~0.75 ms plus ~2.2 ms to load node:crypto (which
 * `images` and `ps` no longer load at all: scripts/bundle.mjs requires built-ins on first use).
 */
function withCacheChecksums<T>(fn: () => T): T {
  const { setFlagsFromString } = requireHere('node:v8') as typeof v8;
  setFlagsFromString('--verify-snapshot-checksum');
  try {
    return fn();
  } finally {
    setFlagsFromString('--no-verify-snapshot-checksum');
  }
}

/** The cache file of `run`: `<key>-<node version>-<arch>-<name>.v8`. */
export function cacheFileOf(run: BundleRun): string | undefined {
  if (run.cacheDir === undefined || !/^[\w.-]+$/.test(run.key) || !/^[\w-]+$/.test(run.name)) return undefined;
  return join(run.cacheDir, `${run.key}-${process.version}-${process.arch}-${run.name}.v8`);
}

/** The cache's payload, or undefined when the file is missing, unreadable or not whole (V8 checks the payload's checksum). */
function readCache(file: string): { data: Buffer | undefined; state: CacheState } {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch {
    return { data: undefined, state: 'missing' };
  }
  const data = raw.length >= HEADER ? raw.subarray(HEADER) : undefined;
  if (data === undefined || raw.readUInt32LE(0) !== MAGIC || raw.readUInt32LE(4) !== data.length) {
    return { data: undefined, state: 'corrupt' };
  }
  return { data, state: 'used' };
}

/** Whether the cache can be written (creating its directory): else the cache is not even made. */
function writable(file: string): boolean {
  try {
    mkdirSync(dirname(file), { recursive: true });
    accessSync(dirname(file), constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes the cache by write, fsync and rename: a reader never sees half a file, not even after a
 * crash (without the fsync a crash can leave the renamed name on a file whose data never reached
 * the disk); errors are ignored.
 */
function writeCache(file: string, data: Buffer): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    const header = Buffer.alloc(HEADER);
    header.writeUInt32LE(MAGIC, 0);
    header.writeUInt32LE(data.length, 4);
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, header);
      for (let at = 0; at < data.length;) at += writeSync(fd, data, at);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // nothing to clean up
    }
  }
}

/**
 * The head of the function a bundle's CommonJS body runs in (Node's module wrapper); the body ends with `\n})`.
 * scripts/bundle.mjs writes both into each bundle, after its key line.
 */
export const BUNDLE_WRAPPER = '(function (exports, require, module, __filename, __dirname) {';

/**
 * Compiles and runs the CommonJS file `run.file` (as Node's require would, with its own require,
 * module, __filename and __dirname) with the code cache; returns its module.exports and what
 * happened to the cache. Errors of the bundle itself propagate.
 */
export function runBundle(run: BundleRun): { exports: unknown; cache: CacheState } {
  // latin1: the bundle is ASCII (scripts/bundle.mjs), read into a one-byte string without decoding.
  const source = readFileSync(run.file, 'latin1');
  // The bundle script writes the module wrapper into the file (after the key line): compiled as it is. A file
  // without it (a plain CommonJS body) is wrapped here, which copies its text into a second string (0.44 MB for `run`).
  const wrapped = source.startsWith(BUNDLE_WRAPPER, source.indexOf('\n') + 1);
  // Another bundle than the entry was built with (a build writing the two files right now): no cache.
  const ours = source.startsWith(`// tsbuild-bundle-key ${run.key}\n`);
  const cacheFile = ours ? cacheFileOf(run) : undefined;
  const read = cacheFile === undefined ? { data: undefined, state: ours ? 'off' as const : 'other-bundle' as const } : readCache(cacheFile);
  // node:vm on first use: the entry answers `--version` without it.
  const { Script } = requireHere('node:vm') as typeof vm;
  const compile = (): vm.Script => new Script(wrapped ? source : `${BUNDLE_WRAPPER}${source}\n})`, {
    filename: run.file,
    // No importModuleDynamically: the bundle has no import() (scripts/bundle.mjs makes the import()
    // of Node built-ins a require()); USE_MAIN_CONTEXT_DEFAULT_LOADER would print an experimental warning.
    ...(read.data === undefined ? {} : { cachedData: read.data }),
  });
  // With a cache: V8 checks its checksum (a cache is made with one, below).
  const script = read.data === undefined ? compile() : withCacheChecksums(compile);
  const cache: CacheState = read.data !== undefined && script.cachedDataRejected === true ? 'rejected' : read.state;
  if (cacheFile !== undefined && cache !== 'used') {
    let oneTimeWork = false;
    process.once(ONE_TIME_WORK_EVENT, () => {
      oneTimeWork = true;
    });
    // At exit the script's functions this command ran are compiled, so the cache holds them too. Only after a
    // success: a failed command ran its error path, and a cache of that would leave every later successful
    // run compiling the rest (a cache is written once, by the first start that found none). Nor after one-time work.
    process.once('exit', (code) => {
      if (code !== 0 || oneTimeWork) return;
      let data: Buffer;
      try {
        if (!writable(cacheFile)) return;
        data = withCacheChecksums(() => script.createCachedData());
      } catch {
        return;
      }
      writeCache(cacheFile, data);
    });
  }
  const module = { exports: {} as unknown };
  const fn = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: { exports: unknown }, filename: string, dirname: string) => void;
  fn.call(module.exports, module.exports, createRequire(run.file), module, run.file, dirname(run.file));
  return { exports: module.exports, cache };
}

/**
 * Where the cache lives by default: `.code-cache` next to the bundle when that directory can be
 * written, else the user's cache directory ($XDG_CACHE_HOME or ~/.cache, `tsbuild/code-cache`): a
 * package installed by root and run by a user. Undefined without either.
 */
export function defaultCacheDir(bundleDir: string, env: NodeJS.ProcessEnv): string | undefined {
  const own = join(bundleDir, '.code-cache');
  try {
    accessSync(own, constants.W_OK);
    return own;
  } catch {
    try {
      accessSync(bundleDir, constants.W_OK);
      return own;
    } catch {
      // not ours to write
    }
  }
  const base = env.XDG_CACHE_HOME !== undefined && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : env.HOME !== undefined && env.HOME.startsWith('/') ? join(env.HOME, '.cache') : undefined;
  return base === undefined ? undefined : join(base, 'tsbuild', 'code-cache');
}

/**
 * The variant of `run`'s cache for a command line (appended to the cache name): a foreground, a detached
 * (`-d`) and a terminal (`-i`/`-t`) run go through different code, and a cache holds only the functions the
 * run that made it compiled (the rest compile at every start: a cache made by `run -d` cost each
 * `run --rm` ~4.5 ms). '' for other commands and for a plain foreground run. A flag of the container's
 * command (`run busybox ls -d`) only picks another cache.
 */
export function cacheVariantFor(argv: readonly string[], name: string): string {
  if (name !== 'run') return '';
  let detach = false;
  let terminal = false;
  for (const a of argv) {
    if (a === '--') break;
    if (a === '--detach' || a === '--detach=true') detach = true;
    else if (a === '--tty' || a === '--interactive' || a === '--tty=true' || a === '--interactive=true') terminal = true;
    else if (/^-[a-zA-Z]+$/.test(a)) {
      detach ||= a.includes('d');
      terminal ||= a.includes('i') || a.includes('t');
    }
  }
  return `${detach ? '-d' : ''}${terminal ? '-it' : ''}`;
}

/**
 * The cache name for a command line: the command word after the global options when it is one of
 * `commands`, 'version' for --version, else 'other' (help, unknown words, `tsbuild .`).
 */
export function cacheNameFor(argv: readonly string[], commands: readonly string[]): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--version' || a === '-v') return 'version';
    if (a === '--root') i++;
    else if (a === '--debug' || a === '-D' || a.startsWith('--root=')) continue;
    else return commands.includes(a) ? a : 'other';
  }
  return 'other';
}
