import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { testSerialIf } from '../helpers/capability.js';
import { build, buildMissing, lstat, makeFixture, readImage, readUnpacked, stat, stepsOf, unpackImage, unpackedImage } from './build-helpers.js';

const run = promisify(execFile);
const missing = await buildMissing();

testSerialIf(missing, 'tsbuild build: applies SHELL, exec form, tmpfs mounts, --network and ARGs to RUN when given', async (t) => {
  const f = await makeFixture(t);
  const df = [
    'FROM busybox',
    'ARG WHO=arg-value',
    'RUN ["/bin/sh", "-c", "echo exec:$WHO > /exec"]',
    'SHELL ["/bin/sh", "-ec"]',
    'RUN --mount=type=tmpfs,target=/scratch echo in-tmpfs > /scratch/x && cat /scratch/x > /from-tmpfs',
    'RUN --network=none ip link | grep -c "^[0-9]" > /links-none',
    'RUN echo "$0 $-" > /shell',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'steps:1', '--build-arg', 'WHO=cli']);
  t.is(r.code, 0, r.stderr);
  const img = await readImage(f.root, 'steps:1');
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is(await readUnpacked(dest, 'exec'), 'exec:cli\n');
  t.is(await readUnpacked(dest, 'from-tmpfs'), 'in-tmpfs\n');
  await t.throwsAsync(stat(join(dest, 'scratch/x')));
  t.is(await readUnpacked(dest, 'links-none'), '1\n');
  t.regex(await readUnpacked(dest, 'shell'), /^\/bin\/sh .*e/);
  // ARG values are not in the image config.
  t.false((img.config.config?.Env ?? []).some((e) => e.startsWith('WHO=')));
});

testSerialIf(missing, 'tsbuild build: builds only the stages the target needs when --target is given', async (t) => {
  const f = await makeFixture(t);
  const df = [
    'FROM busybox AS unused',
    'RUN echo unused > /u',
    'FROM busybox AS base',
    'RUN echo base > /b',
    'FROM base AS final',
    'RUN cat /b > /c',
    'FROM busybox',
    'RUN exit 9',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'tgt:1', '--target', 'final']);
  t.is(r.code, 0, r.stderr);
  const started = stepsOf(r.events).started;
  t.false(started.some((n) => n.includes('unused') || n.includes('exit 9')), started.join('\n'));
  const img = await readImage(f.root, 'tgt:1');
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is(await readUnpacked(dest, 'c'), 'base\n');
});

testSerialIf(missing, 'tsbuild build: runs ONBUILD triggers of a base image built before when it is used in FROM', async (t) => {
  const f = await makeFixture(t, { 'app.txt': 'app\n' });
  let r = await build(f, 'FROM busybox\nONBUILD COPY app.txt /onbuild-app\nONBUILD RUN echo triggered > /trig\n', ['-t', 'parent:1']);
  t.is(r.code, 0, r.stderr);
  r = await build(f, 'FROM parent:1\nRUN cat /trig /onbuild-app > /both\n', ['-t', 'child:1']);
  t.is(r.code, 0, r.stderr);
  const img = await readImage(f.root, 'child:1');
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is(await readUnpacked(dest, 'both'), 'triggered\napp\n');
  t.deepEqual(img.config.config?.OnBuild ?? [], []);
});

testSerialIf(missing, 'tsbuild build: follows Docker COPY rules for wildcards, .dockerignore, --chown names, --chmod and ADD of plain files', async (t) => {
  const f = await makeFixture(t, {
    'src/a.js': 'a', 'src/b.js': 'b', 'src/c.txt': 'c', 'src/secret.js': 'no', 'plain.txt': 'plain',
    '.dockerignore': 'src/secret.js\n',
  });
  const df = [
    'FROM busybox',
    'COPY src/*.js /js/',
    'COPY --chown=nobody --chmod=0600 plain.txt /owned',
    'ADD plain.txt /added.txt',
    'COPY src /tree',
    '',
  ].join('\n');
  let r = await build(f, df, ['-t', 'copy:1']);
  t.is(r.code, 0, r.stderr);
  const img = await readImage(f.root, 'copy:1');
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.is(await readUnpacked(dest, 'js/a.js'), 'a');
  t.is(await readUnpacked(dest, 'js/b.js'), 'b');
  await t.throwsAsync(stat(join(dest, 'js/c.txt')));
  await t.throwsAsync(stat(join(dest, 'js/secret.js')));
  await t.throwsAsync(stat(join(dest, 'tree/secret.js')));
  t.is(await readUnpacked(dest, 'tree/c.txt'), 'c');
  const owned = await lstat(join(dest, 'owned'));
  t.is(owned.uid, 65534);
  t.is(owned.gid, 65534);
  t.is(owned.mode & 0o777, 0o600);
  t.is(await readUnpacked(dest, 'added.txt'), 'plain');

  // A source outside the context is refused (ADD of archives: build-add.test.ts).
  r = await build(f, 'FROM busybox\nCOPY ../outside /x\n');
  t.regex(r.stderr, /Dockerfile:2: CTX_OUTSIDE/);
});

