// Child process of zygote.test.ts: runs `sleep` in a sandbox (stdout and stderr are streams, so the
// launcher comes from the zygote), prints the sandboxed process's host pid, and waits to be SIGKILLed.
import { PassThrough } from 'node:stream';
import { createRunSpec } from '../../src/sandbox/spec.js';
import { rootSandbox } from './sandbox-helpers.js';

const [rootfs, state] = process.argv.slice(2) as [string, string];
const sandbox = rootSandbox(state);
const out = new PassThrough().resume();
const err = new PassThrough().resume();
void sandbox.run(createRunSpec({ root: { path: rootfs }, args: ['sleep', '1000'] }), { stdout: out, stderr: err }, undefined, {
  onCreated: async (pid) => {
    process.stdout.write(`${pid}\n`);
  },
});
