#!/usr/bin/env node
// Bundles the CLI with esbuild into one CommonJS file, dist/cli/main.bundle.cjs, and its entry
// dist/cli/main.cjs (bin/tsbuild.js requires it; dist/cli/main.js, over tsc's output of
// src/cli/main.ts, is the same entry as an ES module), which runs the bundle with a V8 code cache.
// Each command's implementation is initialized only when the command runs: the bundle replaces the
// `import { xCommand } from './x.js'` lines of src/cli/commands/index.ts by stubs with the command's
// name, usage and options (read from the sources here, at build time) whose run() imports it. The
// sources keep their shape; run unbundled (tsx, tests) nothing is lazy.
// Every other file of dist/ stays tsc's output (the library entry dist/index.js, unpack-child.js).
// Run after tsc (`npm run build`). `--outfile FILE` writes elsewhere (tests); FILE must lie in
// dist/cli/ so that the paths the code resolves relative to its own module stay right.
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// tsc's output (the build runs tsc first): how main.js wraps a bundle, which each file then holds.
const { BUNDLE_WRAPPER } = await import(pathToFileURL(join(root, 'dist', 'cli', 'code-cache.js')).href);
const srcDir = join(root, 'src');
const distDir = join(root, 'dist');
const outDir = join(distDir, 'cli');
const at = process.argv.indexOf('--outfile');
const outfile = at > 0 && process.argv[at + 1] ? resolve(process.argv[at + 1]) : join(outDir, 'main.js');
if (dirname(outfile) !== outDir || !outfile.endsWith('.js')) {
  console.error(`bundle: --outfile must be a .js file in ${outDir}`);
  process.exit(2);
}
const base = basename(outfile, '.js');
// `--metafile FILE` also writes esbuild's metafile (which source went into which chunk) for analysis.
const metaAt = process.argv.indexOf('--metafile');
const metafileOut = metaAt > 0 && process.argv[metaAt + 1] ? resolve(process.argv[metaAt + 1]) : undefined;
const started = Date.now();
const commandIndex = join(srcDir, 'cli', 'commands', 'index.ts');
/** One-line named imports of command modules in src/cli/commands/index.ts. */
const COMMAND_IMPORT = /^import \{ ([\w, ]+) \} from '(\.\/[\w-]+\.js)';$/gm;
const COMMAND_FIELDS = new Set(['name', 'summary', 'usage', 'options', 'stopAtPositional', 'run']);

// Each module keeps the import.meta.url of its own tsc output (dist/<module>/<file>.js): paths
// resolved relative to it (package.json, build/tsbuild-launcher, unpack-child.js, main.js for the
// container monitor and the rootless re-exec) are the same as without the bundle. All output files
// lie in dist/cli/, so one relative path serves every chunk.
function keepModuleUrl(path, text) {
  if (!text.includes('import.meta.url')) return text;
  const distFile = join(distDir, relative(srcDir, path)).replace(/\.ts$/, '.js');
  const rel = relative(outDir, distFile).split(sep).join('/');
  const url = `new URL(${JSON.stringify(rel.startsWith('.') ? rel : `./${rel}`)}, import.meta.url).href`;
  return text.replaceAll('import.meta.url', `(${url})`);
}

/**
 * Where each value a module's index.ts re-exports is defined: index path -> name -> [file, name
 * there]. With code splitting esbuild ignores "sideEffects": false (more than one entry point), and
 * the tsconfig's verbatimModuleSyntax keeps every import: an `import { x } from '../m/index.js'`
 * would make every file the index re-exports part of the importer's chunks (a cached build would
 * load the sandbox, the layer packer and the registry client). Read with the TypeScript checker.
 */