testSerialIf(missing, 'tsbuild build: records a directory replaced by a file as a whiteout when a RUN does it', async (t) => {
  const f = await makeFixture(t);
  const r = await build(f, 'FROM busybox\nRUN mkdir -p /d/sub && echo x > /d/sub/f\nRUN rm -rf /d && echo file > /d\n', ['-t', 'wh:1']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'wh:1');
  t.true((await lstat(join(dest, 'd'))).isFile());
  t.is(await readUnpacked(dest, 'd'), 'file\n');
});

testSerialIf(missing, 'tsbuild build: builds FROM scratch with COPY and labels from --label when nothing else is given', async (t) => {
  const f = await makeFixture(t, { 'hello.txt': 'hi\n' });
  await writeFile(join(f.context, 'other.txt'), 'other\n');
  const r = await build(f, 'FROM scratch\nCOPY hello.txt /\nLABEL a=1\n', ['--label', 'b=2', '-q']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
  const id = r.stdout.trim();
  const img = await readImage(f.root, id);
  t.deepEqual(img.config.config?.Labels, { a: '1', b: '2' });
  t.is(img.manifest.layers.length, 1);
});

testSerialIf(missing, 'tsbuild build: keeps RUN --mount=type=cache contents between builds and out of the layers when used', async (t) => {
  const f = await makeFixture(t);
  const df = 'FROM busybox\nRUN --mount=type=cache,target=/var/cache/app,uid=65534,sharing=locked echo run >> /var/cache/app/log && cat /var/cache/app/log | wc -l > /runs && stat -c %u /var/cache/app > /owner\n';
  let r = await build(f, df, ['-t', 'cm:1']);
  t.is(r.code, 0, r.stderr);
  r = await build(f, df, ['-t', 'cm:2', '--no-cache']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'cm:2');
  t.is((await readUnpacked(dest, 'runs')).trim(), '2');
  t.is(await readUnpacked(dest, 'owner'), '65534\n');
  await t.throwsAsync(stat(join(dest, 'var/cache/app/log')));
});

testSerialIf(missing, 'tsbuild build: writes COPY here-documents as files and runs a RUN here-document as a script when given', async (t) => {
  const f = await makeFixture(t, { 'plain.txt': 'plain\n' });
  const df = [
    '# syntax=docker/dockerfile:1',
    'FROM busybox',
    'ARG NAME=world',
    'COPY <<EOF /etc/greeting',
    'hello ${NAME}',
    'EOF',
    'COPY <<one.txt <<two.txt plain.txt /multi/',
    'first',
    'one.txt',
    'second',
    'two.txt',
    'RUN <<EOF',
    'echo "script $NAME" > /script-out',
    'cat /etc/greeting >> /script-out',
    'EOF',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'heredoc:1']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'heredoc:1');
  t.is(await readUnpacked(dest, 'etc/greeting'), 'hello world\n');
  t.is(await readUnpacked(dest, 'multi/one.txt'), 'first\n');
  t.is(await readUnpacked(dest, 'multi/two.txt'), 'second\n');
  t.is(await readUnpacked(dest, 'multi/plain.txt'), 'plain\n');
  t.is((await lstat(join(dest, 'multi/one.txt'))).mode & 0o777, 0o644);
  t.is(await readUnpacked(dest, 'script-out'), 'script world\nhello world\n');
  await t.throwsAsync(stat(join(dest, 'dev/pipes')));
});

testSerialIf(missing, 'tsbuild build: copies files out of a store image when COPY --from names an image', async (t) => {
  const f = await makeFixture(t);
  const r = await build(f, 'FROM scratch\nCOPY --from=busybox /etc/passwd /bin/busybox /out/\n', ['-t', 'fromimg:1']);
  t.is(r.code, 0, r.stderr);
  const img = await readImage(f.root, 'fromimg:1');
  t.is(img.manifest.layers.length, 1);
  const dest = join(f.dir, 'unpacked');
  await unpackImage(img, dest);
  t.regex(await readUnpacked(dest, 'out/passwd'), /^root:x:0:0:/);
  t.true((await lstat(join(dest, 'out/busybox'))).isFile());
  t.is((await lstat(join(dest, 'out/busybox'))).mode & 0o777, 0o755);
});
