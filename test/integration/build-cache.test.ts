import { PassThrough } from 'node:stream';
import { readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli } from '../../src/cli/app.js';
import type { BuildEvent } from '../../src/core/index.js';
import { checkStore, openStore } from '../../src/store/index.js';
import { readCacheConfig } from '../../src/solve/index.js';
import { cli } from '../cli/run-cli.js';
import { testSerialIf } from '../helpers/capability.js';
import { build, buildMissing, makeFixture, readImage, stepsOf, unpackImage } from './build-helpers.js';

const missing = await buildMissing();

const DF = [
  'FROM busybox',
  'RUN echo one > /one',
  'COPY app.txt /app/',
  'RUN cat /app/app.txt > /copy-of-app',
  'CMD ["sh"]',
  '',
].join('\n');

const RUN_ONE = '[2/5] RUN echo one > /one';
const COPY = '[3/5] COPY app.txt /app/';
const RUN_TWO = '[4/5] RUN cat /app/app.txt > /copy-of-app';

testSerialIf(missing, 'tsbuild build: serves unchanged steps from the cache and re-runs from the first changed content when building again', async (t) => {
  const f = await makeFixture(t, { 'app.txt': 'v1\n' });
  const env = { SOURCE_DATE_EPOCH: '1700000000' };
  const first = await build(f, DF, ['-t', 'c:1'], env);
  t.is(first.code, 0, first.stderr);
  t.deepEqual(stepsOf(first.events).started.filter((n) => !n.includes('FROM')), [RUN_ONE, COPY, RUN_TWO]);
  const image1 = await readImage(f.root, 'c:1');

  // Same inputs: every step is a hit, nothing runs, and the image is byte-identical.
  const second = await build(f, DF, ['-t', 'c:2'], env);
  t.is(second.code, 0, second.stderr);
  t.deepEqual(stepsOf(second.events).started.filter((n) => !n.includes('FROM')), []);
  t.deepEqual(stepsOf(second.events).cached, [RUN_ONE, COPY, RUN_TWO]);
  t.is((await readImage(f.root, 'c:2')).manifestDigest, image1.manifestDigest);

  // A new mtime alone is not a change (the key is content, not time).
  await utimes(join(f.context, 'app.txt'), new Date(), new Date(Date.now() + 5000));
  const touched = await build(f, DF, ['-t', 'c:3'], env);
  t.deepEqual(stepsOf(touched.events).started.filter((n) => !n.includes('FROM')), []);

  // Changed content: the first RUN stays cached, the COPY and everything after it run again.
  await writeFile(join(f.context, 'app.txt'), 'v2\n');
  const changed = await build(f, DF, ['-t', 'c:4'], env);
  t.is(changed.code, 0, changed.stderr);
  t.deepEqual(stepsOf(changed.events).cached, [RUN_ONE]);
  t.deepEqual(stepsOf(changed.events).started.filter((n) => !n.includes('FROM')), [COPY, RUN_TWO]);
  const reasons = changed.events.flatMap((e) => (e.type === 'vertex.miss' ? [[e.vertex, e.reason]] : []));
  t.deepEqual(reasons, [['s0.2', 'file app.txt changed'], ['s0.3', `parent step re-ran: ${COPY}`]]);
  t.not((await readImage(f.root, 'c:4')).manifestDigest, image1.manifestDigest);

  // --no-cache runs everything.
  const fresh = await build(f, DF, ['-t', 'c:5', '--no-cache'], env);
  t.is(fresh.code, 0, fresh.stderr);
  t.deepEqual(stepsOf(fresh.events).cached, []);
  t.deepEqual(stepsOf(fresh.events).started.filter((n) => !n.includes('FROM')), [RUN_ONE, COPY, RUN_TWO]);
  t.true(fresh.events.some((e) => e.type === 'vertex.miss' && e.reason === 'cache disabled (--no-cache)'));
});

testSerialIf(missing, 'tsbuild build: runs a step once when two parallel stages have the same cache key', async (t) => {
  const f = await makeFixture(t);
  const df = [
    'FROM busybox AS a',
    'RUN echo same > /f',
    'FROM busybox AS b',
    'RUN echo same > /f',
    'FROM scratch',
    'COPY --from=a /f /a',
    'COPY --from=b /f /b',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'dedupe:1']);
  t.is(r.code, 0, r.stderr);
  t.is(stepsOf(r.events).started.filter((n) => n.includes('RUN echo same')).length, 1, r.stderr);
  const img = await readImage(f.root, 'dedupe:1');
  t.is(img.manifest.layers.length, 2);
});

