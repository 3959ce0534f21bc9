import type { ExecutionContext } from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, type CliOptions, type CliResult } from '../cli/run-cli.js';
import { makeBusyboxImage } from './base-image.js';
import { tempDir } from './tmp.js';

/** The in-process CLI bound to one store (`--root ROOT` prepended). */
export type StoreCli = (...a: string[]) => Promise<CliResult>;

/** Pids of other processes whose command line mentions `text` (monitors carry `--root ROOT`, port proxies the container directory). */
export function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n) || Number(n) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(text)) out.push(Number(n));
    } catch {
      // gone
    }
  }
  return out;
}

/** Live (not zombie) children of process `parent`, with their command names (15 characters at most, as the kernel keeps them). */
export function liveChildren(parent: number): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] !== 'Z' && Number(fields[1]) === parent) out.push({ pid: Number(n), comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) });
    } catch {
      // gone
    }
  }
  return out;
}

/** Live children of process `parent` whose command name is `comm`. */
export function childrenNamed(parent: number, comm: string): number[] {
  return liveChildren(parent).filter((c) => c.comm === comm).map((c) => c.pid);
}

/** Waits (up to 20 s) until no process mentions `text`; returns either way (the caller asserts). */
export async function waitForNoProcessMentioning(text: string): Promise<void> {
  for (let i = 0; i < 400 && processesMentioning(text).length > 0; i++) await new Promise((res) => setTimeout(res, 50));
}

/** Sandbox cgroups owned by `pid` under any v1 hierarchy's tsbuild parent. */
export function cgroupsOwnedBy(pid: number): string[] {
  const out: string[] = [];
  for (const ctrl of readdirSync('/sys/fs/cgroup')) {
    let names: string[] = [];
    try {
      names = readdirSync(join('/sys/fs/cgroup', ctrl, 'tsbuild'));
    } catch {
      continue;
    }
    out.push(...names.filter((n) => n.includes(`owner-${pid}-`)).map((n) => `${ctrl}/${n}`));
  }
  return out;
}

/** Options of {@link watchContainerStore}. */
export interface ContainerStoreOptions {
  /** cwd/env of every call of `r` (cleanup calls use none). */
  readonly cli?: CliOptions;
  /** Record the monitor pid of every container after each call, and have `finish` check that no cgroup of them and no writable layer is left. */
  readonly monitors?: boolean;
  /** Remove volumes too (`rm -f -v`, `volume rm -f`), and have `finish` check that none is left. */
  readonly volumes?: boolean;
  /** The message of `finish`'s no-process assertion. */
  readonly processesMessage?: string;
}

/** A store's CLI plus its leak checks, from {@link watchContainerStore}. */
export interface ContainerStore {
  /** The CLI on the store with the options' cwd/env. */
  readonly r: StoreCli;
  /** The CLI on the store with explicit options. */
  readonly rIn: (options: CliOptions, ...a: string[]) => Promise<CliResult>;
  /** Removes every container (and volume), then asserts nothing is left: no process of the store, no mount under it (plus what the options add). */
  readonly finish: () => Promise<void>;
}

/**
 * Binds the CLI to the existing store `root` and registers a teardown that force-removes every
 * container of it (and waits for their processes to end), also when the test fails.
 */
export function watchContainerStore(t: ExecutionContext, root: string, options: ContainerStoreOptions = {}): ContainerStore {
  const monitors = new Set<number>();
  const rIn = async (cliOptions: CliOptions, ...a: string[]): Promise<CliResult> => {
    const res = await cli(['--root', root, ...a], cliOptions);
    if (options.monitors === true) {
      for (const id of await readdir(join(root, 'containers')).catch(() => [] as string[])) {
        const state = await readFile(join(root, 'containers', id, 'state.json'), 'utf8').then((s) => JSON.parse(s) as { monitorPid: number }, () => undefined);
        if (state !== undefined && state.monitorPid > 0 && state.monitorPid !== process.pid) monitors.add(state.monitorPid);
      }
    }
    return res;
  };
  const r: StoreCli = (...a) => rIn(options.cli ?? {}, ...a);
  const cleanup = async (): Promise<void> => {
    const ids = (await cli(['--root', root, 'ps', '-aq', '--no-trunc'])).stdout.split('\n').filter((s) => s !== '');
    if (ids.length > 0) await cli(['--root', root, 'rm', '-f', ...(options.volumes === true ? ['-v'] : []), ...ids]);
    if (options.volumes === true) {
      const vols = (await cli(['--root', root, 'volume', 'ls', '-q'])).stdout.split('\n').filter((s) => s !== '');
      if (vols.length > 0) await cli(['--root', root, 'volume', 'rm', '-f', ...vols]);
    }
    await waitForNoProcessMentioning(root);
  };
  t.teardown(cleanup);
  const finish = async (): Promise<void> => {
    await cleanup();
    t.deepEqual(processesMentioning(root), [], options.processesMessage ?? 'no monitor or container process is left');
    if (options.monitors === true) for (const pid of monitors) t.deepEqual(cgroupsOwnedBy(pid), [], `no cgroup of monitor ${pid} is left`);
    t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(root), 'no mount under the store is left');
    if (options.monitors === true) t.deepEqual((await readdir(join(root, 'snapshots', 'overlay', 'active')).catch(() => [])), [], 'no writable layer is left');
    if (options.volumes === true) t.deepEqual(await readdir(join(root, 'volumes')).catch(() => []), [], 'no volume is left');
  };
  return { r, rIn, finish };
}

/** A temp dir with a store holding busybox, watched by {@link watchContainerStore} (every container and volume removed at the end). */
export async function busyboxContainerStore(t: ExecutionContext): Promise<{ dir: string; root: string; r: StoreCli }> {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const { r } = watchContainerStore(t, root, { cli: { cwd: dir }, volumes: true });
  return { dir, root, r };
}
