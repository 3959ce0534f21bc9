import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { lutimes, readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import {
  ContainerStore, createdState, idOfNameLink, isContainerRunning, nameLinkTarget, newContainerId, processStartTime, type ContainerRecord,
} from '../../src/runner/index.js';
import type { Digest } from '../../src/core/index.js';
import { tempDir } from '../helpers/tmp.js';

function record(id: string, name: string): ContainerRecord {
  return {
    id, name, created: new Date().toISOString(), image: 'busybox', imageId: `sha256:${'a'.repeat(64)}` as Digest, imageChain: undefined, snapshotKey: `ctr-${id}`,
    args: ['sh'], entrypoint: [], cmd: ['sh'], env: [], cwd: '/', userText: 'root', user: { uid: 0, gid: 0 }, hostname: id.slice(0, 12), network: 'none',
    capAdd: [], capDrop: [], mounts: [], resources: undefined, readonlyRootfs: false, stopSignal: 'SIGTERM', stopTimeout: 10, autoRemove: false, labels: {},
  };
}

test('ContainerStore: names are unique, generated when absent, validated when given', async (t) => {
  const store = new ContainerStore(await tempDir(t));
  const a = newContainerId();
  const b = newContainerId();
  t.is(await store.claimName(a, 'web'), 'web');
  await t.throwsAsync(store.claimName(b, '/web'), { message: /"\/web" is already in use by container "[0-9a-f]{64}"/ });
  await t.throwsAsync(store.claimName(b, 'bad name'), { message: /invalid container name/ });
  t.regex(await store.claimName(b, undefined), /^[a-z]+_[a-z]+\d*$/);
});

test('ContainerStore: resolves by name, full ID and unique prefix; state is replaced atomically', async (t) => {
  const dir = await tempDir(t);
  const store = new ContainerStore(dir);
  const id = `abc${newContainerId().slice(3)}`;
  await store.claimName(id, 'one');
  await store.create(record(id, 'one'));
  t.is((await store.resolve('one')).config.id, id);
  t.is((await store.resolve(id)).config.id, id);
  t.is((await store.resolve('abc')).config.id, id);
  await t.throwsAsync(store.resolve('nope'), { message: 'no such container: nope' });
  const id2 = `abd${newContainerId().slice(3)}`;
  await store.claimName(id2, 'two');
  await store.create(record(id2, 'two'));
  await t.throwsAsync(store.resolve('ab'), { message: /multiple containers/ });
  await store.writeState(id, { ...createdState(), status: 'exited', exitCode: 3 });
  t.is((await store.read(id))?.state.exitCode, 3);
  t.deepEqual((await readdir(store.dirOf(id))).sort(), ['config.json', 'state.json'], 'no temporary file is left');
  t.is((await store.list()).length, 2);
  await store.remove(id, 'one');
  await t.throwsAsync(store.resolve('one'));
  t.deepEqual(await readdir(join(dir, 'names')), ['two']);
});

test('ContainerStore: a running container whose monitor died is recorded as exited (255) when inspected', async (t) => {
  const store = new ContainerStore(await tempDir(t));
  const id = newContainerId();
  await store.claimName(id, 'ghost');
  await store.create(record(id, 'ghost'));
  // A real process that has exited: its pid no longer runs with that start time.
  const dead = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
  await store.writeState(id, { ...createdState(), status: 'running', pid: 0, monitorPid: Number(dead), monitorStartTime: '1', startedAt: new Date().toISOString() });
  const e = await store.inspect(id);
  t.is(e?.state.status, 'exited');
  t.is(e?.state.exitCode, 255);
  t.is((await store.read(id))?.state.status, 'exited', 'the state file was updated');
  // This process is alive: a container it owns is running.
  await store.writeState(id, { ...createdState(), status: 'running', monitorPid: process.pid, monitorStartTime: processStartTime(process.pid) ?? '' });
  t.true(isContainerRunning((await store.inspect(id))?.state ?? createdState()));
});

test('ContainerStore: keeps the exit state the monitor wrote when it exits between the read and the liveness check', async (t) => {
  // The race `stop` then `ps` hit: inspect read "running", the monitor then wrote "exited (7)" and
  // exited, and the dead monitor made inspect overwrite the real exit code with 255.
  class RacyStore extends ContainerStore {
    reads = 0;
    override async read(id: string): ReturnType<ContainerStore['read']> {
      const e = await super.read(id);
      // The first read sees the state from just before the monitor's last write.
      if (this.reads++ === 0 && e !== undefined) return { ...e, state: { ...e.state, status: 'running', exitCode: 0 } };
      return e;
    }
  }
  const store = new RacyStore(await tempDir(t));
  const id = newContainerId();
  await store.claimName(id, 'polite');
  await store.create(record(id, 'polite'));
  const dead = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
  await store.writeState(id, { ...createdState(), status: 'exited', pid: 0, exitCode: 7, monitorPid: Number(dead), monitorStartTime: '1', finishedAt: new Date().toISOString() });
  const e = await store.inspect(id);
  t.is(e?.state.status, 'exited');
  t.is(e?.state.exitCode, 7);
  t.is((await store.read(id))?.state.exitCode, 7, 'the state file keeps the real exit code');
});

test('ContainerStore: a name left by a create that crashed midway is reusable after a minute', async (t) => {
  const dir = await tempDir(t);
  const store = new ContainerStore(dir);
  const crashed = newContainerId();
  await store.claimName(crashed, 'web');
  const again = newContainerId();
  await t.throwsAsync(store.claimName(again, 'web'), { message: /already in use/ });
  const old = new Date(Date.now() - 120_000);
  await lutimes(join(dir, 'names', 'web'), old, old);
  t.is(await store.claimName(again, 'web'), 'web');
  t.is((await store.resolve('web').catch(() => undefined)), undefined, 'no container was created under it yet');
});

test('ContainerStore: the first name makes the store directory; remove takes the whole container directory and its name', async (t) => {
  const dir = join(await tempDir(t), 'containers');
  const store = new ContainerStore(dir);
  const id = newContainerId();
  t.is(await store.claimName(id, 'first'), 'first');
  await store.create(record(id, 'first'));
  t.is((await store.resolve('first')).state.status, 'created');
  // What a container's directory gathers while it lives: its log, a socket, markers, a temporary state file.
  writeFileSync(store.logPathOf(id), '{"log":"hi\\n"}\n');
  writeFileSync(join(store.dirOf(id), 'stop-requested'), 'x');
  writeFileSync(join(store.dirOf(id), '.state.json.1-abcd'), '{');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(store.dirOf(id), 'attach-1.sock'), resolve));
  t.teardown(() => server.close());
  mkdirSync(join(store.dirOf(id), 'sub', 'deeper'), { recursive: true });
  await store.remove(id, 'first');
  t.false(existsSync(store.dirOf(id)));
  t.deepEqual(await readdir(join(dir, 'names')), []);
  await t.notThrowsAsync(store.remove(id, 'first'), 'idempotent');
  t.is(await store.read(id), undefined);
});

