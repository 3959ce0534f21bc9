import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTsbuildError } from '../../src/core/index.js';
import { lintDockerfile, parseDockerfile, type Dockerfile } from '../../src/dockerfile/index.js';
import { planBuild } from '../../src/plan/index.js';

/**
 * Property: for any text, each step of the front end returns or throws a TsbuildError, never
 * another exception, and finishes quickly. Steps run in order on the same case; a TsbuildError
 * ends the case. To fuzz another step (e.g. planBuild), append one entry to STEPS.
 */
interface FuzzCase {
  readonly text: string;
  df?: Dockerfile;
}

const STEPS: readonly (readonly [string, (c: FuzzCase) => void])[] = [
  ['parse', (c) => { c.df = parseDockerfile(c.text, 'Dockerfile'); }],
  ['locations', (c) => { checkLocations(c.text, c.df as Dockerfile); }],
  ['lint', (c) => { lintDockerfile(c.df as Dockerfile, { buildArgs: new Map([['TAG', '1']]) }); }],
  ['plan', (c) => {
    const linux = { os: 'linux', architecture: 'amd64' };
    planBuild(c.df as Dockerfile, { buildArgs: new Map([['TAG', '1']]), buildPlatform: linux, targetPlatform: linux, baseImages: new Map() });
  }],
];

/** Property of an accepted file: 1-based, ordered, non-overlapping instruction lines inside the file. */
function checkLocations(text: string, df: Dockerfile): void {
  const lines = text.split('\n').length;
  let last = 0;
  for (const ins of [...df.globalArgs, ...df.stages.flatMap((s) => [s.from, ...s.instructions])]) {
    const { line, endLine } = ins.loc;
    if (!(line > last && line <= (endLine ?? line) && (endLine ?? line) <= lines)) {
      throw new Error(`bad location ${line}-${endLine ?? ''} after line ${last} in a file of ${lines} lines`);
    }
    last = endLine ?? line;
  }
}

const CASES = 4000;
/** A case slower than this is treated as a hang (generous: real cases take well under 1 ms). */
const HANG_MS = 2000;

/** mulberry32: a small seeded PRNG so failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYWORDS = [
  'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER',
  'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL', 'from', 'Run', 'RUM', 'COPPY', '#', '',
];
const FLAGS = [
  '--platform=$BUILDPLATFORM', '--from=build', '--chown=1:1', '--chmod=755', '--link', '--link=false', '--parents',
  '--exclude=*.md', '--checksum=sha256:00', '--keep-git-dir', '--mount=type=cache,target=/x', '--mount=type=secret,id=a',
  '--mount=type=bind,rw', '--mount=type=tmpfs,target=/t,size=1g', '--mount=', '--mount=type="a,b"', '--network=none',
  '--security=insecure', '--interval=1m', '--timeout=1.5h', '--retries=3', '--start-period=0', '--bogus', '--', '--=',
];
const TOKENS = [
  'alpine', 'AS', 'as', 'build', 'scratch', '$VAR', '${VAR:-x}', '${VAR', '${}', '$', '"', "'", '\\', '`', '[', ']',
  '["a", "b"]', "['a']", '["a" "b"]', '[]', '<<EOF', '<<-EOF', '3<<"E"', '<<', 'EOF', 'A=1', 'B="x y"', '=', 'a=b=c',
  'NONE', 'CMD', 'echo', '&&', '/app', './src', '80/tcp', '\t', ' ', 'ü', '\u0000', '\r', '# c', 'ONBUILD', 'FROM',
];
const TAME_KEYWORDS = ['RUN', 'COPY', 'ADD', 'ENV', 'LABEL', 'ARG', 'WORKDIR', 'USER', 'EXPOSE', 'VOLUME', 'CMD', 'ENTRYPOINT'];
const TAME_TOKENS = ['a', 'b=1', 'C="x y"', '$VAR', '${VAR:-x}', '/app', './src', '80/tcp', 'echo', 'x$UNDEF'];
const SEPARATORS = [' ', ' ', ' ', '\t', ' \\\n', '\n', ' `\n', '\n\n'];

function pick<T>(r: () => number, list: readonly T[]): T {
  return list[Math.floor(r() * list.length)] as T;
}

/** A Dockerfile assembled from plausible and hostile pieces. */
function randomDockerfile(r: () => number): string {
  const lines: string[] = [];
  if (r() < 0.2) lines.push(pick(r, ['# escape=`', '# escape=\\', '# syntax=x', '# check=skip=all', '# check=error=true', '# escape=']));
  if (r() < 0.8) lines.push(`FROM ${pick(r, ['alpine', 'alpine AS b', '$BASE', 'scratch'])}`);
  const tame = r() < 0.5;
  const n = Math.floor(r() * 12);
  for (let i = 0; i < n; i++) {
    let line = pick(r, tame ? TAME_KEYWORDS : KEYWORDS);
    const parts = tame ? 2 + Math.floor(r() * 3) : Math.floor(r() * 6);
    for (let j = 0; j < parts; j++) {
      line += tame ? ` ${pick(r, TAME_TOKENS)}` : pick(r, SEPARATORS) + (r() < 0.3 ? pick(r, FLAGS) : pick(r, TOKENS));
    }
    lines.push(line);
    if (line.includes('<<') && r() < 0.6) lines.push('body $x', pick(r, ['EOF', '\tEOF', 'E', 'nope']));
  }
  return lines.join(r() < 0.1 ? '\r\n' : '\n');
}

