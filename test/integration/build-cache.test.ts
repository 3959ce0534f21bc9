import { PassThrough } from 'node:stream';
import { readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli } from '../../src/cli/app.js';
import type { BuildEvent } from '../../src/core/index.js';
import { checkStore, openStore } from '../../src/store/index.js';
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
  t.deepEqual(reasons, [['s0.2', 'no cache record'], ['s0.3', 'parent step re-ran']]);
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
