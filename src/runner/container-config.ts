import { TsbuildError, type ContainerConfig } from '../core/index.js';

/** The process-level flags of `run` that override the image config. */
export interface ProcessFlags {
  /** `--entrypoint`: '' clears the image's ENTRYPOINT (and its CMD, as docker). */
  readonly entrypoint?: string;
  /** The positionals after IMAGE. */
  readonly command: readonly string[];
  /** `-e` values, already `K=V`. */
  readonly env: readonly string[];
  readonly user?: string;
  readonly workdir?: string;
  readonly stopSignal?: string;
}

/** The process a container runs, resolved from the image config and the flags. */
export interface ResolvedProcess {
  readonly args: readonly string[];
  /** The effective ENTRYPOINT and CMD (their concatenation is `args`). */
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly env: readonly string[];
  readonly cwd: string;
  /** The user as text (`USER` or `-u`); `root` when neither sets one. */
  readonly userText: string;
  readonly stopSignal: string;
}

/** Docker's PATH when the image sets none. */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Merges `K=V` lists: later keys replace earlier ones in place, new keys are appended. */
export function mergeEnv(base: readonly string[], overrides: readonly string[]): string[] {
  const out = [...base];
  for (const kv of overrides) {
    const key = kv.split('=', 1)[0] as string;
    const i = out.findIndex((e) => e.split('=', 1)[0] === key);
    if (i === -1) out.push(kv);
    else out[i] = kv;
  }
  return out;
}

/**
 * Docker's rules: `--entrypoint` replaces ENTRYPOINT and drops the image's CMD; a command replaces
 * CMD; Env is the image's then `-e` (PATH defaulted); WorkingDir `/` when unset; User `root` when
 * unset; StopSignal SIGTERM when unset. Throws RUN_NO_COMMAND when nothing is left to run.
 */
export function resolveProcess(image: ContainerConfig | undefined, flags: ProcessFlags): ResolvedProcess {
  let entrypoint: readonly string[] = image?.Entrypoint ?? [];
  let cmd: readonly string[] = image?.Cmd ?? [];
  if (flags.entrypoint !== undefined) {
    entrypoint = flags.entrypoint === '' ? [] : [flags.entrypoint];
    cmd = [];
  }
  if (flags.command.length > 0) cmd = flags.command;
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new TsbuildError('RUN_NO_COMMAND', 'no command specified', { hint: 'the image has no ENTRYPOINT or CMD: give a command after the image name', exitCode: 125 });
  }
  let env = mergeEnv(image?.Env ?? [], flags.env);
  if (!env.some((e) => e.startsWith('PATH='))) env = [DEFAULT_PATH, ...env];
  const workdir = flags.workdir ?? image?.WorkingDir;
  const user = flags.user ?? image?.User;
  return {
    args,
    entrypoint,
    cmd,
    env,
    cwd: workdir === undefined || workdir === '' ? '/' : workdir,
    userText: user === undefined || user === '' ? 'root' : user,
    stopSignal: flags.stopSignal ?? (image?.StopSignal !== undefined && image.StopSignal !== '' ? image.StopSignal : 'SIGTERM'),
  };
}

/** Parses a signal given as `SIGTERM`, `TERM`, `term` or a number into a Node signal name or number. Throws RUN_BAD_SIGNAL. */
export function parseSignal(text: string, known: Readonly<Record<string, number>>): { name: string; number: number } {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    const name = Object.keys(known).find((k) => known[k] === n);
    if (name !== undefined && n > 0) return { name, number: n };
  } else {
    const name = `SIG${text.toUpperCase().replace(/^SIG/, '')}`;
    const n = known[name];
    if (n !== undefined) return { name, number: n };
  }
  throw new TsbuildError('RUN_BAD_SIGNAL', `invalid signal: ${text}`, { exitCode: 125 });
}
