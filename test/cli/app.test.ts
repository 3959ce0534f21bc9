import test from 'ava';
import { readFileSync } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands/index.js';
import { MAX_DOCKERFILE_BYTES } from '../../src/cli/dockerfile-input.js';
import { tempDir } from '../helpers/tmp.js';
import { cli, hasStackTrace } from './run-cli.js';

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** A context directory holding `files` (name -> content). */
async function makeContext(t: import('ava').ExecutionContext, files: Record<string, string | Buffer> = {}): Promise<string> {
  const dir = await tempDir(t);
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  return dir;
}

test('tsbuild --version: prints the package version and exits 0 when asked', async (t) => {
  for (const flag of ['--version', '-v']) {
    const r = await cli([flag]);
    t.is(r.code, 0);
    t.is(r.stdout, `tsbuild version ${version}\n`);
    t.is(r.stderr, '');
  }
});

test('tsbuild --help: prints usage with every command and exits 0 when asked', async (t) => {
  const r = await cli(['--help']);
  t.is(r.code, 0);
  t.regex(r.stdout, /^Usage: {2}tsbuild \[OPTIONS\] COMMAND/);
  t.regex(r.stdout, /\n {2}build +Build an image from a Dockerfile\n/);
  t.regex(r.stdout, /--debug/);
  t.regex(r.stdout, /--version/);
  t.is(r.stderr, '');
});

test('tsbuild: prints the main help and exits 1 when given no arguments', async (t) => {
  const r = await cli([]);
  t.is(r.code, 1);
  t.regex(r.stdout, /Commands:/);
});

test('tsbuild build --help: prints the build usage with its flags when asked', async (t) => {
  for (const argv of [['build', '--help'], ['build', '-h'], ['help', 'build'], ['--help', 'build']]) {
    const r = await cli(argv);
    t.is(r.code, 0, argv.join(' '));
    t.regex(r.stdout, /^Usage: {2}tsbuild build \[OPTIONS\] PATH/, argv.join(' '));
    for (const flag of ['-f, --file PATH', '-t, --tag NAME:TAG', '--build-arg KEY[=VALUE]', '--target STAGE', '--no-cache', '--print graph|dot', '--check']) {
      t.true(r.stdout.includes(flag), `${argv.join(' ')}: missing ${flag}`);
    }
  }
});

test('tsbuild: suggests the closest command and exits 125 when the command is unknown', async (t) => {
  const r = await cli(['biuld', '.']);
  t.is(r.code, 125);
  t.is(r.stdout, '');
  t.regex(r.stderr, /^CLI_UNKNOWN_COMMAND: unknown command "biuld"\nhint: did you mean "tsbuild build"\?/);
  t.false(hasStackTrace(r.stderr));
  const far = await cli(['frobnicate']);
  t.is(far.code, 125);
  t.regex(far.stderr, /hint: run "tsbuild --help" for the list of commands/);
});

test('tsbuild build: suggests the closest flag and exits 125 when a flag is misspelled', async (t) => {
  const r = await cli(['build', '--no-cach', '.']);
  t.is(r.code, 125);
  t.regex(r.stderr, /^CLI_BAD_FLAG: unknown flag --no-cach for "tsbuild build"\nhint: did you mean --no-cache\?/);
  t.false(hasStackTrace(r.stderr));
});

test('tsbuild pull: fails with CLI_NOT_SUPPORTED and exit 125 when a not-yet-supported flag is used', async (t) => {
  const r = await cli(['pull', '--all-tags', 'x']);
  t.is(r.code, 125);
  t.regex(r.stderr, /^CLI_NOT_SUPPORTED: --all-tags is not supported yet \(pull tags one by one\)/);
});

test('tsbuild build: fails with CLI_MISSING_ARGUMENT and exit 125 when the context is missing', async (t) => {
  const r = await cli(['build', '-t', 'x:1']);
  t.is(r.code, 125);
  t.regex(r.stderr, /^CLI_MISSING_ARGUMENT: "tsbuild build" requires exactly 1 argument/);
  t.regex(r.stderr, /hint: usage: tsbuild build/);
});

test('tsbuild build: fails with CLI_BAD_ARGUMENT when given two contexts', async (t) => {
  const r = await cli(['build', '.', 'other']);
  t.is(r.code, 125);
  t.regex(r.stderr, /^CLI_BAD_ARGUMENT: .*got also: other/);
});

test('tsbuild build: rejects malformed values with CLI_BAD_VALUE when --build-arg, --print or --progress are wrong', async (t) => {
  for (const [argv, pattern] of [
    [['build', '--build-arg', '1BAD=x', '.'], /invalid --build-arg "1BAD=x"/],
    [['build', '--build-arg', '=x', '.'], /invalid --build-arg "=x"/],
    [['build', '--print=json', '.'], /--print takes "graph" or "dot", not "json"/],
    [['build', '--progress=fancy', '.'], /--progress takes auto, tty, plain or rawjson/],
    [['build', '--network=bridge', '.'], /--network takes default, host or none/],
  ] as const) {
    const r = await cli(argv);
    t.is(r.code, 125, argv.join(' '));
    t.regex(r.stderr, /^CLI_BAD_VALUE: /, argv.join(' '));
    t.regex(r.stderr, pattern, argv.join(' '));
  }
});