testSerialIf(missing, 'tsbuild build: cancels the other stage and reports the failure when one of two parallel stages fails', async (t) => {
  const f = await makeFixture(t);
  const df = [
    'FROM busybox AS slow',
    'RUN echo started && sleep 60',
    'FROM busybox AS bad',
    'RUN sleep 0.5 && exit 4',
    'FROM scratch',
    'COPY --from=slow /bin/busybox /a',
    'COPY --from=bad /bin/busybox /b',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'par:1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^Dockerfile:4: RUN_EXIT: "sleep 0.5 && exit 4" exited 4$/m);
  const slowDone = r.events.find((e): e is Extract<BuildEvent, { type: 'vertex.done' }> => e.type === 'vertex.done' && e.vertex === 's0.1');
  t.is(slowDone?.error, 'cancelled');
  t.deepEqual((await checkStore(await openStore(f.root))).problems, []);
});

testSerialIf(missing, 'tsbuild build: stops cleanly with SOLVE_ABORTED when cancelled in the middle of a RUN', async (t) => {
  const f = await makeFixture(t);
  await writeFile(join(f.context, 'Dockerfile'), 'FROM busybox\nRUN echo started && sleep 60\n');
  const controller = new AbortController();
  const stderr = new PassThrough();
  let text = '';
  stderr.on('data', (c: Buffer) => {
    text += c.toString();
    if (text.includes('"data":"started"')) controller.abort(new Error('Ctrl-C'));
  });
  const stdin = new PassThrough();
  stdin.end();
  const code = await runCli(['--root', f.root, 'build', '--progress=rawjson', '-t', 'stop:1', '.'], {
    stdin, stdout: new PassThrough(), stderr, env: f.env, cwd: f.context, signal: controller.signal,
  });
  t.is(code, 130, text);
  t.regex(text, /SOLVE_ABORTED: the build was cancelled/);
  const store = await openStore(f.root);
  t.false((await store.refs.list()).some((e) => e.name?.includes('stop') === true));
});

testSerialIf(missing, 'tsbuild build: skips the cache only for the named stage when --no-cache-filter is given', async (t) => {
  const f = await makeFixture(t);
  const df = 'FROM busybox AS a\nRUN echo a > /a\nFROM busybox AS b\nRUN echo b > /b\nFROM b\nCOPY --from=a /a /a\n';
  t.is((await build(f, df, ['-t', 'ncf:1'])).code, 0);
  const r = await build(f, df, ['-t', 'ncf:1', '--no-cache-filter', 'a']);
  t.is(r.code, 0, r.stderr);
  const steps = stepsOf(r.events);
  t.deepEqual(steps.started.filter((n) => n.includes('RUN')), ['[a 2/2] RUN echo a > /a']);
  t.deepEqual(steps.cached.filter((n) => n.includes('RUN')), ['[b 2/2] RUN echo b > /b']);
  t.true(r.events.some((e) => e.type === 'vertex.miss' && e.reason === 'cache disabled for this stage (--no-cache-filter)'));
  const bad = await build(f, df, ['--no-cache-filter', 'nope']);
  t.is(bad.code, 125);
  t.regex(bad.stderr, /--no-cache-filter: no stage "nope" in the build\nhint: stages: a, b/);
});

const LAZY_DF = [
  'FROM busybox AS builder',
  'RUN echo built > /artifact && echo more > /other',
  'FROM busybox',
  'ARG V=1',
  'COPY --from=builder /artifact /artifact',
  'RUN --mount=type=bind,from=builder,target=/b cat /b/artifact > /bound && echo $V > /v',
  '',
].join('\n');
const LAZY_BUILDER_RUN = '[builder 2/2] RUN echo built > /artifact && echo more > /other';

/** Builds LAZY_DF, then `tsbuild prune`s the builder stage's layer (no image holds it): its record no longer counts. */
async function builtAndPruned(t: Parameters<typeof makeFixture>[0]): Promise<Awaited<ReturnType<typeof makeFixture>>> {
  const f = await makeFixture(t);
  const first = await build(f, LAZY_DF, ['-t', 'lazy:1']);
  t.is(first.code, 0, first.stderr);
  t.true(stepsOf(first.events).started.includes(LAZY_BUILDER_RUN));
  const pruned = await cli(['--root', f.root, 'prune'], { cwd: f.context, env: f.env });
  t.is(pruned.code, 0, pruned.stderr);
  t.regex(pruned.stdout, /Deleted: sha256:/, 'prune removed the builder layer');
  return f;
}

testSerialIf(missing, 'tsbuild build: does not run a stage whose results only cache hits use when its layers were pruned (lazy solving)', async (t) => {
  const f = await builtAndPruned(t);
  const image1 = await readImage(f.root, 'lazy:1');
  const again = await build(f, LAZY_DF, ['-t', 'lazy:2']);
  t.is(again.code, 0, again.stderr);
  const steps = stepsOf(again.events);
  t.deepEqual(steps.started.filter((n) => !n.includes('FROM')), [], 'nothing ran: the COPY --from and the RUN binding the builder are hits');
  t.false(steps.started.some((n) => n.startsWith('[builder')), 'the builder stage is not even started');
  t.false(steps.cached.some((n) => n.startsWith('[builder')), 'and not reported as cached: it was not looked at');
  t.true(again.events.some((e) => e.type === 'info' && e.message.startsWith('skipped 2 steps') && e.message.includes(LAZY_BUILDER_RUN)), again.stderr);
  t.regex(again.stderr, /"skipped 2 steps/);
  t.is((await readImage(f.root, 'lazy:2')).manifestDigest, image1.manifestDigest);

  // The RUN --mount=type=bind,from=builder misses (new ARG value): now the builder is needed and runs.
  const changed = await build(f, LAZY_DF, ['-t', 'lazy:3', '--build-arg', 'V=2']);
  t.is(changed.code, 0, changed.stderr);
  const ran = stepsOf(changed.events).started.filter((n) => !n.includes('FROM'));
  t.deepEqual(ran.sort(), [LAZY_BUILDER_RUN, '[stage-1 3/3] RUN --mount=type=bind,from=builder,target=/b cat /b/artifact > /bound && echo $V > /v'].sort());
  const img = await readImage(f.root, 'lazy:3');
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is(await readFile(join(dest, 'bound'), 'utf8'), 'built\n');
  t.is(await readFile(join(dest, 'v'), 'utf8'), '2\n');
});

testSerialIf(missing, 'tsbuild build: --cache-to mode=max runs a pruned stage nothing else needs, so every step is exported', async (t) => {
  const f = await builtAndPruned(t);
  const dir = join(f.dir, 'cache-max');
  const r = await build(f, LAZY_DF, ['-t', 'lazy:2', `--cache-to=type=local,dest=${dir},mode=max`]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(stepsOf(r.events).started.filter((n) => !n.includes('FROM')), [LAZY_BUILDER_RUN]);
  const config = await readCacheConfig({ kind: 'local', dir, tag: 'latest' }, await openStore(join(f.dir, 'probe')));
  t.deepEqual(config?.records.map((x) => x.name).sort(), [
    LAZY_BUILDER_RUN,
    '[stage-1 2/3] COPY --from=builder /artifact /artifact',
    '[stage-1 3/3] RUN --mount=type=bind,from=builder,target=/b cat /b/artifact > /bound && echo $V > /v',
  ].sort());
  // mode=min exports only the final image's steps, so it does not need the builder: nothing runs.
  await cli(['--root', f.root, 'prune'], { cwd: f.context, env: f.env });
  const min = await build(f, LAZY_DF, ['-t', 'lazy:3', `--cache-to=type=local,dest=${join(f.dir, 'cache-min')}`]);
  t.is(min.code, 0, min.stderr);
  t.deepEqual(stepsOf(min.events).started.filter((n) => !n.includes('FROM')), []);
});

testSerialIf(missing, 'tsbuild build: runs RUN steps over a chain of more than 100 layers when the Dockerfile has that many steps', async (t) => {
  const f = await makeFixture(t);
  const lines = ['FROM busybox'];
  for (let i = 0; i < 110; i++) lines.push(`COPY <<EOF /layers/f${i}\n${i}\nEOF`);
  lines.push('RUN ls /layers | wc -l > /count');
  const r = await build(f, `${lines.join('\n')}\n`, ['-t', 'long:1']);
  t.is(r.code, 0, r.stderr.slice(-2000));
  const img = await readImage(f.root, 'long:1');
  t.is(img.manifest.layers.length, 112);
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is(await readFile(join(dest, 'count'), 'utf8'), '110\n');
});
