import test from 'ava';
import { formatOptions, optBool, optList, optString, parseArgs, type OptionSpec } from '../../src/cli/args.js';
import { isTsbuildError, TsbuildError } from '../../src/core/index.js';

const specs: readonly OptionSpec[] = [
  { name: 'file', short: 'f', type: 'string', value: 'PATH', help: 'The file' },
  { name: 'tag', short: 't', type: 'list', value: 'NAME', help: 'A tag' },
  { name: 'interactive', short: 'i', type: 'bool', help: 'Interactive' },
  { name: 'tty', short: 'T', type: 'bool', help: 'Terminal' },
  { name: 'no-cache', type: 'bool', help: 'No cache' },
  { name: 'push', type: 'bool', help: 'Push', notSupported: 'arrives with the registry client' },
  { name: 'secret-thing', type: 'string', help: 'Hidden', hidden: true },
];

const parse = (argv: string[], stop = false) => parseArgs(argv, specs, 'test', stop);

function throwsCode(t: import('ava').ExecutionContext, fn: () => unknown, code: string): TsbuildError {
  const err = t.throws(fn);
  t.true(isTsbuildError(err), String(err));
  t.is((err as TsbuildError).code as string, code);
  return err as TsbuildError;
}

test('parseArgs: reads long options with a separate value or with = when given both forms', (t) => {
  const a = parse(['--file', 'a.txt', '--tag=x:1', '--tag', 'y:2', 'ctx']);
  t.is(optString(a, 'file'), 'a.txt');
  t.deepEqual(optList(a, 'tag'), ['x:1', 'y:2']);
  t.deepEqual(a.positionals, ['ctx']);
});

test('parseArgs: reads short options with attached, = and separate values when given', (t) => {
  t.is(optString(parse(['-fDocker']), 'file'), 'Docker');
  t.is(optString(parse(['-f=Docker']), 'file'), 'Docker');
  t.is(optString(parse(['-f', 'Docker']), 'file'), 'Docker');
  t.deepEqual(optList(parse(['-t', 'a', '-tb']), 'tag'), ['a', 'b']);
});

test('parseArgs: expands bundled short booleans and a trailing valued flag when bundled', (t) => {
  const a = parse(['-iT']);
  t.true(optBool(a, 'interactive'));
  t.true(optBool(a, 'tty'));
  const b = parse(['-itx:1']);
  t.true(optBool(b, 'interactive'));
  t.deepEqual(optList(b, 'tag'), ['x:1']);
});

test('parseArgs: accepts --flag=true and --flag=false for booleans when given explicitly', (t) => {
  t.true(optBool(parse(['--no-cache=true']), 'no-cache'));
  t.false(optBool(parse(['--no-cache=false']), 'no-cache'));
  t.false(optBool(parse([]), 'no-cache'));
  throwsCode(t, () => parse(['--no-cache=yes']), 'CLI_BAD_VALUE');
});

test('parseArgs: keeps values that look like flags when they follow a valued option', (t) => {
  t.is(optString(parse(['--file', '--weird']), 'file'), '--weird');
  t.is(optString(parse(['--file=']), 'file'), '');
});

test('parseArgs: treats everything after -- as positionals when -- is given', (t) => {
  const a = parse(['-i', '--', '--file', 'x', '-t']);
  t.deepEqual(a.positionals, ['--file', 'x', '-t']);
  t.is(optString(a, 'file'), undefined);
});

test('parseArgs: treats a lone dash as a positional when given', (t) => {
  t.deepEqual(parse(['-']).positionals, ['-']);
});

test('parseArgs: stops at the first positional when stopAtPositional is set', (t) => {
  const a = parse(['-i', 'alpine', 'sh', '-c', '--file', 'x'], true);
  t.true(optBool(a, 'interactive'));
  t.deepEqual(a.positionals, ['alpine', 'sh', '-c', '--file', 'x']);
  t.is(optString(a, 'file'), undefined);
  const b = parse(['alpine', '-i']);
  t.true(optBool(b, 'interactive'), 'without stopAtPositional, flags after positionals are options');
});

test('parseArgs: throws CLI_BAD_FLAG with a did-you-mean hint and exit 125 when a long flag is unknown', (t) => {
  const err = throwsCode(t, () => parse(['--no-cach']), 'CLI_BAD_FLAG');
  t.is(err.exitCode, 125);
  t.regex(err.message, /unknown flag --no-cach for "tsbuild test"/);
  t.is(err.hint, 'did you mean --no-cache?');
  const withValue = throwsCode(t, () => parse(['--fil=x']), 'CLI_BAD_FLAG');
  t.is(withValue.hint, 'did you mean --file?');
});

test('parseArgs: points to help when an unknown flag resembles nothing', (t) => {
  const err = throwsCode(t, () => parse(['--completely-unrelated']), 'CLI_BAD_FLAG');
  t.is(err.hint, 'see "tsbuild test --help"');
  throwsCode(t, () => parse(['-z']), 'CLI_BAD_FLAG');
});

test('parseArgs: never suggests a hidden option when a flag is misspelled', (t) => {
  const err = throwsCode(t, () => parse(['--secret-thin']), 'CLI_BAD_FLAG');
  t.false((err.hint ?? '').includes('secret-thing'));
  t.is(optString(parse(['--secret-thing', 'v']), 'secret-thing'), 'v');
});

test('parseArgs: throws CLI_MISSING_VALUE with exit 125 when a valued flag ends the argv', (t) => {
  t.is(throwsCode(t, () => parse(['--file']), 'CLI_MISSING_VALUE').exitCode, 125);
  throwsCode(t, () => parse(['-f']), 'CLI_MISSING_VALUE');
  throwsCode(t, () => parse(['-it']), 'CLI_MISSING_VALUE');
});

test('parseArgs: throws CLI_NOT_SUPPORTED naming the reason when a not-yet-supported flag is used', (t) => {
  const err = throwsCode(t, () => parse(['--push', 'ctx']), 'CLI_NOT_SUPPORTED');
  t.regex(err.message, /--push is not supported yet \(arrives with the registry client\)/);
  t.is(err.exitCode, 125);
});

test('parseArgs: ignores not-yet-supported flags when --help is also given', (t) => {
  const a = parse(['--push', '--help']);
  t.true(optBool(a, 'help'));
  t.true(optBool(a, 'push'));
});

test('parseArgs: accepts -h and --help for every command when given', (t) => {
  t.true(optBool(parse(['-h']), 'help'));
  t.true(optBool(parse(['--help']), 'help'));
});

test('formatOptions: lists visible options with placeholders and markers when formatting help', (t) => {
  const text = formatOptions(specs);
  t.regex(text, /-f, --file PATH\s+The file/);
  t.regex(text, /-t, --tag NAME\s+A tag \(repeatable\)/);
  t.regex(text, /--push\s+Push \[not supported yet\]/);
  t.regex(text, /-h, --help\s+Show help for this command/);
  t.false(text.includes('secret-thing'));
});
