import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Digest } from '../../src/core/index.js';
import {
  attachContainer, ContainerStore, createdState, newContainerId, processStartTime, startAttachServer, type ContainerEntry,
} from '../../src/runner/index.js';
import { tempDir } from '../helpers/tmp.js';

/** A container record whose state says running since `startedAt`, owned by process `owner` (this test process: a foreground run). */
async function runningContainer(t: ExecutionContext, startedAt: Date, owner = process.pid): Promise<{ containers: ContainerStore; entry: ContainerEntry }> {
  const containers = new ContainerStore(await tempDir(t));
  const id = newContainerId();
  await containers.claimName(id, 'fg');
  await containers.create({
    id, name: 'fg', created: startedAt.toISOString(), image: 'busybox', imageId: `sha256:${'a'.repeat(64)}` as Digest, imageChain: undefined, snapshotKey: `ctr-${id}`,
    args: ['sh'], entrypoint: [], cmd: ['sh'], env: [], cwd: '/', userText: 'root', user: { uid: 0, gid: 0 }, hostname: id.slice(0, 12), network: 'none',
    capAdd: [], capDrop: [], mounts: [], resources: undefined, readonlyRootfs: false, stopSignal: 'SIGTERM', stopTimeout: 10, autoRemove: false, labels: {},
  });
  const ours = processStartTime(process.pid) ?? '';
  await containers.writeState(id, {
    ...createdState(), status: 'running', pid: process.pid, pidStartTime: ours, monitorPid: owner, monitorStartTime: owner === process.pid ? ours : '', startedAt: startedAt.toISOString(),
  });
  return { containers, entry: await containers.resolve('fg') };
}

const io = (): { stdout: PassThrough; stderr: PassThrough } => ({ stdout: new PassThrough(), stderr: new PassThrough() });

test('attach: a client waits for the socket of a container that has just started (its foreground run listens a moment later)', async (t) => {
  const { containers, entry } = await runningContainer(t, new Date());
  const attached = attachContainer(containers, entry, io());
  // Longer than the foreground run's delay: the socket appears only now.
  await sleep(300);
  const server = await startAttachServer(containers, entry.config.id, { openStdin: false, tty: false, ownerPid: process.pid });
  t.teardown(() => server.close());
  await server.waitForClient(10_000);
  server.endRun(3);
  t.deepEqual(await attached, { detached: false, exitCode: 3 });
});

test('attach: no socket long after the start, or an owner that is gone, fails at once', async (t) => {
  const old = await runningContainer(t, new Date(Date.now() - 60_000));
  const t0 = Date.now();
  await t.throwsAsync(attachContainer(old.containers, old.entry, io()), { message: /not supported yet/ });
  // A real process that has exited owns the other one.
  const dead = Number(spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim());
  const orphan = await runningContainer(t, new Date(), dead);
  await t.throwsAsync(attachContainer(orphan.containers, orphan.entry, io()));
  t.true(Date.now() - t0 < 1500, 'neither waited out the grace period');
});
