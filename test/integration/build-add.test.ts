import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { testSerialIf } from '../helpers/capability.js';
import { cli } from '../cli/run-cli.js';
import { buildTar } from '../layer/helpers.js';
import { build, buildMissing, lstat, makeFixture, readImage, readUnpacked, stepsOf, unpackImage, unpackedImage } from './build-helpers.js';

const run = promisify(execFile);
const missing = await buildMissing();
const gitMissing = missing ?? (await run('git', ['--version']).then(() => undefined, () => 'git is not installed'));

const sha256 = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

/** A local http server on 127.0.0.1 serving `files` (path -> body), counting requests; closed on teardown. */
async function startFileServer(t: ExecutionContext, files: Map<string, string>, lastModified: Date): Promise<{ base: string; hits: Map<string, number> }> {
  const hits = new Map<string, number>();
  const server: Server = createHttpServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (path === '/redirect') {
      res.writeHead(302, { location: '/dir/file.txt' }).end();
      return;
    }
    const body = files.get(path);
    if (body === undefined) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'last-modified': lastModified.toUTCString() }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

testSerialIf(missing, 'tsbuild build: ADD extracts local tar, tar.gz, tar.bz2 and tar.xz archives and copies other files when given', async (t) => {
  const f = await makeFixture(t);
  const tar = buildTar([
    { name: 'app/', type: 'directory', mode: 0o750 },
    { name: 'app/a.txt', content: 'from the archive', mode: 0o640, uid: 1000, gid: 1000, mtime: 1_500_000_000 },
    { name: 'app/link', type: 'symlink', linkname: 'a.txt' },
  ]);
  await writeFile(join(f.context, 'a.tar'), tar);
  for (const [tool, ext] of [['gzip', 'gz'], ['bzip2', 'bz2'], ['xz', 'xz']] as const) {
    const out = await run(tool, ['-c', join(f.context, 'a.tar')], { encoding: 'buffer', maxBuffer: 1 << 20 });
    await writeFile(join(f.context, `a.tar.${ext}`), out.stdout);
  }
  await writeFile(join(f.context, 'notes.gz'), (await run('gzip', ['-c', '/etc/hostname'], { encoding: 'buffer' })).stdout);
  const df = [
    'FROM busybox',
    'ADD a.tar /x',
    'ADD a.tar.gz a.tar.bz2 /y/',
    'ADD a.tar.xz /z/',
    'ADD notes.gz /n/',
    'ADD --chown=nobody --chmod=u+x a.tar /owned/',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'add:1']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'add:1');
  for (const dir of ['x', 'y', 'z']) t.is(await readUnpacked(dest, `${dir}/app/a.txt`), 'from the archive', dir);
  const a = await lstat(join(dest, 'x/app/a.txt'));
  t.is(a.mode & 0o7777, 0o640);
  t.deepEqual([a.uid, a.gid], [1000, 1000]);
  t.is(a.mtimeMs, 1_500_000_000_000);
  t.true((await lstat(join(dest, 'x/app/link'))).isSymbolicLink());
  t.is((await lstat(join(dest, 'x/app'))).mode & 0o777, 0o750);
  t.deepEqual(await readdir(join(dest, 'n')), ['notes.gz'], 'a compressed file that is not a tar is copied as it is');
  const owned = await lstat(join(dest, 'owned/app/a.txt'));
  t.deepEqual([owned.uid, owned.gid, owned.mode & 0o777], [65534, 65534, 0o740]);
});

