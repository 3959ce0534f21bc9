import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { testSerialIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { createRunSpec } from '../../src/sandbox/spec.js';
import { assertNoLeftoverMounts, notRoot, rootSandbox } from './sandbox-helpers.js';

const missing = notRoot() ?? busyboxMissing();

testSerialIf(missing, 'hooks: onExited is called once, after onCreated, when the process has ended and before run() resolves', async (t) => {
  const dir = await tempDir(t, 'tsbuild-hooks-');
  const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  assertNoLeftoverMounts(t, [dir]);
  const sandbox = rootSandbox(join(dir, 'state'));
  t.teardown(() => sandbox.close());
  const events: string[] = [];
  let childPid = 0;
  let childGoneAtExited: boolean | undefined;
  const out = new PassThrough().resume();
  for (const [args, code] of [[['true'], 0], [['sh', '-c', 'exit 3'], 3]] as const) {
    events.length = 0;
    const run = sandbox.run(createRunSpec({ root: { path: rootfs }, args: [...args] }), { stdout: out, stderr: out }, undefined, {
      onCreated: async (pid) => {
        childPid = pid;
        events.push('created');
      },
      onExited: () => {
        events.push('exited');
        // The launcher has reaped its child: the pid no longer names it (or is another process's by now).
        try {
          process.kill(childPid, 0);
          childGoneAtExited = false;
        } catch {
          childGoneAtExited = true;
        }
      },
    }).then((r) => {
      events.push(`resolved ${r.exitCode}`);
    });
    await run;
    t.deepEqual(events, ['created', 'exited', `resolved ${code}`], args.join(' '));
    t.true(childGoneAtExited, args.join(' '));
  }
});