async function readIndexExports() {
  const { default: ts } = await import('typescript');
  const parsed = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.build.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
  const indexes = (await readdir(srcDir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => join(srcDir, d.name, 'index.ts'))
    .filter((f) => ts.sys.fileExists(f));
  const program = ts.createProgram(indexes, { ...parsed.options, noEmit: true });
  const checker = program.getTypeChecker();
  const exportsOf = (file) => {
    const sf = program.getSourceFile(file);
    const sym = sf === undefined ? undefined : checker.getSymbolAtLocation(sf);
    return sym === undefined ? [] : checker.getExportsOfModule(sym);
  };
  const resolveAlias = (sym) => (sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym);
  const map = new Map();
  for (const index of indexes) {
    const names = new Map();
    for (const e of exportsOf(index)) {
      const target = resolveAlias(e);
      if (!(target.flags & ts.SymbolFlags.Value)) continue; // types are erased
      const decl = target.declarations?.[0];
      const file = decl?.getSourceFile().fileName;
      if (file === undefined || resolve(file) === resolve(index) || !resolve(file).startsWith(srcDir + sep)) continue;
      // The name the defining file exports it under (the same symbol), else keep the index import.
      const there = exportsOf(file).find((x) => resolveAlias(x) === target);
      if (there !== undefined) names.set(e.getName(), [resolve(file), there.getName()]);
    }
    map.set(resolve(index), names);
  }
  return map;
}

// Named imports, and re-exports (`export { x } from '../m/index.js'` in a file other than an index:
// it would initialize all of m for whoever imports that file), from src index.ts files.
const IMPORT_FROM_INDEX = /^(import|export) \{([^}]*)\} from '(\.\.?\/[^']*index\.js)';$/gm;

/** Rewrites the named imports and re-exports from src index.ts files of `path` into ones of the defining files. */
function directImports(path, text, indexExports) {
  return text.replace(IMPORT_FROM_INDEX, (line, keyword, list, from) => {
    const index = resolve(dirname(path), from).replace(/\.js$/, '.ts');
    const names = indexExports.get(index);
    if (names === undefined) return line;
    const byFile = new Map();
    const keep = [];
    for (const raw of list.split(',').map((x) => x.trim()).filter(Boolean)) {
      if (raw.startsWith('type ')) continue; // erased
      const [imported, local = imported] = raw.split(/\s+as\s+/);
      const def = names.get(imported);
      if (def === undefined) {
        keep.push(raw);
        continue;
      }
      const [file, name] = def;
      let rel = relative(dirname(path), file).split(sep).join('/').replace(/\.ts$/, '.js');
      if (!rel.startsWith('.')) rel = `./${rel}`;
      if (!byFile.has(rel)) byFile.set(rel, []);
      byFile.get(rel).push(name === local ? name : `${name} as ${local}`);
    }
    const out = [...byFile].map(([rel, specs]) => `${keyword} { ${specs.join(', ')} } from '${rel}';`);
    if (keep.length > 0) out.push(`${keyword} { ${keep.join(', ')} } from '${from}';`);
    // Keep the line count (source maps, error positions) roughly: one line per statement.
    return out.join(' ');
  });
}

/** The source transforms of the bundle: module URLs (above) and direct imports instead of index.ts re-exports. */
function transformSources(indexExports) {
  return {
    name: 'transform-sources',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, async (args) => {
        if (!args.path.startsWith(srcDir + sep)) return undefined;
        const text = await readFile(args.path, 'utf8');
        const isIndex = basename(args.path) === 'index.ts';
        const out = keepModuleUrl(args.path, isIndex || indexExports === undefined ? text : directImports(args.path, text, indexExports));
        return out === text ? undefined : { contents: out, loader: 'ts' };
      });
    },
  };
}

// The sources have no import-time side effects (no module-level state, by the design's rules), so
// each src/ file is marked side-effect free: a module reached only through an index.ts re-export
// whose exports the static code does not use stays out of the chunks a command loads up front, and
// code behind a dynamic import() (a build's step machinery, cache export) loads only when needed.
const sideEffectFree = {
  name: 'side-effect-free-sources',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\/.*\.js$/ }, async (args) => {
      if (!args.importer.startsWith(srcDir + sep)) return undefined;
      const path = resolve(dirname(args.importer), args.path).replace(/\.js$/, '.ts');
      if (!path.startsWith(srcDir + sep) || !(await stat(path).then((st) => st.isFile(), () => false))) return undefined;
      return { path, sideEffects: false };
    });
  },
};