testSerialIf(missing, 'tsbuild build: ADD refuses a hostile archive and names the line when a member escapes', async (t) => {
  const f = await makeFixture(t);
  const outside = join(f.dir, 'outside');
  await mkdir(outside);
  await writeFile(join(f.context, 'dotdot.tar'), buildTar([{ name: '../../../outside/evil', content: 'x' }]));
  let r = await build(f, 'FROM busybox\nADD dotdot.tar /x/\n');
  t.not(r.code, 0);
  t.regex(r.stderr, /Dockerfile:2: SOLVE_ADD_EXTRACT: ADD dotdot\.tar: cannot extract the archive/);
  // Through a symlink to an absolute directory: confined to the image.
  await writeFile(join(f.context, 'through.tar'), buildTar([{ name: 'l', type: 'symlink', linkname: outside }, { name: 'l/evil', content: 'x' }]));
  r = await build(f, 'FROM busybox\nADD through.tar /t/\n', ['-t', 'through:1']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(await readdir(outside), []);
  const dest = await unpackedImage(f, 'through:1');
  t.is(await readUnpacked(dest, join('t', outside, 'evil')), 'x');
  t.false(existsSync(join(f.root, 'tmp', 'add-')));
  t.deepEqual((await readdir(join(f.root, 'tmp'))).filter((n) => n.startsWith('add-')), [], 'staging directories are removed');
});

testSerialIf(missing, 'tsbuild build: ADD downloads http URLs with Last-Modified mtimes, --checksum and Docker naming when given a URL', async (t) => {
  const f = await makeFixture(t);
  const files = new Map([['/dir/file.txt', 'version 1\n']]);
  const lastModified = new Date('2021-03-04T05:06:07Z');
  const srv = await startFileServer(t, files, lastModified);
  const df = (checksum: string): string => [
    'FROM busybox',
    `ADD ${srv.base}/dir/file.txt /dl/`,
    `ADD ${srv.base}/dir/file.txt /renamed`,
    `ADD --checksum=${checksum} --chmod=0644 ${srv.base}/dir/file.txt /checked/`,
    `ADD ${srv.base}/redirect /r/`,
    '',
  ].join('\n');
  let r = await build(f, df(sha256('version 1\n')), ['-t', 'url:1']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'url:1');
  t.is(await readUnpacked(dest, 'dl/file.txt'), 'version 1\n');
  t.is(await readUnpacked(dest, 'renamed'), 'version 1\n');
  t.is(await readUnpacked(dest, 'checked/file.txt'), 'version 1\n');
  t.is(await readUnpacked(dest, 'r/redirect'), 'version 1\n', 'named after the URL given, not the redirect target');
  const dl = await lstat(join(dest, 'dl/file.txt'));
  t.is(dl.mode & 0o777, 0o600);
  t.is(dl.mtimeMs, lastModified.getTime());
  t.is((await lstat(join(dest, 'checked/file.txt'))).mode & 0o777, 0o644);

  // Unchanged content: every URL is downloaded again, the steps are cached; the --checksum step is
  // keyed by its checksum and not downloaded at all.
  const before = srv.hits.get('/dir/file.txt') ?? 0;
  r = await build(f, df(sha256('version 1\n')), ['-t', 'url:2']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(stepsOf(r.events).started.filter((n) => n.includes('ADD')), []);
  t.is((srv.hits.get('/dir/file.txt') ?? 0) - before, 3, '/dl/, /renamed and the redirect target; never the --checksum one');

  // Changed content: the steps without --checksum run again; a stale --checksum fails naming the line.
  files.set('/dir/file.txt', 'version 2\n');
  r = await build(f, df(sha256('version 2\n')), ['-t', 'url:3']);
  t.is(r.code, 0, r.stderr);
  t.true(stepsOf(r.events).started.some((n) => n.includes('/dl/')));
  r = await build(f, `FROM busybox\nADD --checksum=${sha256('version 1\n')} ${srv.base}/dir/file.txt /c/\n`, ['--no-cache']);
  t.not(r.code, 0);
  t.regex(r.stderr, /Dockerfile:2: SOLVE_ADD_CHECKSUM: ADD http:\/\/127\.0\.0\.1:\d+\/dir\/file\.txt: checksum mismatch: expected sha256:[0-9a-f]{64}, got sha256:/);
  r = await build(f, `FROM busybox\nRUN true\nADD ${srv.base}/missing /m/\n`);
  t.not(r.code, 0);
  t.regex(r.stderr, /Dockerfile:3: SOLVE_ADD_DOWNLOAD: ADD http:\/\/127\.0\.0\.1:\d+\/missing: download failed: HTTP 404/);
  r = await build(f, 'FROM busybox\nADD --checksum=sha256:abc http://127.0.0.1:1/x /x\n');
  t.regex(r.stderr, /Dockerfile:2: SOLVE_BAD_COPY: invalid --checksum/);
  t.deepEqual((await readdir(join(f.root, 'tmp'))).filter((n) => n.startsWith('add-')), [], 'downloads are removed');
});

/** A free TCP port on 127.0.0.1 (closed again before it is returned). */
async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`git daemon did not listen on ${port}`);
}

