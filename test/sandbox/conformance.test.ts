import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { runWithOciRuntime } from '../../src/sandbox/oci-runtime.js';
import type { SandboxStdio } from '../../src/sandbox/sandbox.js';
import { createRunSpec, type RunSpec, type RunSpecOptions } from '../../src/sandbox/spec.js';
import { testSerialIf } from '../helpers/capability.js';
import { busyboxMissing, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/tmp.js';
import { CGROUP_ROOTS, ownedCgroupDirs } from './cgroup-helpers.js';
import { mountsUnder, rootSandbox } from './sandbox-helpers.js';

// The same probe runs under the built-in launcher and under runc; what the process observes must match field by
// field: ids and groups, hostname, capabilities, no_new_privs, seccomp, rlimits, mount points and their types,
// cgroup view, and the cgroup limit files of its cgroup (read from the host while the probe waits).

function tool(name: string): boolean {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const missing = (process.getuid?.() === 0 ? undefined : 'conformance tests need root') ?? busyboxMissing()
  ?? (tool('runc') ? undefined : 'runc is not installed (apt-get install runc)');
const cgroupV2Only = existsSync('/sys/fs/cgroup/cgroup.controllers');
const crunRuntimes = tool('crun') && cgroupV2Only ? ['crun'] : [];
if (!cgroupV2Only) console.warn('conformance: crun is not compared: crun refuses this machine\'s hybrid (v1) cgroups');
else if (!tool('crun')) console.warn('conformance: crun is not compared: crun is not installed');

const PROBE = [
  'echo "id=$(id)"',
  'echo "hostname=$(hostname)"',
  'grep -E "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):" /proc/self/status | tr -d "\\t" | sed "s/^/status=/"',
  'echo "nofile=$(ulimit -n)"',
  'echo "cwd=$(pwd)"',
  'awk \'{ for (i = 7; $i != "-"; i++); print "mount=" $5 " " $(i+1) }\' /proc/self/mountinfo | sort',
  'sed "s/^/cgroup=/" /proc/self/cgroup',
  'echo READY',
  'read go',
].join('\n');

/** The limit files compared, per v1 controller. */
const LIMIT_FILES: ReadonlyArray<[string, string]> = [
  ['memory', 'memory.limit_in_bytes'], ['memory', 'memory.memsw.limit_in_bytes'], ['memory', 'memory.soft_limit_in_bytes'],
  ['cpu', 'cpu.cfs_quota_us'], ['cpu', 'cpu.cfs_period_us'], ['cpu', 'cpu.shares'],
  ['cpuset', 'cpuset.cpus'], ['pids', 'pids.max'],
];

/** Reads the limit files of the one cgroup this process owns right now (the probe's). */
function readLimits(): string[] {
  const out: string[] = [];
  for (const [controller, file] of LIMIT_FILES) {
    const dirs = ownedCgroupDirs([join('/sys/fs/cgroup', controller)]);
    if (dirs.length !== 1) {
      out.push(`${file}=<${dirs.length} cgroups>`);
      continue;
    }
    const path = join(dirs[0] as string, file);
    out.push(`${file}=${existsSync(path) ? readFileSync(path, 'utf8').trim() : '<missing>'}`);
  }
  return out;
}

type Runner = (spec: RunSpec, stdio: SandboxStdio) => Promise<{ exitCode: number }>;

/** Runs the probe; returns its output lines plus the host-side limit lines read while it waited. */
async function observe(run: Runner, spec: RunSpec): Promise<{ lines: string[]; exitCode: number }> {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  let text = '';
  let limits: string[] = [];
  stdout.setEncoding('utf8').on('data', (s: string) => {
    text += s;
    if (/^READY$/m.test(text) && limits.length === 0) {
      limits = readLimits();
      stdin.end('go\n');
    }
  });
  const stderr = new PassThrough();
  let errText = '';
  stderr.setEncoding('utf8').on('data', (s: string) => { errText += s; });
  const r = await run(spec, { stdin, stdout, stderr });
  if (limits.length === 0) throw new Error(`the probe never got ready: ${errText}`);
  return { lines: [...text.split('\n').filter((l) => l !== '' && l !== 'READY'), ...limits.map((l) => `limit=${l}`)], exitCode: r.exitCode };
}

const cases: Array<[string, Omit<RunSpecOptions, 'root' | 'args'>]> = [
  ['root with limits', {
    hostname: 'conform',
    resources: {
      memory: { limit: 64 * 1024 * 1024, swap: 128 * 1024 * 1024, reservation: 32 * 1024 * 1024 },
      cpu: { quota: 50_000, period: 100_000, shares: 512, cpus: '0' },
      pids: { limit: 40 },
    },
  }],
  ['an unprivileged user with groups, cwd and caps changed', {
    hostname: 'conform2',
    user: { uid: 1000, gid: 1000, additionalGids: [50] },
    cwd: '/tmp',
    capAdd: ['NET_ADMIN'],
    capDrop: ['CHOWN', 'NET_RAW'],
    resources: { pids: { limit: 10 } },
  }],
];

for (const runtime of ['runc', ...crunRuntimes]) {
  for (const [what, options] of cases) {
    testSerialIf(missing, `conformance: the built-in sandbox and ${runtime} observe the same when running ${what}`, async (t) => {
      const dir = await tempDir(t, 'tsbuild-conform-');
      const rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
      t.teardown(() => {
        const left = [...mountsUnder([dir]), ...ownedCgroupDirs(CGROUP_ROOTS)];
        if (left.length > 0) throw new Error(`left behind: ${left.join(', ')}`);
      });
      const spec = createRunSpec({ root: { path: rootfs }, args: ['sh', '-c', PROBE], ...options });
      const sandbox = rootSandbox(join(dir, 'state-builtin'));
      const builtin = await observe((s, stdio) => sandbox.run(s, stdio), spec);
      const oci = await observe((s, stdio) => runWithOciRuntime(runtime, s, stdio, undefined, { stateDir: join(dir, 'state-oci'), ownerPid: process.pid, rootless: false }), spec);
      t.is(builtin.exitCode, 0);
      t.is(oci.exitCode, 0);
      t.log(builtin.lines.join('\n'));
      // Field by field, so a failure names the field.
      const keys = [...new Set([...builtin.lines, ...oci.lines].map((l) => l.slice(0, l.indexOf('='))))];
      // The probe really observed something: every field is present and the limits were found on the host.
      t.deepEqual([...keys].sort(), ['cgroup', 'cwd', 'hostname', 'id', 'limit', 'mount', 'nofile', 'status']);
      // The built-in sandbox joins the cpu and cpuset hierarchies only for their limits (runc joins all): without
      // one, its process has no cgroup there, and those files are left out of the comparison.
      const cpuFiles = LIMIT_FILES.filter(([c]) => c === 'cpu' || c === 'cpuset').map(([, f]) => f);
      const unlimited = options.resources?.cpu === undefined ? cpuFiles : [];
      for (const f of unlimited) t.true(builtin.lines.includes(`limit=${f}=<0 cgroups>`), `no ${f} cgroup without a cpu limit`);
      const dropped = new Set(unlimited.map((f) => `limit=${f}=`));
      // The init files (/etc/hosts, /etc/hostname, /etc/resolv.conf) are bind mounts whose file system is where
      // their content lives: a tmpfs private to the built-in sandbox's namespace, runc's state dir for runc.
      const normalise = (lines: string[]): string[] => lines
        .filter((l) => ![...dropped].some((d) => l.startsWith(d)))
        .map((l) => l.replace(/^mount=(\/etc\/(?:hosts|hostname|resolv\.conf)) .*$/, 'mount=$1 <init file>'));
      // The built-in sandbox's /dev is nodev (it sets up no device cgroup): its standard nodes are binds of
      // the host's (devtmpfs) where runc makes them in the /dev tmpfs, and so are the masked files (binds of /dev/null).
      const nodes = ['full', 'null', 'random', 'tty', 'urandom', 'zero'].map((n) => `mount=/dev/${n} devtmpfs`);
      t.deepEqual(builtin.lines.filter((l) => nodes.includes(l)).sort(), nodes, 'the standard device nodes are binds of the host\'s');
      builtin.lines = normalise(builtin.lines.filter((l) => !nodes.includes(l)))
        .map((l) => l.replace(/^mount=(\/(?:proc|sys)\/\S+) devtmpfs$/, 'mount=$1 tmpfs'));
      oci.lines = normalise(oci.lines);
      t.false(builtin.lines.some((l) => l.includes('<') && !l.includes('<init file>')), 'each limit file was read from exactly one cgroup');
      const pids = options.resources?.pids?.limit;
      t.true(builtin.lines.includes(`limit=pids.max=${String(pids)}`));
      for (const key of keys) {
        const pick = (lines: string[]): string[] => lines.filter((l) => l.startsWith(`${key}=`)).sort();
        t.deepEqual(pick(builtin.lines), pick(oci.lines), `field "${key}": built-in (left) vs ${runtime} (right)`);
      }
    });
  }
}
