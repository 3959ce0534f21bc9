import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { extract } from 'tar-stream';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { makeBusyboxImage } from '../helpers/base-image.js';
import { testSerialIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { ensureLauncher, mountsUnder } from '../sandbox/sandbox-helpers.js';
import { build, buildMissing, makeFixture, readImage, readUnpacked, stepsOf, testSerialRootOnly, unpackImage, type BuildFixture, unpackedImage } from './build-helpers.js';

const run = promisify(execFile);
const missing = await buildMissing();
const SNAPSHOTTERS = ['overlay', 'naive'] as const;
const SECRET = 'tsbuild-s3cret-value-42';

/** Every path in every layer tar of an image (whiteouts included). */
async function layerPaths(root: string, name: string): Promise<string[]> {
  const img = await readImage(root, name);
  const paths: string[] = [];
  for (const l of img.manifest.layers) {
    const ex = extract();
    ex.on('entry', (h, s, next) => {
      paths.push(h.name.replace(/^\.?\//, '').replace(/\/$/, ''));
      s.on('end', next);
      s.resume();
    });
    await pipeline(await img.store.blobs.open(l.digest) as Readable, ex);
  }
  return paths;
}

/** Files below `dir` whose bytes contain `needle`. */
function filesContaining(dir: string, needle: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      let st;
      try {
        st = statSync(p, { throwIfNoEntry: false });
      } catch {
        continue;
      }
      if (st === undefined) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size < 64 * 1024 * 1024 && readFileSync(p).includes(needle)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

async function unpacked(f: BuildFixture, name: string): Promise<string> {
  const dest = await unpackedImage(f, name, `unpacked-${name.replace(/[^a-z0-9]/gi, '_')}`);
  return dest;
}

for (const snap of SNAPSHOTTERS) {
  const sn = `--snapshotter=${snap}`;

  testSerialIf(missing, `RUN --mount=type=secret: exposes file and env secrets and keeps them out of layers, keys, events and the store when built with ${snap}`, async (t) => {
    const f = await makeFixture(t);
    const secretFile = join(f.dir, 'tok.txt');
    await writeFile(secretFile, SECRET);
    const df = [
      'FROM busybox',
      'RUN --mount=type=secret,id=tok sha256sum < /run/secrets/tok | cut -c1-64 > /sum && stat -c "%a %u" /run/secrets/tok > /perm && echo ok > /ok',
      'RUN --mount=type=secret,id=tok,target=/etc/app/key,mode=0440,uid=65534 --mount=type=secret,id=envtok,env=TOKEN,target=/tok2 --mount=type=secret,id=onlyenv,env=ONLY sh -c \'printf %s "$TOKEN$ONLY" | sha256sum | cut -c1-64 > /envsum && stat -c "%a %u" /etc/app/key > /keyperm && wc -c < /etc/app/key > /keylen\'',
      'RUN --mount=type=secret,id=absent ls /run/secrets > /absent 2>&1 || echo none > /absent',
      '',
    ].join('\n');
    const args = ['-t', 'sec:1', sn, '--secret', `id=tok,src=${secretFile}`, '--secret', 'id=envtok,env=MY_TOKEN', '--secret', 'id=onlyenv'];
    const r = await build(f, df, args, { MY_TOKEN: 'from-env-var', onlyenv: 'auto-env' });
    t.is(r.code, 0, r.stderr);
    const dest = await unpacked(f, 'sec:1');
    t.is(await readUnpacked(dest, 'ok'), 'ok\n');
    t.is((await readUnpacked(dest, 'sum')).trim(), createHash('sha256').update(SECRET).digest('hex'));
    t.is((await readUnpacked(dest, 'envsum')).trim(), createHash('sha256').update('from-env-varauto-env').digest('hex'));
    t.is(await readUnpacked(dest, 'perm'), '400 0\n');
    t.is(await readUnpacked(dest, 'keyperm'), '440 65534\n');
    t.is((await readUnpacked(dest, 'keylen')).trim(), String(SECRET.length));
    t.is(await readUnpacked(dest, 'absent'), 'none\n');
    // No mount point in any layer: neither the file nor the directories made for it.
    const paths = await layerPaths(f.root, 'sec:1');
    t.deepEqual(paths.filter((p) => /^(run|etc\/app|tok2)(\/|$)/.test(p)), [], paths.join('\n'));
    t.false(existsSync(join(dest, 'run')));
    t.false(existsSync(join(dest, 'etc/app')));
    // Nowhere in the store (layers, cache records, snapshots, tmp), the events or the config.
    t.deepEqual(filesContaining(f.root, SECRET), []);
    t.deepEqual(filesContaining(f.root, 'from-env-var'), []);
    t.false(r.stderr.includes(SECRET));
    const img = await readImage(f.root, 'sec:1');
    t.false(JSON.stringify(img.config).includes('from-env-var'));
    t.false(JSON.stringify(img.config).includes('TOKEN='));
    // Another secret value is a cache hit: the content is not part of the key (as BuildKit).
    await writeFile(secretFile, 'another-value');
    const again = await build(f, df, args, { MY_TOKEN: 'from-env-var', onlyenv: 'auto-env' });
    t.is(again.code, 0, again.stderr);
    t.deepEqual(stepsOf(again.events).started.filter((n) => n.includes('RUN')), []);
  });
}

testSerialIf(missing, 'RUN --mount=type=secret: fails clearly when a required secret is absent and masks secret text in the output of a failing step', async (t) => {
  const f = await makeFixture(t);
  const secretFile = join(f.dir, 'tok.txt');
  await writeFile(secretFile, `${SECRET}\n`);
  const r = await build(f, 'FROM busybox\nRUN --mount=type=secret,id=npmrc,required=true true\n', ['-t', 'req:1']);
  t.not(r.code, 0);
  t.regex(r.stderr, /Dockerfile:2/);
  t.regex(r.stderr, /secret "npmrc" is required but was not given/);
  t.regex(r.stderr, /--secret id=npmrc/);

  const leak = await build(f, 'FROM busybox\nRUN --mount=type=secret,id=tok echo "value: $(cat /run/secrets/tok)"; exit 3\n', ['-t', 'leak:1', '--secret', `id=tok,src=${secretFile}`]);
  t.not(leak.code, 0);
  t.regex(leak.stderr, /exited 3/);
  t.regex(leak.stderr, /value: \*\*\*\*/);
  t.false(leak.stderr.includes(SECRET));
  t.false(leak.stdout.includes(SECRET));

  const badFlag = await build(f, 'FROM busybox\n', ['--secret', 'id=x,src=/nonexistent/file']);
  t.is(badFlag.code, 125);
  t.regex(badFlag.stderr, /secret "x": cannot read \/nonexistent\/file/);
});

const gccMissing = existsSync('/usr/bin/gcc') && existsSync('/usr/lib/x86_64-linux-gnu/libc.a') ? undefined : 'gcc and a static libc are needed to make a unix socket client';

/** Compiles a static client: connects to $SSH_AUTH_SOCK, sends argv[1], prints the reply. */
async function makeSocketClient(dest: string): Promise<void> {
  const src = `${dest}.c`;
  await writeFile(src, `#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <string.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  const char *p = getenv("SSH_AUTH_SOCK");
  if (p == NULL || argc < 2) return 3;
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, p, sizeof a.sun_path - 1);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) return 2;
  if (write(s, argv[1], strlen(argv[1])) < 0) return 4;
  shutdown(s, SHUT_WR);
  char b[256]; ssize_t n;
  while ((n = read(s, b, sizeof b)) > 0) if (write(1, b, (size_t)n) < 0) return 5;
  return 0;
}
`);
  await run('gcc', ['-static', '-O1', '-o', dest, src]);
}

for (const snap of SNAPSHOTTERS) {
  testSerialIf(missing ?? gccMissing, `RUN --mount=type=ssh: forwards the agent socket and sets SSH_AUTH_SOCK when built with ${snap}`, async (t) => {
    const f = await makeFixture(t);
    await makeSocketClient(join(f.context, 'sockclient'));
    const sockPath = join(f.dir, 'agent.sock');
    const server = createServer((c) => {
      let got = '';
      c.on('error', () => undefined);
      c.on('data', (d) => { got += d.toString(); });
      c.on('end', () => c.end(`pong:${got}`));
    });
    await new Promise<void>((resolve) => server.listen(sockPath, resolve));
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const df = [
      'FROM busybox',
      'COPY sockclient /usr/bin/sockclient',
      'RUN --mount=type=ssh echo "$SSH_AUTH_SOCK" > /sock && stat -c "%a %u" "$SSH_AUTH_SOCK" > /sockperm && sockclient ping > /reply',
      'RUN --mount=type=ssh,id=other,target=/tmp/agent.sock,mode=0666,uid=65534 stat -c "%a %u" /tmp/agent.sock > /perm2 && SSH_AUTH_SOCK=/tmp/agent.sock sockclient second > /reply2',
      'RUN --mount=type=ssh,id=notgiven echo skipped > /skipped',
      '',
    ].join('\n');
    const r = await build(f, df, ['-t', 'ssh:1', `--snapshotter=${snap}`, '--ssh', 'default', '--ssh', `other=${sockPath}`], { SSH_AUTH_SOCK: sockPath });
    t.is(r.code, 0, r.stderr);
    const dest = await unpacked(f, 'ssh:1');
    t.is(await readUnpacked(dest, 'sock'), '/run/buildkit/ssh_agent.0\n');
    t.is(await readUnpacked(dest, 'sockperm'), '600 0\n');
    t.is(await readUnpacked(dest, 'reply'), 'pong:ping');
    t.is(await readUnpacked(dest, 'perm2'), '666 65534\n');
    t.is(await readUnpacked(dest, 'reply2'), 'pong:second');
    t.is(await readUnpacked(dest, 'skipped'), 'skipped\n');
    const paths = await layerPaths(f.root, 'ssh:1');
    t.deepEqual(paths.filter((p) => /^(run|tmp\/agent\.sock)(\/|$)/.test(p)), [], paths.join('\n'));

    const req = await build(f, 'FROM busybox\nRUN --mount=type=ssh,required=true true\n', ['-t', 'ssh:2']);
    t.not(req.code, 0);
    t.regex(req.stderr, /ssh agent "default" is required but was not forwarded/);
    const bad = await build(f, 'FROM busybox\n', ['--ssh', `default=${join(f.context, 'sockclient')}`]);
    t.is(bad.code, 125);
    t.regex(bad.stderr, /sockclient: not a private key/);
  });
}

/** Compiles a static client: asks the agent at $SSH_AUTH_SOCK for its identities, prints "answer N keys" (type 12 = IDENTITIES_ANSWER). */
async function makeAgentLister(dest: string): Promise<void> {
  const src = `${dest}.c`;
  await writeFile(src, `#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
int main(void) {
  const char *p = getenv("SSH_AUTH_SOCK");
  if (p == NULL) return 3;
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, p, sizeof a.sun_path - 1);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) return 2;
  unsigned char req[5] = { 0, 0, 0, 1, 11 }, b[9];
  if (write(s, req, 5) != 5) return 4;
  size_t got = 0;
  while (got < 9) { ssize_t n = read(s, b + got, 9 - got); if (n <= 0) return 5; got += (size_t)n; }
  printf("answer %d %u keys\\n", b[4], (unsigned)b[5] << 24 | (unsigned)b[6] << 16 | (unsigned)b[7] << 8 | b[8]);
  return 0;
}
`);
  await run('gcc', ['-static', '-O1', '-o', dest, src]);
}

testSerialIf(missing ?? gccMissing ?? (existsSync('/usr/bin/ssh-keygen') ? undefined : 'ssh-keygen (openssh-client) is needed'), 'RUN --mount=type=ssh: --ssh ID=KEYFILE serves the keys through an agent of its own, gone after the build', async (t) => {
  const f = await makeFixture(t);
  await makeAgentLister(join(f.context, 'agentls'));
  const keys = [join(f.dir, 'id_a'), join(f.dir, 'id_b')];
  for (const k of keys) await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k]);
  const df = 'FROM busybox\nCOPY agentls /usr/bin/agentls\nRUN --mount=type=ssh,id=deploy agentls > /keys\n';
  const before = readdirSync(tmpdir()).filter((n) => n.startsWith('tsbuild-ssh-'));
  const r = await build(f, df, ['-t', 'sshkeys:1', '--ssh', `deploy=${keys.join(',')}`]);
  t.is(r.code, 0, r.stderr);
  const dest = await unpacked(f, 'sshkeys:1');
  t.is(await readUnpacked(dest, 'keys'), 'answer 12 2 keys\n');
  // The agent's private socket directory is removed when the build ends.
  t.deepEqual(readdirSync(tmpdir()).filter((n) => n.startsWith('tsbuild-ssh-')), before);
  const paths = await layerPaths(f.root, 'sshkeys:1');
  t.deepEqual(paths.filter((p) => /^run(\/|$)/.test(p)), [], paths.join('\n'));
});

for (const snap of SNAPSHOTTERS) {
  const sn = `--snapshotter=${snap}`;

  testSerialIf(missing, `RUN --mount=type=bind: binds the context read-only (after .dockerignore), rw as a throw-away copy and keys on the content when built with ${snap}`, async (t) => {
    const f = await makeFixture(t, { 'a.txt': 'alpha\n', 'sub/b.txt': 'beta\n', 'ignored.env': 'PASSWORD=x\n', '.dockerignore': 'ignored.env\n' });
    await symlink('/etc/hostname', join(f.context, 'sub/link'));
    await chmod(join(f.context, 'sub/b.txt'), 0o751);
    const df = [
      'FROM busybox',
      'RUN --mount=target=/ctx cat /ctx/a.txt > /a-copy && ls -a /ctx | sort > /ctx-list && (touch /ctx/new 2>/dev/null && echo writable || echo readonly) > /ro',
      'RUN --mount=type=bind,source=sub,target=/sub cat /sub/b.txt > /b-copy && readlink /sub/link > /link && stat -c %a /sub/b.txt > /bmode',
      'RUN --mount=type=bind,source=sub/b.txt,target=/one.txt,rw echo changed > /one.txt && cat /one.txt > /rw-copy',
      'RUN --mount=source=sub,target=/subrw,rw echo changed-dir > /subrw/b.txt && chmod 600 /subrw/b.txt && rm /subrw/link && cat /subrw/b.txt > /rw-dir',
      'RUN --mount=source=sub,target=/sub2 cat /sub2/b.txt > /b-after',
      '',
    ].join('\n');
    const r = await build(f, df, ['-t', 'bind:1', sn]);
    t.is(r.code, 0, r.stderr);
    const dest = await unpacked(f, 'bind:1');
    t.is(await readUnpacked(dest, 'a-copy'), 'alpha\n');
    t.is(await readUnpacked(dest, 'ctx-list'), ['.', '..', '.dockerignore', 'Dockerfile', 'a.txt', 'sub', ''].join('\n'));
    t.is(await readUnpacked(dest, 'ro'), 'readonly\n');
    t.is(await readUnpacked(dest, 'b-copy'), 'beta\n');
    t.is(await readUnpacked(dest, 'link'), '/etc/hostname\n');
    t.is(await readUnpacked(dest, 'bmode'), '751\n');
    t.is(await readUnpacked(dest, 'rw-copy'), 'changed\n');
    t.is(await readUnpacked(dest, 'rw-dir'), 'changed-dir\n');
    t.is((await stat(join(f.context, 'sub/b.txt'))).mode & 0o777, 0o751, 'a hard-linked context file keeps its mode');
    t.is(await readlink(join(f.context, 'sub/link')), '/etc/hostname');
    t.is(await readUnpacked(dest, 'b-after'), 'beta\n');
    t.is(await readFile(join(f.context, 'sub/b.txt'), 'utf8'), 'beta\n', 'the context is never written');
    const paths = await layerPaths(f.root, 'bind:1');
    t.deepEqual(paths.filter((p) => /^(ctx|sub|sub2|subrw|one\.txt)(\/|$)/.test(p)), [], paths.join('\n'));

    // Unchanged: every step cached; an ignored file changes nothing; a bound file's change re-runs its step.
    await writeFile(join(f.context, 'ignored.env'), 'PASSWORD=y\n');
    const again = await build(f, df, ['-t', 'bind:2', sn]);
    t.is(again.code, 0, again.stderr);
    t.deepEqual(stepsOf(again.events).started.filter((n) => n.includes('RUN')), []);
    await writeFile(join(f.context, 'sub/b.txt'), 'beta2\n');
    const changed = await build(f, df, ['-t', 'bind:3', sn]);
    t.is(changed.code, 0, changed.stderr);
    // The first step binds the whole context: its own key changed (not just its parent).
    const first = changed.events.find((e) => e.type === 'vertex.start' && e.name.includes('/ctx/a.txt'));
    t.truthy(first);
    const miss = changed.events.find((e) => e.type === 'vertex.miss' && first?.type === 'vertex.start' && e.vertex === first.vertex);
    t.is(miss?.type === 'vertex.miss' ? miss.reason : undefined, 'file sub/b.txt changed');

    // SECURITY: a source out of the context, directly or through a symlink, is refused.
    await symlink('../../..', join(f.context, 'evil'));
    for (const source of ['evil', '../x']) {
      const out = await build(f, `FROM busybox\nRUN --mount=source=${source},target=/e ls /e\n`, ['-t', 'bind:4', sn]);
      t.not(out.code, 0);
      t.regex(out.stderr, /CTX_OUTSIDE/, source);
    }
  });

  testSerialIf(missing, `RUN --mount=type=bind,from=: mounts a stage's or an image's snapshot with whiteouts applied, rw writes discarded, when built with ${snap}`, async (t) => {
    const f = await makeFixture(t);
    const df = [
      'FROM busybox AS build',
      'RUN mkdir -p /out/d && echo built > /out/d/f && echo top > /out/t && ln -s d/f /out/lnk',
      'RUN rm /out/t && echo two > /out/two',
      'FROM busybox',
      'RUN --mount=from=build,source=/out,target=/o ls /o > /list && cat /o/d/f /o/lnk > /f && (touch /o/x 2>/dev/null && echo writable || echo readonly) > /ro',
      'RUN --mount=from=build,source=/out,target=/o,rw echo w > /o/d/f && rm /o/two && cat /o/d/f > /rwf',
      'RUN --mount=from=build,source=/out/two,target=/two.txt --mount=from=build,target=/whole cat /two.txt /whole/out/d/f > /two',
      'RUN --mount=type=bind,from=busybox,source=/bin,target=/bb ls /bb/busybox > /bbls',
      '',
    ].join('\n');
    const r = await build(f, df, ['-t', 'from:1', sn]);
    t.is(r.code, 0, r.stderr);
    const dest = await unpacked(f, 'from:1');
    t.is(await readUnpacked(dest, 'list'), 'd\nlnk\ntwo\n');
    t.is(await readUnpacked(dest, 'f'), 'built\nbuilt\n');
    t.is(await readUnpacked(dest, 'ro'), 'readonly\n');
    t.is(await readUnpacked(dest, 'rwf'), 'w\n');
    t.is(await readUnpacked(dest, 'two'), 'two\nbuilt\n', 'the rw writes of the step before were discarded');
    t.is(await readUnpacked(dest, 'bbls'), '/bb/busybox\n');
    const paths = await layerPaths(f.root, 'from:1');
    t.deepEqual(paths.filter((p) => /^(o|two\.txt|whole|bb)(\/|$)/.test(p)), [], paths.join('\n'));

    const nf = await build(f, 'FROM busybox AS a\nFROM busybox\nRUN --mount=from=a,source=/nope,target=/n true\n', ['-t', 'from:2', sn]);
    t.not(nf.code, 0);
    t.regex(nf.stderr, /bind mount source "\/nope" not found in stage 0/);
  });

  testSerialIf(missing, `RUN --mount=type=cache,from=: seeds a new cache from a stage path and keeps it between builds when built with ${snap}`, async (t) => {
    const f = await makeFixture(t);
    const df = [
      'FROM busybox AS seed',
      'RUN mkdir -p /s/deep && echo seeded > /s/file && echo d > /s/deep/x',
      'FROM busybox',
      'RUN --mount=type=cache,target=/c,from=seed,source=/s cat /c/file /c/deep/x > /got && echo more >> /c/file',
      '',
    ].join('\n');
    let r = await build(f, df, ['-t', 'cf:1', sn]);
    t.is(r.code, 0, r.stderr);
    t.is(await readUnpacked(await unpacked(f, 'cf:1'), 'got'), 'seeded\nd\n');
    // The seed stage is a cache hit (same snapshot): the same cache directory, now with the first run's write.
    r = await build(f, df.replace('cat /c/file', 'true && cat /c/file'), ['-t', 'cf:2', sn]);
    t.is(r.code, 0, r.stderr);
    const dest = await unpacked(f, 'cf:2');
    t.is(await readUnpacked(dest, 'got'), 'seeded\nmore\nd\n');
    t.false(existsSync(join(dest, 'c')));
  });
}

testSerialIf(missing, 'RUN --network: the build\'s --network=none is the default of RUN, RUN --network=host overrides it, and the mode is part of the key', async (t) => {
  const f = await makeFixture(t);
  const host = (await run('ip', ['-o', 'link'])).stdout.trim().split('\n').length;
  const df = [
    'FROM busybox',
    'RUN --network=host ip -o link | wc -l > /links-host',
    'RUN ip -o link | wc -l > /links-default',
    'RUN --network=default ip -o link | wc -l > /links-explicit-default',
    '',
  ].join('\n');
  const r = await build(f, df, ['-t', 'net:1', '--network=none']);
  t.is(r.code, 0, r.stderr);
  const dest = await unpacked(f, 'net:1');
  t.is((await readUnpacked(dest, 'links-default')).trim(), '1');
  t.is((await readUnpacked(dest, 'links-host')).trim(), String(host));
  t.is((await readUnpacked(dest, 'links-explicit-default')).trim(), '1');
  // With the host network the default steps differ: they must not be served from the none build's records.
  const h = await build(f, df, ['-t', 'net:2', '--network=host']);
  t.is(h.code, 0, h.stderr);
  const started = stepsOf(h.events).started;
  t.true(started.some((n) => n.includes('links-default')), started.join('\n'));
  t.false(started.some((n) => n.includes('links-host')), started.join('\n'));
  t.is((await readUnpacked(await unpacked(f, 'net:2'), 'links-default')).trim(), String(host));
  const bad = await build(f, df, ['--network=bridge']);
  t.is(bad.code, 125);
  t.regex(bad.stderr, /--network takes default, host or none/);
});

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The unprivileged user scripts/setup.sh creates (sub-ids 200000:65536), as build-rootless.test.ts. */
const USER = 'tsbuild-test';
const rootlessMissing = missing ?? (() => {
  try {
    execFileSync('id', ['-u', USER]);
  } catch {
    return `user ${USER} missing (scripts/setup.sh creates it)`;
  }
  return existsSync('/usr/bin/newuidmap') ? undefined : 'newuidmap missing (apt-get install uidmap)';
})();

for (const snap of SNAPSHOTTERS) {
  testSerialRootOnly('it switches to the tsbuild-test user with runuser and chowns its fixture to it (as non-root every test of this file is a rootless build)',
    rootlessMissing ?? gccMissing, `RUN --mount: secret, ssh, context and stage binds and a seeded cache work in a rootless build with ${snap}`, async (t) => {
    const dir = await tempDir(t, 'tsbuild-mounts-rootless-');
    await chmod(dir, 0o755);
    const home = join(dir, 'home');
    const root = join(home, 'store');
    const context = join(home, 'ctx');
    for (const d of [home, join(home, 'tmp'), join(home, 'run'), context]) await mkdir(d, { recursive: true });
    await makeBusyboxImage(join(dir, 'base'), root);
    await makeSocketClient(join(context, 'sockclient'));
    await writeFile(join(context, 'in.txt'), 'from-context\n');
    await writeFile(join(home, 'secret.txt'), SECRET);
    await writeFile(join(context, 'Dockerfile'), [
      'FROM busybox AS st',
      'RUN mkdir -p /s && echo from-stage > /s/f && chown 1000 /s/f',
      'FROM busybox',
      'COPY sockclient /usr/bin/sockclient',
      'RUN --mount=type=secret,id=tok,uid=1000 --mount=type=ssh --mount=target=/ctx --mount=from=st,source=/s,target=/st --mount=type=cache,target=/c,from=st,source=/s --mount=target=/ctxrw,rw \\',
      '    sha256sum < /run/secrets/tok | cut -c1-64 > /sum && stat -c %u /run/secrets/tok > /secret-uid && sockclient hi > /reply \\',
      '    && cat /ctx/in.txt /st/f /c/f > /seen && stat -c %u /st/f > /st-uid && echo over > /ctxrw/in.txt && cat /ctxrw/in.txt > /rw',
      '',
    ].join('\n'));
    execFileSync('chown', ['-R', `${USER}:${USER}`, home]);
    const sock = join(home, 'agent.sock');
    const server = createServer((c) => {
      c.on('error', () => undefined);
      c.on('data', (d) => c.end(`pong:${d.toString()}`));
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    execFileSync('chown', [`${USER}:${USER}`, sock]);
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    t.teardown(() => {
      const mounts = mountsUnder([dir]);
      if (mounts.length > 0) throw new Error(`leftover mounts: ${mounts.join(', ')}`);
    });
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const p = spawn('runuser', ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, `HOME=${home}`, `TMPDIR=${home}/tmp`, `XDG_RUNTIME_DIR=${home}/run`,
        `TSBUILD_LAUNCHER=${ensureLauncher()}`, `SSH_AUTH_SOCK=${sock}`,
        process.execPath, '--import', join(REPO, 'node_modules/tsx/dist/loader.mjs'), join(REPO, 'src/cli/main.ts'), '--root', root,
        'build', '--progress=plain', '-t', 'rl:1', `--snapshotter=${snap}`, '--secret', `id=tok,src=${join(home, 'secret.txt')}`, '--ssh', 'default', '.'], { cwd: context, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
      p.once('error', reject);
      p.once('close', (code) => resolve({ code, stderr }));
    });
    t.is(r.code, 0, r.stderr);
    const dest = join(dir, 'unpacked');
    await unpackImage(await readImage(root, 'rl:1'), dest);
    t.is((await readUnpacked(dest, 'sum')).trim(), createHash('sha256').update(SECRET).digest('hex'));
    t.is(await readUnpacked(dest, 'secret-uid'), '1000\n');
    t.is(await readUnpacked(dest, 'reply'), 'pong:hi');
    t.is(await readUnpacked(dest, 'seen'), 'from-context\nfrom-stage\nfrom-stage\n');
    t.is(await readUnpacked(dest, 'st-uid'), '1000\n');
    t.is(await readUnpacked(dest, 'rw'), 'over\n');
    t.is(await readFile(join(context, 'in.txt'), 'utf8'), 'from-context\n');
    const paths = await layerPaths(root, 'rl:1');
    t.deepEqual(paths.filter((p) => /^(run|ctx|ctxrw|st|c)(\/|$)/.test(p)), [], paths.join('\n'));
    t.deepEqual(filesContaining(root, SECRET), []);
  });
}
