import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { cli, hasStackTrace } from './run-cli.js';

const GOOD = 'ARG BASE=alpine:3.19\nFROM ${BASE}\nARG V\nLABEL v=$V\nRUN echo hi\n';

interface GraphJson {
  readonly vertices: readonly { readonly name: string; readonly op: unknown }[];
}

function parseGraph(stdout: string): GraphJson {
  return JSON.parse(stdout) as GraphJson;
}

test('tsbuild build -f -: reads the Dockerfile from stdin when -f is a dash', async (t) => {
  const dir = await tempDir(t);
  const r = await cli(['build', '-f', '-', '--print=graph', dir], { stdin: GOOD });
  t.is(r.code, 0, r.stderr);
  const graph = parseGraph(r.stdout);
  t.true(graph.vertices.some((v) => v.name.includes('FROM alpine:3.19')), r.stdout);
  t.true(graph.vertices.some((v) => v.name.includes('RUN echo hi')), r.stdout);
});

test('tsbuild -f X -t y .: builds the graph through the build command when used as shorthand', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'App.Dockerfile'), GOOD);
  const r = await cli(['-f', 'App.Dockerfile', '-t', 'y:1', '--print=graph', '.'], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  t.true(parseGraph(r.stdout).vertices.length >= 3);
});

test('tsbuild build --print=dot: prints Graphviz DOT when asked', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'Dockerfile'), GOOD);
  const r = await cli(['build', '--print=dot', dir]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^(strict )?digraph\b/);
});

test('tsbuild build --build-arg: passes KEY=VALUE and KEY-from-environment into the plan when given', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'Dockerfile'), GOOD);
  const explicit = await cli(['build', '--print=graph', '--build-arg', 'V=a=b c', '--build-arg', 'BASE=busybox:1', dir]);
  t.is(explicit.code, 0, explicit.stderr);
  t.true(explicit.stdout.includes('"a=b c"'), 'value with = and space kept whole');
  t.true(parseGraph(explicit.stdout).vertices.some((v) => v.name.includes('FROM busybox:1')), 'global ARG overridden in FROM');
  const fromEnv = await cli(['build', '--print=graph', '--build-arg', 'V', dir], { env: { V: 'from-env' } });
  t.is(fromEnv.code, 0, fromEnv.stderr);
  t.true(fromEnv.stdout.includes('"from-env"'));
  const unsetEnv = await cli(['build', '--print=graph', '--build-arg', 'V', dir], { env: {} });
  t.is(unsetEnv.code, 0, unsetEnv.stderr);
  t.regex(unsetEnv.stdout, /"v",\s*""/, 'an ARG without value and no environment variable expands to empty');
});

test('tsbuild build: renders a bad Dockerfile as FILE:LINE: CODE: message with the source line and a hint', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'Dockerfile'), 'FROM alpine\n# a comment\nRUNN echo hi\n');
  const r = await cli(['build', dir]);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  const lines = r.stderr.split('\n');
  t.is(lines[0], 'Dockerfile:3: DF_UNKNOWN_INSTRUCTION: unknown instruction: RUNN');
  t.regex(lines[1] ?? '', /^ +3 \| RUNN echo hi$/);
  t.is(lines[2], 'hint: did you mean RUN?');
  t.false(hasStackTrace(r.stderr));
});

test('tsbuild build -f: names the file as given and suggests the flag when a Dockerfile flag is misspelled', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'sub'));
  await writeFile(join(dir, 'sub', 'My.Dockerfile'), 'FROM alpine\nCOPY --chwon=1 a b\n');
  const r = await cli(['build', '-f', 'sub/My.Dockerfile', '.'], { cwd: dir });
  t.is(r.code, 1);
  t.regex(r.stderr, /^sub\/My\.Dockerfile:2: DF_UNKNOWN_FLAG: unknown flag --chwon for COPY\n +2 \| COPY --chwon=1 a b\nhint: did you mean --chown\?/);
});

test('tsbuild build -f -: renders errors of a Dockerfile from stdin as Dockerfile:LINE', async (t) => {
  const r = await cli(['build', '-f', '-', '.'], { stdin: 'FROM alpine\nENV A=${B\n' });
  t.is(r.code, 1);
  t.regex(r.stderr, /^Dockerfile:2: DF_BAD_SUBSTITUTION: .*\n +2 \| ENV A=\$\{B\n/);
});

test('tsbuild build --debug: adds a stack trace under the rendered Dockerfile error when debugging', async (t) => {
  const r = await cli(['--debug', 'build', '-f', '-', '.'], { stdin: 'FROM alpine\nRUNN x\n' });
  t.is(r.code, 1);
  t.regex(r.stderr, /^Dockerfile:2: DF_UNKNOWN_INSTRUCTION: /);
  t.true(hasStackTrace(r.stderr));
});

test('tsbuild build --check: prints findings as FILE:LINE: RULE: message when checking', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'Dockerfile'), 'FROM alpine\nMAINTAINER me\nCMD echo hi\n');
  const r = await cli(['build', '--check', dir]);
  t.is(r.code, 0, r.stderr);
  const findings = r.stdout.trim().split('\n');
  t.true(findings.length >= 2, r.stdout);
  for (const f of findings) t.regex(f, /^Dockerfile:\d+: [A-Za-z]+: .+/);
  t.regex(r.stderr, /\d+ findings?\n$/);
});