/** The `Dockerfile` of every case directory under `fixtures/<kind>/` (none when it is absent). */
function fixtureTexts(kind: string): string[] {
  const dir = fileURLToPath(new URL(`../../fixtures/${kind}/`, import.meta.url));
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => existsSync(join(dir, name, 'Dockerfile')))
    .map((name) => readFileSync(join(dir, name, 'Dockerfile'), 'utf8'));
}

/** Seeds for mutation: the good and bad fixtures plus a rich hand-written Dockerfile. */
function corpus(): string[] {
  const bad = [...fixtureTexts('dockerfiles-bad'), ...fixtureTexts('dockerfiles')];
  const good = [
    '# syntax=docker/dockerfile:1\nARG BASE=alpine\nFROM ${BASE} AS build\nRUN --mount=type=cache,target=/c <<EOF\nset -e\nmake\nEOF\n' +
      'COPY --from=build <<a.txt /x/\nhello $USER\na.txt\nENV A=1 B="2 3"\nHEALTHCHECK --interval=5s CMD ["true"]\nONBUILD RUN echo\n' +
      'FROM scratch\nCOPY --from=build /out /\nEXPOSE 80\nVOLUME ["/data"]\nUSER 1\nWORKDIR app\nSTOPSIGNAL 9\nSHELL ["sh","-c"]\nCMD run\n',
    '# escape=`\nFROM win\nRUN dir `\n  c:\\\nLABEL a=b `\n c=d\n',
  ];
  return [...good, ...bad];
}

/** A random edit of `text`: delete, insert, duplicate, swap or truncate. */
function mutate(r: () => number, text: string): string {
  let s = text;
  const edits = 1 + Math.floor(r() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(r() * (s.length + 1));
    const op = Math.floor(r() * 6);
    if (op === 0) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 8));
    else if (op === 1) s = s.slice(0, at) + pick(r, [...TOKENS, ...FLAGS, ...SEPARATORS]) + s.slice(at);
    else if (op === 2) s = s.slice(0, at) + String.fromCharCode(Math.floor(r() * 128)) + s.slice(at);
    else if (op === 3) {
      const lines = s.split('\n');
      const k = Math.floor(r() * lines.length);
      lines.splice(k, 0, lines[k] ?? '');
      s = lines.join('\n');
    } else if (op === 4) {
      const lines = s.split('\n');
      const a = Math.floor(r() * lines.length);
      const b = Math.floor(r() * lines.length);
      [lines[a], lines[b]] = [lines[b] ?? '', lines[a] ?? ''];
      s = lines.join('\n');
    } else s = s.slice(0, at);
  }
  return s;
}

/** Runs one case through STEPS; returns a failure description or undefined. */
function runCase(text: string): string | undefined {
  const c: FuzzCase = { text };
  const start = performance.now();
  for (const [name, step] of STEPS) {
    try {
      step(c);
    } catch (err) {
      if (isTsbuildError(err)) break;
      return `${name} threw ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
    }
  }
  const ms = performance.now() - start;
  return ms > HANG_MS ? `took ${ms.toFixed(0)} ms` : undefined;
}

test('fuzz: parse, lint and plan return or throw TsbuildError when fed random and mutated Dockerfiles', (t) => {
  const seed = 20261123;
  const r = prng(seed);
  const seeds = corpus();
  let accepted = 0;
  const failures: string[] = [];
  for (let i = 0; i < CASES && failures.length < 5; i++) {
    const text = i % 2 === 0 ? randomDockerfile(r) : mutate(r, pick(r, seeds));
    const failure = runCase(text);
    if (failure !== undefined) failures.push(`case ${i} (seed ${seed}): ${failure}\n--- input ---\n${JSON.stringify(text)}`);
    else {
      try {
        parseDockerfile(text, 'Dockerfile');
        accepted++;
      } catch {
        // rejected with a TsbuildError: fine
      }
    }
  }
  t.deepEqual(failures, []);
  t.log(`${accepted} of ${CASES} cases parsed; the rest were rejected with a TsbuildError`);
  t.true(accepted > CASES / 20, 'the generator produces a fair share of valid Dockerfiles');
});

test('fuzz: a very long line, deep continuations and many heredocs finish when parsed', (t) => {
  const long = `FROM a\nRUN ${'x'.repeat(200_000)}\n`;
  t.is(runCase(long), undefined);
  const cont = `FROM a\nRUN a${' \\\n b'.repeat(20_000)}\n`;
  t.is(runCase(cont), undefined);
  const docs = `FROM a\nRUN ${Array.from({ length: 500 }, (_, i) => `<<E${i}`).join(' ')} cat\n${Array.from({ length: 500 }, (_, i) => `x\nE${i}`).join('\n')}\n`;
  t.is(runCase(docs), undefined);
  t.is(runCase(`FROM a\nLABEL ${'"'.repeat(10_001)}\n`), undefined);
});
