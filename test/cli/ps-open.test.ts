import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { cli } from './run-cli.js';

// `ps` reads container records only: it opens the store and its containers (cli/container-list.ts),
// not the snapshotter (whose probe writes snapshots/overlay/), the sandbox or the tool lookups.

test('ps: lists containers without opening the snapshotter (no snapshots/overlay set-up), also with filters and formats', async (t) => {
  const dir = await tempDir(t, 'tsbuild-ps-open-');
  const root = join(dir, 'store');
  for (const argv of [['ps'], ['ps', '-a'], ['ps', '-a', '-q'], ['ps', '-a', '--filter', 'status=exited', '--format', '{{.ID}}'], ['ps', '-a', '--filter', 'ancestor=busybox']]) {
    const r = await cli(['--root', root, ...argv]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stderr, '');
  }
  t.regex((await cli(['--root', root, 'ps'])).stdout, /^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES\n$/);
  t.true(existsSync(join(root, 'containers')));
  t.false(existsSync(join(root, 'snapshots', 'overlay')), 'the snapshotter was not opened');
  t.false(existsSync(join(root, 'snapshots', 'naive')), 'the snapshotter was not opened');
});
