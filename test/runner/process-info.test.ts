import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { childPids, isProcessAlive } from '../../src/runner/index.js';

test('childPids: lists the direct children of a process and not its grandchildren when they run', async (t) => {
  // sh (child) starts sleep (grandchild) and waits for it.
  const child = spawn('sh', ['-c', 'sleep 30 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const grandchild = Number(line.toString().trim());
  t.teardown(() => { try { process.kill(grandchild, 'SIGKILL'); } catch { /* gone */ } });
  const mine = childPids(process.pid);
  t.true(mine.includes(child.pid as number), `children of ${process.pid}: ${mine.join(' ')}`);
  t.false(mine.includes(grandchild));
  t.deepEqual(childPids(child.pid as number), [grandchild]);
  t.true(isProcessAlive(grandchild));
});

test('childPids: is empty for a process that does not exist', (t) => {
  t.deepEqual(childPids(2 ** 22 + 12345), []);
});