/**
 * Every `node:path` import of src/ gets src/core/node-path.ts: node:path with join replaced by fastJoin (the
 * same results without normalizing what needs none; its normalizeString was hot enough in a `run` that V8
 * optimized it on a background thread, ~6 ms of CPU on the core where the sandbox's processes start).
 */
const NODE_PATH_SHIM = join(srcDir, 'core', 'node-path.ts');
/** The two modules that make the shim import the real node:path. */
const NODE_PATH_OWN = new Set([NODE_PATH_SHIM, join(srcDir, 'core', 'fast-join.ts')]);
const fastPathJoin = {
  name: 'fast-path-join',
  setup(b) {
    b.onResolve({ filter: /^node:path$/ }, (args) => (args.importer.startsWith(srcDir + sep) && !NODE_PATH_OWN.has(args.importer) ? { path: NODE_PATH_SHIM, sideEffects: false } : undefined));
  },
};

/** esbuild options shared by the metadata pass and the bundle. */
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // koffi is a native addon (required lazily by src/sys/libc.ts): it stays in node_modules.
  // Pure-JS packages are bundled.
  external: ['koffi'],
  // CommonJS packages inside the bundle require() Node built-ins: give each ES module a require.
  banner: {
    js: "// tsbuild CLI bundle (scripts/bundle.mjs); sources: src/\nimport { createRequire as __tsbuildCreateRequire } from 'node:module';\nconst require = __tsbuildCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
};

/** Returns the command imports of src/cli/commands/index.ts that can be lazy: [line, names, from, metadata by name]. */
async function readLazyImports() {
  const text = await readFile(commandIndex, 'utf8');
  const imports = [...text.matchAll(COMMAND_IMPORT)].map(([line, names, from]) => ({ line, names: names.split(',').map((n) => n.trim()), from }));
  // Evaluate the command modules (a bundle of their re-exports) to read each command's static fields.
  const tmp = join(outDir, `.${base}-meta-${randomBytes(4).toString('hex')}.js`);
  let mod;
  try {
    await build({
      ...common,
      stdin: { contents: imports.map((i) => `export { ${i.names.join(', ')} } from '${i.from}';`).join('\n'), resolveDir: dirname(commandIndex), sourcefile: 'command-metadata.ts', loader: 'ts' },
      outfile: tmp,
      plugins: [transformSources(undefined)],
    });
    mod = await import(pathToFileURL(tmp).href);
  } finally {
    await rm(tmp, { force: true });
  }
  const lazy = [];
  for (const i of imports) {
    const meta = {};
    for (const name of i.names) {
      const cmd = mod[name];
      // Only plain commands (the Command fields, JSON data besides run) become stubs; others stay eager.
      const plain = cmd !== null && typeof cmd === 'object' && typeof cmd.run === 'function' &&
        Object.keys(cmd).every((k) => COMMAND_FIELDS.has(k)) && Object.entries(cmd).every(([k, v]) => k === 'run' || JSON.stringify(v) !== undefined);
      if (!plain) break;
      const { run: _run, ...fields } = cmd;
      meta[name] = JSON.parse(JSON.stringify(fields));
    }
    if (Object.keys(meta).length === i.names.length) lazy.push({ ...i, meta });
  }
  return lazy;
}

/**
 * Replaces the eager command imports of src/cli/commands/index.ts by lazy stubs; with `only` (one
 * of `lazy`: a command module) the stubs of the other modules' commands have no implementation.
 */
