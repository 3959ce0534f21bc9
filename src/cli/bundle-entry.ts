import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheNameFor, cacheVariantFor, defaultCacheDir, runBundle } from './code-cache.js';

// The entry of the bundled CLI (dist/cli/main.cjs, which bin/tsbuild.js requires, and the same as an
// ES module, dist/cli/main.js; written by scripts/bundle.mjs): runs the CLI's CommonJS file, the
// command's own or the whole CLI, with a V8 code cache (./code-cache.ts). The bundle script fills in these.
declare const TSBUILD_BUNDLE_FILE: string;
declare const TSBUILD_BUNDLE_KEY: string;
/** Each command's own bundle (only what the command reaches): name -> [file, key]. */
declare const TSBUILD_COMMAND_BUNDLES: Readonly<Record<string, readonly [string, string]>>;
declare const TSBUILD_COMMANDS: readonly string[];
declare const TSBUILD_VERSION: string;

const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  // Answered here, without reading the bundle (as the CLI's runCli answers it: package.json's version).
  process.stdout.write(`tsbuild version ${TSBUILD_VERSION}\n`);
} else {
  const here = dirname(fileURLToPath(import.meta.url));
  // TSBUILD_CODE_CACHE_DIR: where the cache lives ("" = no cache); default dist/cli/.code-cache, or
  // the user's cache directory when that cannot be written.
  const dir = process.env.TSBUILD_CODE_CACHE_DIR;
  const name = cacheNameFor(argv, TSBUILD_COMMANDS);
  // A command line of one command (its name after the global options the CLI would skip too) runs
  // that command's own bundle; help, --version with other words, `tsbuild .` and unknown words the whole CLI.
  const [file, key] = Object.hasOwn(TSBUILD_COMMAND_BUNDLES, name) ? TSBUILD_COMMAND_BUNDLES[name] as readonly [string, string] : [TSBUILD_BUNDLE_FILE, TSBUILD_BUNDLE_KEY];
  runBundle({
    file: join(here, file),
    key,
    cacheDir: dir === undefined ? defaultCacheDir(here, process.env) : dir === '' ? undefined : dir,
    name: `${name}${cacheVariantFor(argv, name)}`,
  });
}