test('tsbuild -f X -t y .: routes to build when the first word is a flag or a path', async (t) => {
  const dir = await makeContext(t);
  const viaFlags = await cli(['-f', 'nope.Dockerfile', '-t', 'y:1', '.'], { cwd: dir });
  t.is(viaFlags.code, 1);
  t.regex(viaFlags.stderr, /^DF_NOT_FOUND: cannot find Dockerfile .*nope\.Dockerfile/);
  const viaDot = await cli(['.'], { cwd: dir });
  t.regex(viaDot.stderr, /^DF_NOT_FOUND: cannot find Dockerfile .*\/Dockerfile\n/);
  const viaFlagsBad = await cli(['--no-cach', '.'], { cwd: dir });
  t.regex(viaFlagsBad.stderr, /unknown flag --no-cach for "tsbuild build"/);
});

test('tsbuild build: fails with DF_NOT_FOUND and a hint when the context has no Dockerfile', async (t) => {
  const dir = await makeContext(t);
  const r = await cli(['build', dir]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^DF_NOT_FOUND: cannot find Dockerfile /);
  t.regex(r.stderr, /hint: pass its path with -f/);
  t.false(hasStackTrace(r.stderr));
});

test('tsbuild build -f: fails with DF_NOT_FOUND naming the resolved path when the file is missing', async (t) => {
  const dir = await makeContext(t);
  const r = await cli(['build', '-f', 'sub/Missingfile', '.'], { cwd: dir });
  t.is(r.code, 1);
  t.true(r.stderr.startsWith(`DF_NOT_FOUND: cannot find Dockerfile ${join(dir, 'sub/Missingfile')}`), r.stderr);
});

test('tsbuild build -f: fails with DF_UNREADABLE when the path is a directory', async (t) => {
  const dir = await makeContext(t);
  await mkdir(join(dir, 'Dockerfile'));
  const r = await cli(['build', dir]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^DF_UNREADABLE: .*Dockerfile is a directory, not a Dockerfile/);
});

test('tsbuild build -f: fails with DF_BINARY when the file holds NUL bytes or invalid UTF-8', async (t) => {
  const dir = await makeContext(t, {
    'nul.bin': Buffer.from([0x46, 0x52, 0x4f, 0x4d, 0x00, 0x01, 0x02]),
    'latin1.txt': Buffer.from('FROM scratch\nLABEL a=\xe9\n', 'latin1'),
  });
  const nul = await cli(['build', '-f', join(dir, 'nul.bin'), dir]);
  t.is(nul.code, 1);
  t.regex(nul.stderr, /^DF_BINARY: .*nul\.bin is a binary file, not a Dockerfile\nhint: check the -f argument/);
  const latin1 = await cli(['build', '-f', join(dir, 'latin1.txt'), dir]);
  t.regex(latin1.stderr, /^DF_BINARY: .*latin1\.txt is not valid UTF-8 text/);
});

test('tsbuild build -f: fails with DF_TOO_LARGE without reading it when the file is 50 MB', async (t) => {
  const dir = await makeContext(t);
  const big = join(dir, 'Big.Dockerfile');
  const fh = await open(big, 'w');
  await fh.truncate(50 * 1024 * 1024); // sparse: no data blocks are written
  await fh.close();
  const r = await cli(['build', '-f', big, dir]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`^DF_TOO_LARGE: .*Big\\.Dockerfile is 50\\.0 MiB; a Dockerfile may be at most ${MAX_DOCKERFILE_BYTES / 1048576} MiB`));
});

test('tsbuild build -f -: fails with DF_TOO_LARGE when stdin exceeds the limit', async (t) => {
  const r = await cli(['build', '-f', '-', '.'], { stdin: Buffer.alloc(MAX_DOCKERFILE_BYTES + 1, 0x41) });
  t.is(r.code, 1);
  t.regex(r.stderr, /^DF_TOO_LARGE: Dockerfile \(stdin\) is/);
});

test('tsbuild build -f -: fails with DF_BINARY when stdin is binary', async (t) => {
  const r = await cli(['build', '-f', '-', '.'], { stdin: Buffer.from([1, 2, 0, 3]) });
  t.is(r.code, 1);
  t.regex(r.stderr, /^DF_BINARY: Dockerfile \(stdin\) is a binary file/);
});

test('tsbuild: prints no stack trace without --debug but one with it when a command fails', async (t) => {
  const dir = await makeContext(t);
  const plain = await cli(['build', '-f', 'missing', dir], { cwd: dir });
  t.is(plain.code, 1);
  t.false(hasStackTrace(plain.stderr), plain.stderr);
  const debug = await cli(['--debug', 'build', '-f', 'missing', dir], { cwd: dir });
  t.is(debug.code, 1);
  t.regex(debug.stderr, /^DF_NOT_FOUND: /);
  t.true(hasStackTrace(debug.stderr), debug.stderr);
  t.regex(debug.stderr, /caused by: Error: ENOENT/);
  const short = await cli(['-D', 'build', '--no-cach', '.']);
  t.true(hasStackTrace(short.stderr), short.stderr);
});

test('tsbuild: reports "not supported yet" with a hint and exit 1 when a later command is used', async (t) => {
  const later = commands.filter((c) => c.summary.endsWith('[not supported yet]'));
  if (later.length === 0) {
    t.pass('every command has landed');
    return;
  }
  for (const cmd of later) {
    const r = await cli([cmd.name, 'x']);
    t.is(r.code, 1, cmd.name);
    t.regex(r.stderr, new RegExp(`^CLI_NOT_SUPPORTED: "tsbuild ${cmd.name}" is not supported yet\nhint: .+ has not landed yet`), cmd.name);
  }
});

test('tsbuild --root: fails with CLI_MISSING_VALUE when --root is given an empty value', async (t) => {
  const r = await cli(['--root=', 'build', '.']);
  t.is(r.code, 125);
  t.regex(r.stderr, /^CLI_MISSING_VALUE: flag --root needs a value/);
});