function lazyCommands(lazy, only) {
  return {
    name: 'lazy-commands',
    setup(b) {
      b.onLoad({ filter: /[\\/]cli[\\/]commands[\\/]index\.ts$/ }, async (args) => {
        if (args.path !== commandIndex) return undefined;
        let text = await readFile(args.path, 'utf8');
        text += '\n/** A command whose run() loads its implementation (a chunk of the bundle) first. */\n' +
          'function lazyCommand(fields: Omit<Command, "run">, load: () => Promise<Command>): Command {\n' +
          '  return { ...fields, run: async (args, ctx) => (await load()).run(args, ctx) };\n}\n';
        for (const i of lazy) {
          const stubs = i.names.map((n) => `const ${n}: Command = lazyCommand(${JSON.stringify(i.meta[n])}, ${only === undefined || only === i
            ? `() => import('${i.from}').then((m) => m.${n})`
            // Never run: the entry starts this bundle only for a command line of one of `only`'s commands.
            : `() => Promise.reject(new Error('tsbuild: the bundle of ${only.from} has no command ${i.meta[n].name}'))`});`);
          text = text.replace(i.line, stubs.join('\n'));
        }
        return { contents: text, loader: 'ts' };
      });
    },
  };
}

// A Node built-in a module imports is required when the module is initialized, whether or not the
// command calls into it (src/core/digest.ts's node:crypto for `images`, which hashes nothing; the
// layer writer's node:worker_threads for `run`): each `import_x = require("node:x")` of esbuild's
// output becomes a stand-in that requires the built-in on its first use (loading node:crypto costs
// ~2 ms, node:worker_threads ~0.5, node:fs/promises ~1.2 ms, which a `run` of an unpacked image does not
// call: src/sys/fs-pool.ts). Not for the built-ins Node has loaded before any code runs (nothing to gain).
// A property read through the stand-in costs a Proxy trap (~40 ns; a thread-pool round trip ~45 us).
const EAGER_BUILTINS = new Set(['async_hooks', 'buffer', 'events', 'fs', 'module', 'path', 'querystring', 'timers', 'url', 'util']);
const LAZY_BUILTIN = 'function __tsbuildBuiltin(id) { let m; const load = () => m ??= require(id); return new Proxy({}, { ' +
  'get: (_, k) => load()[k], has: (_, k) => k in load(), ownKeys: () => Reflect.ownKeys(load()), ' +
  'getOwnPropertyDescriptor: (_, k) => { const d = Reflect.getOwnPropertyDescriptor(load(), k); return d === undefined ? undefined : { ...d, configurable: true }; } }); }';
const BUILTIN_IMPORT = /(?<![\w$.])(import_[\w$]+\s*=\s*)require\(\s*"node:([\w/]+)"\s*\)(?=\s*[;}])/g;

const lazy = await readLazyImports();
const indexExports = await readIndexExports();
const commandNames = lazy.flatMap((i) => Object.values(i.meta).map((m) => m.name));

/**
 * Bundles the CLI (`only` undefined: every command) or the CLI for the commands of one command
 * module (`only`: one of `lazy`; the other commands are stubs without implementation, for help
 * texts) into one CommonJS file's text. CommonJS, not ESM: Node's ESM loader resolves, reads and links each module of a chunk graph
 * (most of a start's CPU before), and a bundled ES module imports the Node built-ins of every
 * module up front, where esbuild's CommonJS output requires them when a module is first used. Code
 * behind a dynamic import() (a command's implementation, a build's step machinery) is in the file
 * but runs only when imported.
 */