test('ContainerStore: a stale name entry that is no link (left by a crash or by hand) is reusable after a minute', async (t) => {
  const dir = await tempDir(t);
  const store = new ContainerStore(dir);
  mkdirSync(join(dir, 'names'));
  writeFileSync(join(dir, 'names', 'odd'), '');
  const old = new Date(Date.now() - 120_000);
  await lutimes(join(dir, 'names', 'odd'), old, old);
  t.is(await store.claimName(newContainerId(), 'odd'), 'odd');
});

test('ContainerStore: a name link holds the id in 43 base64url characters (kept in the inode: no data block); hex links of earlier versions still resolve', async (t) => {
  const dir = await tempDir(t);
  const store = new ContainerStore(dir);
  const id = newContainerId();
  await store.claimName(id, 'web');
  await store.create(record(id, 'web'));
  const target = readlinkSync(join(dir, 'names', 'web'));
  t.is(target.length, 43);
  t.is(target, nameLinkTarget(id));
  t.is(idOfNameLink(target), id);
  // A target under 60 bytes lives in the inode: the link has no data block.
  t.is(lstatSync(join(dir, 'names', 'web')).blocks, 0);
  t.is((await store.resolve('web')).config.id, id);
  await t.throwsAsync(store.claimName(newContainerId(), 'web'), { message: new RegExp(`already in use by container "${id}"`) });
  // A link written by an earlier version (the hex id).
  const old = newContainerId();
  symlinkSync(old, join(dir, 'names', 'old'));
  await store.create(record(old, 'old'));
  t.is((await store.resolve('old')).config.id, old);
  await store.remove(old, 'old');
  t.false(existsSync(join(dir, 'names', 'old')));
  // SECURITY: a link naming no id is never followed.
  for (const bad of ['../x', '/etc', 'A'.repeat(42), `${'A'.repeat(42)}!`, 'g'.repeat(64)]) t.is(idOfNameLink(bad), undefined, bad);
});
