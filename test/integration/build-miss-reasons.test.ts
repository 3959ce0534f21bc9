import { chmod, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildEvent, MissChange } from '../../src/core/index.js';
import { cli } from '../cli/run-cli.js';
import { testSerialIf } from '../helpers/capability.js';
import { build, buildMissing, makeFixture, type BuildFixture } from './build-helpers.js';

const missing = await buildMissing();

/** The miss reasons of a build by step name (vertex.start names the vertex). */
function reasonsOf(events: readonly BuildEvent[]): Record<string, string> {
  const names = new Map(events.flatMap((e) => (e.type === 'vertex.start' ? [[e.vertex, e.name] as const] : [])));
  return Object.fromEntries(events.flatMap((e) => (e.type === 'vertex.miss' ? [[names.get(e.vertex) ?? e.vertex, e.reason]] : [])));
}

/** The miss reason of the step whose name contains `part`. */
function reasonFor(events: readonly BuildEvent[], part: string): string | undefined {
  return Object.entries(reasonsOf(events)).find(([name]) => name.includes(part))?.[1];
}

/** The structured changes of the step whose name contains `part`. */
function changesOf(events: readonly BuildEvent[], part: string): readonly MissChange[] | undefined {
  const start = events.find((e) => e.type === 'vertex.start' && e.name.includes(part));
  const miss = events.find((e) => e.type === 'vertex.miss' && start?.type === 'vertex.start' && e.vertex === start.vertex);
  return miss?.type === 'vertex.miss' ? miss.changes : undefined;
}

