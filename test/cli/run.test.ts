import test from 'ava';
import { join } from 'node:path';
import { testIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { ensureLauncher, mountsUnder } from '../sandbox/sandbox-helpers.js';
import { cli } from './run-cli.js';

const missing = (process.getuid?.() === 0 ? undefined : 'tsbuild run tests need root (CI runs as root)') ?? busyboxMissing();

async function setup(t: Parameters<typeof tempDir>[0]): Promise<{ rootfs: string; env: Record<string, string> }> {
  ensureLauncher();
  const dir = await tempDir(t, 'tsbuild-cli-run-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  t.teardown(() => {
    const left = mountsUnder([dir]);
    if (left.length > 0) throw new Error(`leftover mounts: ${left.join(', ')}`);
  });
  return { rootfs, env: { TSBUILD_RUN_DIR: join(dir, 'run'), HOST_VAR: 'from-host' } };
}

testIf(missing, 'tsbuild run: the exit code, env, user, workdir and volumes apply when given --rootfs', async (t) => {
  const { rootfs, env } = await setup(t);
  const vol = await tempDir(t);
  const r = await cli(['run', '--rm', '--rootfs', rootfs, '-e', 'A=1', '-e', 'HOST_VAR', '-e', 'UNSET_VAR', '-u', 'app', '-w', '/tmp/w', '-v', `${vol}:/data:ro`, '--hostname', 'clihost', '--',
    'sh', '-c', 'echo $A $HOST_VAR ${UNSET_VAR-unset} $HOME; id -u; pwd; hostname; touch /data/x 2>/dev/null || echo ro; exit 5'], { env });
  t.is(r.code, 5, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n'), ['1 from-host unset /home/app', '1000', '/tmp/w', 'clihost', 'ro']);
});

testIf(missing, 'tsbuild run: an OOM kill is reported with the limit when the memory limit is exceeded', async (t) => {
  const { rootfs, env } = await setup(t);
  const r = await cli(['run', '--rootfs', rootfs, '--memory', '16m', '--memory-swap', '16m', '--', 'sh', '-c', 'x=a; while true; do x=$x$x; done'], { env });
  t.is(r.code, 137);
  t.regex(r.stderr, /killed: out of memory, limit 16 MiB/);
});

testIf(missing, 'tsbuild run: invalid flags give SANDBOX_* errors and exit 125 when the values are bad', async (t) => {
  const { rootfs, env } = await setup(t);
  const cases: [string[], RegExp][] = [
    [['--memory', '12q'], /SANDBOX_BAD_LIMIT/],
    [['--cpus', '-1'], /SANDBOX_BAD_LIMIT/],
    [['--network', 'bridge'], /SANDBOX_BAD_NETWORK/],
    [['-v', 'named:/x'], /SANDBOX_BAD_MOUNT/],
    [['-v', '/tmp:rel'], /SANDBOX_BAD_MOUNT/],
    [['-e', '=x'], /SANDBOX_BAD_ENV/],
    [['--cap-add', 'WIZARDRY'], /SANDBOX_BAD_CAPABILITY/],
  ];
  for (const [flags, code] of cases) {
    const r = await cli(['run', '--rootfs', rootfs, ...flags, '--', 'true'], { env });
    t.regex(r.stderr, code, flags.join(' '));
    t.is(r.code, 125, flags.join(' '));
  }
  const ghost = await cli(['run', '--rootfs', rootfs, '-u', 'ghost', '--', 'true'], { env });
  t.regex(ghost.stderr, /SANDBOX_UNKNOWN_USER: .*ghost/);
  t.not(ghost.code, 0);
});

testIf(missing, 'tsbuild run: a missing rootfs or command is a clear error when run', async (t) => {
  const { rootfs, env } = await setup(t);
  const noRoot = await cli(['run', '--rootfs', join(rootfs, 'absent'), '--', 'true'], { env });
  t.regex(noRoot.stderr, /SANDBOX_ROOTFS_NOT_FOUND: .*absent/);
  const noCmd = await cli(['run', '--rootfs', rootfs, '--', '/opt/tool'], { env });
  t.is(noCmd.code, 127);
  t.regex(noCmd.stderr, /SANDBOX_COMMAND_NOT_FOUND: .*\/opt\/tool/);
});

test('tsbuild run: an image that is not in the store is a clear error and creates no container when given', async (t) => {
  // Images run as containers (test/integration/run-containers.test.ts); an unknown one fails before anything is created.
  const root = join(await tempDir(t), 'root');
  const r = await cli(['--root', root, 'run', 'alpine', 'true']);
  t.regex(r.stderr, /STORE_IMAGE_NOT_FOUND: no such image: alpine/);
  t.is(r.code, 1);
  t.is((await cli(['--root', root, 'ps', '-aq'])).stdout, '');
});
