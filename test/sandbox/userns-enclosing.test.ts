import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { testIf } from '../helpers/capability.js';
import { tempDir } from '../helpers/tmp.js';
import { parseIdMapText, planIdMaps, readEnclosingIdMaps } from '../../src/sandbox/userns.js';

test('parseIdMapText: reads the padded columns of /proc/PID/uid_map when there are several ranges', (t) => {
  t.deepEqual(parseIdMapText('         0        999          1\n         1     200000      65536\n'), [
    { containerID: 0, hostID: 999, size: 1 },
    { containerID: 1, hostID: 200000, size: 65536 },
  ]);
  t.deepEqual(parseIdMapText(''), []);
  t.deepEqual(parseIdMapText('0 x 1\n'), [], 'a malformed line is ignored');
});

test('planIdMaps: root of a non-initial namespace gets an identity map over the ids mapped there when enclosing maps are given', (t) => {
  const enclosing = {
    uid: [{ containerID: 0, hostID: 999, size: 1 }, { containerID: 1, hostID: 200000, size: 65536 }],
    gid: [{ containerID: 0, hostID: 995, size: 1 }, { containerID: 1, hostID: 300000, size: 1000 }],
    setgroupsDenied: false,
  };
  const { maps, warning } = planIdMaps({ uid: 0, gid: 0 }, [], [], enclosing);
  t.is(warning, undefined);
  t.deepEqual(maps.uid, [{ containerID: 0, hostID: 0, size: 1 }, { containerID: 1, hostID: 1, size: 65536 }]);
  t.deepEqual(maps.gid, [{ containerID: 0, hostID: 0, size: 1 }, { containerID: 1, hostID: 1, size: 1000 }]);
  t.is(maps.method, 'direct', 'newuidmap would not run setuid inside the namespace');
  t.false(maps.denySetgroups);
  t.true(planIdMaps({ uid: 0, gid: 0 }, [], [], { ...enclosing, setgroupsDenied: true }).maps.denySetgroups, 'a denied setgroups is inherited');
  t.is(planIdMaps({ uid: 0, gid: 0 }, [], []).maps.uid[0]?.size, 4294967295, 'without enclosing maps root keeps the full identity');
});

test('readEnclosingIdMaps: is undefined in the initial namespace and reads a fake proc dir when the maps are not the identity', async (t) => {
  if (existsSync('/proc/self/uid_map') && process.getuid?.() === 0) t.is(await readEnclosingIdMaps(), undefined);
  const dir = await tempDir(t, 'tsbuild-userns-');
  await writeFile(join(dir, 'uid_map'), '0 999 1\n1 200000 65536\n');
  await writeFile(join(dir, 'gid_map'), '0 995 1\n');
  await writeFile(join(dir, 'setgroups'), 'deny\n');
  t.deepEqual(await readEnclosingIdMaps(dir), {
    uid: [{ containerID: 0, hostID: 999, size: 1 }, { containerID: 1, hostID: 200000, size: 65536 }],
    gid: [{ containerID: 0, hostID: 995, size: 1 }],
    setgroupsDenied: true,
  });
  t.is(await readEnclosingIdMaps(join(dir, 'missing')), undefined, 'no proc: the initial namespace');
});

testIf(existsSync('/usr/bin/unshare') ? undefined : 'unshare (util-linux) missing',
  'readEnclosingIdMaps: reads the maps of a real process in a user namespace when unshare mapped its user to root', async (t) => {
    const child = spawn('unshare', ['--user', '--map-root-user', 'sh', '-c', 'echo ready; exec sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.teardown(() => { child.kill('SIGKILL'); });
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('error', reject);
      child.once('close', () => reject(new Error('unshare ended early')));
    });
    const maps = await readEnclosingIdMaps(`/proc/${child.pid as number}`);
    const self = process.getuid?.() ?? 0;
    t.deepEqual(maps?.uid, [{ containerID: 0, hostID: self, size: 1 }]);
    t.is(maps?.setgroupsDenied, true, 'unshare -r denies setgroups for its single-id map');
  });