async function ok(f: BuildFixture, df: string, args: readonly string[] = []): Promise<Awaited<ReturnType<typeof build>>> {
  const r = await build(f, df, args);
  if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stderr}`);
  return r;
}

const COPY_DF = 'FROM busybox\nCOPY src/ /app/\nRUN cat /app/app.js > /out\n';
const COPY = '[2/3] COPY src/ /app/';
const RUN = '[3/3] RUN cat /app/app.js > /out';

testSerialIf(missing, 'cache-miss reasons: name the changed, added and removed context files and the re-run parent when the sources change', async (t) => {
  const f = await makeFixture(t, { 'src/app.js': 'v1\n', 'src/a.txt': 'a\n', 'src/b.txt': 'b\n', 'src/gone.txt': 'x\n' });
  t.deepEqual(reasonsOf((await ok(f, COPY_DF)).events), { [COPY]: 'no cache record', [RUN]: 'no cache record' });

  await writeFile(join(f.context, 'src/app.js'), 'v2\n');
  const one = await ok(f, COPY_DF);
  t.deepEqual(reasonsOf(one.events), { [COPY]: 'file src/app.js changed', [RUN]: `parent step re-ran: ${COPY}` });
  t.deepEqual(changesOf(one.events, COPY), [{ kind: 'file', what: 'src/app.js', change: 'changed' }]);
  t.deepEqual(changesOf(one.events, RUN), [{ kind: 'parent', what: COPY, change: 're-ran' }]);

  await writeFile(join(f.context, 'src/a.txt'), 'a2\n');
  await writeFile(join(f.context, 'src/b.txt'), 'b2\n');
  await writeFile(join(f.context, 'src/new.txt'), 'n\n');
  await rm(join(f.context, 'src/gone.txt'));
  const many = await ok(f, COPY_DF);
  t.is(reasonsOf(many.events)[COPY], '4 files changed: src/a.txt, src/b.txt, src/gone.txt (removed) (+1 more)');
  t.deepEqual(changesOf(many.events, COPY)?.map((c) => `${c.what ?? ''} ${c.change ?? ''}`), ['src/a.txt changed', 'src/b.txt changed', 'src/gone.txt removed', 'src/new.txt added']);

  // Back to a version built before: a hit. The next change is compared with that version, not the last one built.
  await writeFile(join(f.context, 'src/a.txt'), 'a\n');
  await writeFile(join(f.context, 'src/b.txt'), 'b\n');
  await writeFile(join(f.context, 'src/gone.txt'), 'x\n');
  await rm(join(f.context, 'src/new.txt'));
  t.deepEqual(reasonsOf((await ok(f, COPY_DF)).events), {});
  await writeFile(join(f.context, 'src/app.js'), 'v3\n');
  t.is(reasonsOf((await ok(f, COPY_DF)).events)[COPY], 'file src/app.js changed');

  // Same bytes, another mode: the COPY keeps modes, so it runs again.
  await chmod(join(f.context, 'src/a.txt'), 0o600);
  t.is(reasonsOf((await ok(f, COPY_DF)).events)[COPY], 'file modes or owners changed');
});

testSerialIf(missing, 'cache-miss reasons: show ARG and ENV values, hide credential-like ARG values and say "command changed" when the build inputs change', async (t) => {
  const f = await makeFixture(t);
  const df = (cmd: string): string => `FROM busybox\nARG VERSION=1\nARG API_TOKEN\nENV MODE=a\nRUN ${cmd}\n`;
  await ok(f, df('echo $VERSION'), ['--build-arg', 'API_TOKEN=hunter2']);
  const arg = await ok(f, df('echo $VERSION'), ['--build-arg', 'VERSION=2', '--build-arg', 'API_TOKEN=swordfish']);
  t.is(reasonFor(arg.events, 'RUN echo'), 'ARG API_TOKEN changed (value hidden); ARG VERSION changed: 1 -> 2');
  t.false(arg.stderr.includes('swordfish'), 'a credential-like value is never shown');
  t.false(arg.stderr.includes('hunter2'));
  const env = await ok(f, df('echo $VERSION').replace('MODE=a', 'MODE=b'), ['--build-arg', 'VERSION=2', '--build-arg', 'API_TOKEN=swordfish']);
  t.is(reasonFor(env.events, 'RUN echo'), 'ENV MODE changed: a -> b');
  t.deepEqual(changesOf(env.events, 'RUN echo'), [{ kind: 'env', what: 'MODE', change: 'changed', from: 'a', to: 'b' }]);
  const cmd = await ok(f, df('echo $VERSION!').replace('MODE=a', 'MODE=b'), ['--build-arg', 'VERSION=2', '--build-arg', 'API_TOKEN=swordfish']);
  t.is(reasonFor(cmd.events, 'RUN echo'), 'command changed');
  const off = await ok(f, df('echo $VERSION!').replace('MODE=a', 'MODE=b'), ['--no-cache', '--build-arg', 'VERSION=2', '--build-arg', 'API_TOKEN=swordfish']);
  t.is(reasonFor(off.events, 'RUN echo'), 'cache disabled (--no-cache)');
});

testSerialIf(missing, 'cache-miss reasons: report the old and new digest when the base image changed under the same name', async (t) => {
  const f = await makeFixture(t);
  await ok(f, 'FROM busybox\nLABEL v=1\n', ['-t', 'base:1']);
  const df = 'FROM base:1\nRUN echo hi > /hi\n';
  await ok(f, df);
  await ok(f, 'FROM busybox\nLABEL v=2\n', ['-t', 'base:1']);
  const r = await ok(f, df);
  t.regex(reasonFor(r.events, 'RUN echo hi') ?? '', /^base image digest changed: sha256:[0-9a-f]{12} -> sha256:[0-9a-f]{12}$/);
  const change = changesOf(r.events, 'RUN echo hi')?.[0];
  t.is(change?.kind, 'base-image');
  t.not(change?.from, change?.to);
});

testSerialIf(missing, 'cache-miss reasons: print "#N cache miss: file ... changed" with --progress=plain', async (t) => {
  const f = await makeFixture(t, { 'src/app.js': 'v1\n' });
  await writeFile(join(f.context, 'Dockerfile'), COPY_DF);
  const run = (): ReturnType<typeof cli> => cli(['--root', f.root, 'build', '--progress=plain', '.'], { cwd: f.context, env: f.env });
  t.is((await run()).code, 0);
  await writeFile(join(f.context, 'src/app.js'), 'v2\n');
  const r = await run();
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /^#\d+ cache miss: file src\/app\.js changed$/m);
  t.regex(r.stderr, /^#\d+ cache miss: parent step re-ran: \[2\/3\] COPY src\/ \/app\/$/m);
});

testSerialIf(missing, 'cache-miss reasons: keep credential-like ARG values out of the step-inputs documents when a step runs', async (t) => {
  const f = await makeFixture(t);
  await ok(f, 'FROM busybox\nARG API_TOKEN\nARG VERSION\nRUN true\n', ['--build-arg', 'API_TOKEN=swordfish-123', '--build-arg', 'VERSION=7.7.7']);
  const dir = join(f.root, 'cache', 'steps', 'inputs');
  const texts = await Promise.all((await readdir(dir)).map((n) => readFile(join(dir, n), 'utf8')));
  t.true(texts.some((x) => x.includes('VERSION=7.7.7')), 'the documents are where the test looks');
  t.false(texts.some((x) => x.includes('swordfish-123')));
});

testSerialIf(missing, 'cache-miss reasons: name the first re-run ancestor across stages and say "WORKDIR changed" when an earlier step changes', async (t) => {
  const f = await makeFixture(t, { 'a.txt': '1\n' });
  const df = (dir: string): string => `FROM busybox AS build\nCOPY a.txt /a\nRUN cat /a > /b\nFROM busybox\nWORKDIR ${dir}\nCOPY --from=build /b /c\nRUN cat /c > x\n`;
  await ok(f, df('/w1'));
  await writeFile(join(f.context, 'a.txt'), '2\n');
  const r = await ok(f, df('/w1'));
  t.is(reasonFor(r.events, 'COPY a.txt'), 'file a.txt changed');
  t.is(reasonFor(r.events, 'RUN cat /a'), 'parent step re-ran: [build 2/3] COPY a.txt /a');
  t.is(reasonFor(r.events, 'COPY --from=build'), 'parent step re-ran: [build 2/3] COPY a.txt /a');
  t.is(reasonFor(r.events, 'RUN cat /c'), 'parent step re-ran: [build 2/3] COPY a.txt /a', 'the first re-run ancestor, not the direct parent');
  const w = await ok(f, df('/w2'));
  t.is(reasonFor(w.events, 'WORKDIR'), 'WORKDIR changed: /w1 -> /w2');
  t.regex(reasonFor(w.events, 'RUN cat /c') ?? '', /^WORKDIR changed: \/w1 -> \/w2; parent step re-ran: .*WORKDIR \/w2$/);
});