async function bundleCli(only) {
  const name = only === undefined ? `${base}.bundle.cjs` : `${base}.bundle.${basename(only.from, '.js')}.cjs`;
  const result = await build({
    ...common,
    format: 'cjs',
    charset: 'ascii',
    // Without the whitespace and comments: 1.25 -> 0.95 MB, which each start reads (~2 ms/MB with
    // the latin1 string). Names stay (stack traces name the functions; positions are the bundle's
    // either way); lines of at most ~160 characters, as Node prints the line of an uncaught error.
    minifyWhitespace: true,
    lineLimit: 160,
    entryPoints: [join(srcDir, 'cli', 'main.ts')],
    outfile: join(outDir, name),
    write: false,
    banner: {
      // "use strict" first (the sources are ES modules); import.meta of each module from the file's path.
      js: [
        '"use strict";',
        '// tsbuild CLI bundle (scripts/bundle.mjs), run by main.js; sources: src/',
        'const __tsbuildUrl = require("node:url").pathToFileURL(__filename).href;',
        'const __tsbuildResolve = (spec) => require("node:url").pathToFileURL(require.resolve(spec)).href;',
        LAZY_BUILTIN,
      ].join('\n'),
    },
    define: { 'import.meta.url': '__tsbuildUrl', 'import.meta.resolve': '__tsbuildResolve' },
    plugins: [lazyCommands(lazy, only), fastPathJoin, sideEffectFree, transformSources(indexExports)],
    metafile: true,
  });
  // import() of a Node built-in (the registry client's https, tls) as a require(): main.js runs the
  // bundle as a vm.Script, where import() needs a flag (--experimental-vm-modules) or prints an
  // experimental warning (USE_MAIN_CONTEXT_DEFAULT_LOADER). No other import() may remain.
  const bundleSource = result.outputFiles[0].text.replace(/(?<![\w$.])import\(("node:[\w/]+")\)/g, 'Promise.resolve().then(() => require($1))')
    .replace(BUILTIN_IMPORT, (all, assign, id) => EAGER_BUILTINS.has(id) ? all : `${assign}__tsbuildBuiltin("node:${id}")`);
  const leftImport = /(?<![\w$.])import\(/.exec(bundleSource);
  if (leftImport !== null) {
    console.error(`bundle: an import() the bundle cannot run: ${bundleSource.slice(leftImport.index, leftImport.index + 80)}`);
    process.exit(1);
  }
  // ASCII only, so that main.js reads it as latin1 into a one-byte string (UTF-8 decoding and a
  // two-byte string of 1.1 MB cost ~10 ms at each start). esbuild escapes strings but leaves regular
  // expression literals and comments: \u escapes mean the same there (and in identifiers).
  if (/\\[^\0-\x7f]/.test(bundleSource)) {
    console.error('bundle: a backslash before a non-ASCII character: cannot escape it');
    process.exit(1);
  }
  const asciiSource = bundleSource.replace(/[^\0-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const key = createHash('sha256').update(asciiSource).digest('hex').slice(0, 16);
  // The key also opens the file: main.js uses its cache only for the bundle it was built with (one
  // written by a concurrent build may not be it yet, and V8 would take a cache of a same-length source).
  // The module wrapper is in the file too: main.js compiles the text it read as it is (wrapping it there
  // made a second copy of it, 0.44 MB of young-generation garbage per `run`).
  const text = `// tsbuild-bundle-key ${key}\n${BUNDLE_WRAPPER}${asciiSource}\n})`;
  return { name, key, text: Buffer.from(text, 'latin1'), metafile: result.metafile };
}

// The whole CLI (help, `tsbuild .`, anything that names no command) and a bundle per command
// module (containers.ts: ps, logs, stop, ...): a start reads, deserializes (the code cache of the
// whole CLI compiled but not yet run alone is 274 KB, 3.4 ms) and initializes only what its command
// can reach (run 0.95 -> 0.43 MB, images 0.08, ps 0.27).
const [whole, ...own] = await Promise.all([bundleCli(undefined), ...lazy.map((i) => bundleCli(i))]);
const bundleName = whole.name;
const key = whole.key;
const bundleText = whole.text;
const result = { metafile: whole.metafile };
const commandBundles = Object.fromEntries(lazy.flatMap((i, at) => Object.values(i.meta).map((m) => [m.name, [own[at].name, own[at].key]])));
// The entry runs the bundle with a V8 code cache (src/cli/bundle-entry.ts, src/cli/code-cache.ts),
// twice: main.cjs, which bin/tsbuild.js requires (a CommonJS start never loads Node's ESM loader:
// resolving, translating and linking even a one-import ES module entry cost ~12 ms of CPU per
// start), and main.js, the same as an ES module (`node dist/cli/main.js`; older bin/tsbuild.js).
const version = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')).version;
const entryDefine = {
  TSBUILD_BUNDLE_FILE: JSON.stringify(bundleName), TSBUILD_BUNDLE_KEY: JSON.stringify(key), TSBUILD_COMMAND_BUNDLES: JSON.stringify(commandBundles),
  TSBUILD_COMMANDS: JSON.stringify(commandNames), TSBUILD_VERSION: JSON.stringify(version),
};
const entryBanner = '// tsbuild CLI bundle (scripts/bundle.mjs): the entry; the CLI is in ' + bundleName;
const entry = await build({
  ...common,
  entryPoints: [join(srcDir, 'cli', 'bundle-entry.ts')],
  outfile,
  write: false,
  banner: { js: entryBanner },
  define: entryDefine,
  plugins: [sideEffectFree],
});
const cjsEntryFile = join(outDir, `${base}.cjs`);
const cjsEntry = await build({
  ...common,
  format: 'cjs',
  entryPoints: [join(srcDir, 'cli', 'bundle-entry.ts')],
  outfile: cjsEntryFile,
  write: false,
  banner: { js: [entryBanner, '"use strict";', 'const __tsbuildEntryUrl = require("node:url").pathToFileURL(__filename).href;'].join('\n') },
  define: { ...entryDefine, 'import.meta.url': '__tsbuildEntryUrl' },
  plugins: [sideEffectFree],
});
// The bundle first, the entries last, each by write-and-rename: a CLI started meanwhile (parallel
// tests, a container monitor) never reads half a file nor an entry without its bundle.
const files = [
  { path: join(outDir, bundleName), contents: bundleText },
  ...own.map((b) => ({ path: join(outDir, b.name), contents: b.text })),
  { path: cjsEntryFile, contents: cjsEntry.outputFiles[0].contents },
  { path: outfile, contents: entry.outputFiles[0].contents },
];
for (const f of files) {
  const tmp = `${f.path}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(tmp, f.contents);
    await rename(tmp, f.path);
  } finally {
    await rm(tmp, { force: true });
  }
}
// Chunks of the code-split bundle of earlier versions, command bundles and code caches of earlier
// builds of this entry; not those written since this build started (a concurrent build of other sources).
const escaped = base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const old = async (dir, re) => {
  for (const name of await readdir(dir).catch(() => [])) {
    if (!re.test(name)) continue;
    const mtime = await stat(join(dir, name)).then((s) => s.mtimeMs, () => Number.POSITIVE_INFINITY);
    if (mtime < started) await rm(join(dir, name), { force: true });
  }
};
await old(outDir, new RegExp(`^${escaped}\\.chunk-[A-Z0-9]+\\.js$`));
await old(outDir, new RegExp(`^${escaped}\\.bundle\\.[\\w-]+\\.cjs$`));
if (base === 'main') await old(join(outDir, '.code-cache'), new RegExp(`^(?!(?:${[whole, ...own].map((b) => b.key).join('|')})-).*\\.v8$`));
if (metafileOut !== undefined) await writeFile(metafileOut, JSON.stringify(result.metafile));
const kib = Math.round(bundleText.length / 1024);
const ownKib = Math.round(own.reduce((n, b) => n + b.text.length, 0) / 1024);
console.log(`bundle: ${Object.keys(result.metafile.inputs).length} modules, ${commandNames.length} lazy commands -> ${relative(root, cjsEntryFile)} (and ${basename(outfile)}) + ${bundleName} (${kib} KiB, key ${key}) + ${own.length} bundles of command modules (${ownKib} KiB)`);
