// Child process of cgroup-v2.test.ts, run as an unprivileged user inside a delegated cgroup v2 subtree:
// waits for "go" on stdin, creates a rootless sandbox cgroup, puts a process in it, reports, destroys it.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createCgroup } from '../../src/sandbox/cgroup.js';
import type { CgroupV2 } from '../../src/sandbox/cgroup-v2.js';

const root = process.argv[2] as string;
process.stdin.once('data', () => {
  void (async () => {
    const warnings: string[] = [];
    const cg = (await createCgroup('deleg', { pidsLimit: 5 }, { rootless: true, mode: 'v2', root, onWarning: (m) => warnings.push(m) })) as CgroupV2 | undefined;
    if (cg === undefined) {
      process.stdout.write(`${JSON.stringify({ warnings })}\n`);
      return;
    }
    const sleeper = spawn('/bin/sleep', ['30']);
    await cg.addProcess(sleeper.pid as number);
    const procs = readFileSync(`${cg.directory}/cgroup.procs`, 'utf8').trim();
    const self = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    await cg.destroy();
    process.stdout.write(`${JSON.stringify({ dir: cg.directory, warnings, procs, sleeper: sleeper.pid, self, killed: sleeper.signalCode ?? (await new Promise((r) => sleeper.once('exit', (_c, s) => r(s)))) })}\n`);
  })().catch((err: unknown) => {
    process.stdout.write(`${JSON.stringify({ error: String(err) })}\n`);
  });
});