/** Serves the bare repositories under `served` with `git daemon` on 127.0.0.1 until the test ends; resolves to its port. */
async function startGitDaemon(t: ExecutionContext, served: string): Promise<number> {
  const port = await freePort();
  const daemon = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${served}`, '--listen=127.0.0.1', `--port=${port}`, served], { stdio: 'ignore' });
  t.teardown(async () => {
    if (daemon.exitCode === null) {
      const gone = new Promise((resolve) => daemon.once('exit', resolve));
      daemon.kill('SIGTERM');
      await gone;
    }
  });
  await waitForPort(port);
  return port;
}

testSerialIf(gitMissing, 'tsbuild build: ADD fetches a git repository at a ref and subdirectory, keeping .git only with --keep-git-dir', async (t) => {
  const f = await makeFixture(t);
  const work = join(f.dir, 'work');
  const served = join(f.dir, 'served');
  await mkdir(join(work, 'docs'), { recursive: true });
  await mkdir(served);
  const git = (...args: string[]) => run('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@e', ...args]);
  await run('git', ['init', '-q', '-b', 'main', work]);
  await writeFile(join(work, 'README'), 'v1\n');
  await writeFile(join(work, 'docs/guide.md'), 'guide v1\n');
  await symlink('/etc', join(work, 'escape'));
  await git('add', '.');
  await git('commit', '-q', '-m', 'one');
  await git('tag', '-a', 'v1', '-m', 'v1');
  await writeFile(join(work, 'README'), 'v2\n');
  await git('commit', '-q', '-am', 'two');
  await run('git', ['clone', '-q', '--bare', work, join(served, 'repo.git')]);
  const port = await startGitDaemon(t, served);
  const url = `git://127.0.0.1:${port}/repo.git`;
  const df = [
    'FROM busybox',
    `ADD ${url} /src`,
    `ADD ${url}#v1:docs /docs/`,
    `ADD --keep-git-dir ${url}#main /kept`,
    '',
  ].join('\n');
  let r = await build(f, df, ['-t', 'git:1']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'git:1');
  t.is(await readUnpacked(dest, 'src/README'), 'v2\n');
  t.false(existsSync(join(dest, 'src/.git')));
  t.deepEqual(await readdir(join(dest, 'docs')), ['guide.md']);
  t.is(await readUnpacked(dest, 'docs/guide.md'), 'guide v1\n');
  t.true((await lstat(join(dest, 'kept/.git'))).isDirectory());
  const readme = await lstat(join(dest, 'src/README'));
  t.deepEqual([readme.uid, readme.gid], [0, 0]);
  const commitTime = Number((await git('log', '-1', '--format=%ct')).stdout.trim());
  t.is(readme.mtimeMs, commitTime * 1000, 'files carry the commit time');

  // Same commits: cached. A new commit on main: the steps that follow main run again.
  r = await build(f, df, ['-t', 'git:2']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(stepsOf(r.events).started.filter((n) => n.includes('ADD')), []);
  await writeFile(join(work, 'README'), 'v3\n');
  await git('commit', '-q', '-am', 'three');
  await git('push', '-q', join(served, 'repo.git'), 'main');
  r = await build(f, df, ['-t', 'git:3']);
  t.is(r.code, 0, r.stderr);
  const started = stepsOf(r.events).started.filter((n) => n.includes('ADD'));
  t.true(started.some((n) => n.includes(' /src')), started.join('\n'));

  r = await build(f, `FROM busybox\nADD ${url}#nosuchref /x\n`);
  t.not(r.code, 0);
  t.regex(r.stderr, /Dockerfile:2: SOLVE_ADD_GIT: ADD git:\/\/127\.0\.0\.1:\d+\/repo\.git#nosuchref: git fetch failed/);
  r = await build(f, `FROM busybox\nADD ${url}#main:nodir /x\n`);
  t.regex(r.stderr, /Dockerfile:2: SOLVE_ADD_GIT: .*directory "nodir" not found/);
  r = await build(f, `FROM busybox\nADD ${url}#main:escape /x\n`);
  t.regex(r.stderr, /Dockerfile:2: SOLVE_ADD_GIT: .*"escape" leads outside the repository/);
  t.true((await lstat(join(dest, 'src/escape'))).isSymbolicLink(), 'symlinks in the repository stay symlinks');
  t.deepEqual((await readdir(join(f.root, 'tmp'))).filter((n) => n.startsWith('add-')), [], 'checkouts are removed');
});

testSerialIf(gitMissing, 'tsbuild build: ADD of a git repository checks out its submodules (recursively) without their .git files', async (t) => {
  const f = await makeFixture(t);
  const served = join(f.dir, 'served');
  await mkdir(served);
  const port = await startGitDaemon(t, served);
  const base = `git://127.0.0.1:${port}`;
  const gitIn = (dir: string) => (...args: string[]) => run('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@e', '-c', 'protocol.file.allow=always', ...args]);
  /** Makes a repository with `files`, runs `more` in it, commits, and serves it bare as NAME.git. */
  const makeRepo = async (name: string, files: Record<string, string>, more?: (git: ReturnType<typeof gitIn>) => Promise<void>): Promise<void> => {
    const work = join(f.dir, `work-${name}`);
    await mkdir(work);
    await run('git', ['init', '-q', '-b', 'main', work]);
    for (const [p, text] of Object.entries(files)) await writeFile(join(work, p), text);
    const git = gitIn(work);
    await git('add', '.');
    await more?.(git);
    await git('commit', '-q', '-m', name);
    await run('git', ['clone', '-q', '--bare', work, join(served, `${name}.git`)]);
  };
  await makeRepo('inner', { 'inner.txt': 'innermost\n' });
  await makeRepo('lib', { 'lib.txt': 'library\n' }, (git) => git('submodule', '-q', 'add', `${base}/inner.git`, 'deps/inner').then(() => undefined));
  await makeRepo('app', { 'app.txt': 'application\n' }, (git) => git('submodule', '-q', 'add', `${base}/lib.git`, 'vendor/lib').then(() => undefined));

  const r = await build(f, `FROM busybox\nADD ${base}/app.git /app\nADD ${base}/app.git#main:vendor /vendor\n`, ['-t', 'sub:1']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpackedImage(f, 'sub:1');
  t.is(await readUnpacked(dest, 'app/app.txt'), 'application\n');
  t.is(await readUnpacked(dest, 'app/vendor/lib/lib.txt'), 'library\n');
  t.is(await readUnpacked(dest, 'app/vendor/lib/deps/inner/inner.txt'), 'innermost\n');
  t.is(await readUnpacked(dest, 'vendor/lib/deps/inner/inner.txt'), 'innermost\n');
  for (const p of ['app/.git', 'app/vendor/lib/.git', 'app/vendor/lib/deps/inner/.git', 'vendor/lib/.git', 'vendor/lib/deps/inner/.git']) t.false(existsSync(join(dest, p)), p);
  t.true(existsSync(join(dest, 'app/.gitmodules')));
  t.deepEqual((await readdir(join(f.root, 'tmp'))).filter((n) => n.startsWith('add-')), [], 'checkouts are removed');

  // A store reached through a symlink (the checkout's path is then not its real path): still no .git files.
  const linked = join(f.dir, 'linked-root');
  await symlink(join(f.dir, 'other-root'), linked);
  await mkdir(join(f.dir, 'other-root'));
  await writeFile(join(f.context, 'Dockerfile'), `FROM scratch\nADD ${base}/app.git#main:vendor /vendor\n`);
  const r2 = await cli(['--root', linked, 'build', '-q', '-t', 'sub:2', '.'], { cwd: f.context, env: f.env });
  t.is(r2.code, 0, r2.stderr);
  const dest2 = join(f.dir, 'unpacked2');
  await unpackImage(await readImage(linked, 'sub:2'), dest2);
  t.is(await readUnpacked(dest2, 'vendor/lib/deps/inner/inner.txt'), 'innermost\n');
  for (const p of ['vendor/lib/.git', 'vendor/lib/deps/inner/.git']) t.false(existsSync(join(dest2, p)), p);
});
