import test from 'ava';
import { readFileSync } from 'node:fs';
import { busyboxMissing } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { processesMentioning, waitForNoProcessMentioning } from '../helpers/containers.js';
import { cliAsUser, rootlessBusyboxStore, rootlessMissing } from '../helpers/rootless.js';

const missing = rootlessMissing() ?? await busyboxMissing();

testIf(missing, 'run rootless: an unprivileged user runs, detaches, stops and removes image containers', async (t) => {
  const { home, root } = await rootlessBusyboxStore(t, 'tsbuild-run-rootless-');

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
