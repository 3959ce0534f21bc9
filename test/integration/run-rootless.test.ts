import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { processesMentioning, waitForNoProcessMentioning } from '../helpers/containers.js';
import { cliAsUser, rootlessMissing, ROOTLESS_USER as USER } from '../helpers/rootless.js';
import { tempDir } from '../helpers/tmp.js';

const missing = rootlessMissing() ?? await busyboxMissing();

testIf(missing, 'run rootless: an unprivileged user runs, detaches, stops and removes image containers', async (t) => {
  const dir = await tempDir(t, 'tsbuild-run-rootless-');
  await chmod(dir, 0o755);
  const home = join(dir, 'home');
  const root = join(home, 'store');
  for (const d of [home, join(home, 'tmp'), join(home, 'run')]) await mkdir(d, { recursive: true });
  await makeBusyboxImage(join(dir), root);
  execFileSync('chown', ['-R', `${USER}:${USER}`, home]);
  t.teardown(async () => {
    const ids = (await cliAsUser(home, root, ['ps', '-aq'])).stdout.split('\n').filter((s) => s !== '');
    if (ids.length > 0) await cliAsUser(home, root, ['rm', '-f', ...ids]);
  });

  let r = await cliAsUser(home, root, ['run', '--rm', 'busybox', 'sh', '-c', 'id -u; echo layer > /f; cat /f']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '0\nlayer\n');
  r = await cliAsUser(home, root, ['run', '-d', '--name', 'bg', 'busybox', 'sh', '-c', 'while true; do echo up; sleep 0.1; done']);
  t.is(r.code, 0, r.stderr);
  r = await cliAsUser(home, root, ['ps', '--format', 'json']);
  t.is((JSON.parse(r.stdout.trim()) as { State: string; Names: string }).State, 'running');
  t.is((await cliAsUser(home, root, ['logs', '--tail', '1', 'bg'])).stdout, 'up\n');
  r = await cliAsUser(home, root, ['stop', '-t', '0', 'bg']);
  t.is(r.code, 0, r.stderr);
  t.is((await cliAsUser(home, root, ['rm', 'bg'])).code, 0);
  t.is((await cliAsUser(home, root, ['ps', '-aq'])).stdout, '');
  // Processes end asynchronously after rm (the monitor's children see their exit pipe close).
  await waitForNoProcessMentioning(root);
  t.deepEqual(processesMentioning(root), [], 'no monitor or container process is left');
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(root), 'no mount is left');
});
