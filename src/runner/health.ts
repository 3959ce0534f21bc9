/**
 * Healthchecks (docker's HEALTHCHECK / `--health-*`): while a container runs, its owner runs the
 * check command inside it on schedule (through the launcher's join mode, as `exec`) and keeps
 * the status and the last five results in `containers/<id>/health.json` (replaced atomically).
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { TsbuildError, type HealthConfig } from '../core/index.js';
import type { RunResult } from '../sandbox/index.js';
import type { ContainerRecord, ContainerStore } from './container-store.js';
import type { ExecDeps } from './exec.js';
import { randomHex } from '../sys/index.js';

/** A container's healthcheck, durations in milliseconds. */
export interface HealthcheckSpec {
  /** Docker's Test: `['CMD', arg...]` or `['CMD-SHELL', command]`. */
  readonly test: readonly string[];
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly startPeriodMs: number;
  readonly startIntervalMs: number;
  readonly retries: number;
}

/** The `--health-*` flags (durations already parsed, in ms). */
export interface HealthFlags {
  readonly cmd?: string;
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
  readonly startPeriodMs?: number;
  readonly startIntervalMs?: number;
  readonly retries?: number;
  /** `--no-healthcheck`. */
  readonly disabled?: boolean;
}

/** One probe's result as docker's State.Health.Log entry. */
export interface HealthLogEntry {
  readonly Start: string;
  readonly End: string;
  readonly ExitCode: number;
  readonly Output: string;
}

/** Docker's State.Health. */
export interface HealthState {
  readonly Status: 'starting' | 'healthy' | 'unhealthy';
  readonly FailingStreak: number;
  readonly Log: readonly HealthLogEntry[];
}

const NS_PER_MS = 1_000_000;
const DEFAULT_MS = 30_000;
const MAX_OUTPUT = 4096;
const MAX_LOG = 5;

/** Parses a Go duration (`30s`, `1m30s`, `500ms`, `1.5h`) into milliseconds. Throws CLI_BAD_VALUE. */
export function parseDuration(text: string, flag: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * (units[m[2] as string] as number);
    end = re.lastIndex;
  }
  if (text === '0') return 0;
  if (end === 0 || end !== text.length) {
    throw new TsbuildError('CLI_BAD_VALUE', `invalid argument "${text}" for "${flag}": time: invalid duration (e.g. 30s, 1m30s, 500ms)`, { exitCode: 125 });
  }
  return total;
}

/**
 * The effective healthcheck of a container: the image's HEALTHCHECK with the flags over it, as
 * docker merges them; undefined when there is none or it is disabled (`NONE`, `--no-healthcheck`).
 */
export function resolveHealthcheck(image: HealthConfig | undefined, flags: HealthFlags): HealthcheckSpec | undefined {
  if (flags.disabled === true) return undefined;
  const test = flags.cmd !== undefined ? ['CMD-SHELL', flags.cmd] : image?.Test;
  if (test === undefined || test.length === 0 || test[0] === 'NONE') return undefined;
  if (test[0] !== 'CMD' && test[0] !== 'CMD-SHELL') return undefined;
  const ms = (flag: number | undefined, ns: number | undefined, fallback: number): number => flag ?? (ns !== undefined && ns > 0 ? ns / NS_PER_MS : fallback);
  return {
    test,
    intervalMs: ms(flags.intervalMs, image?.Interval, DEFAULT_MS),
    timeoutMs: ms(flags.timeoutMs, image?.Timeout, DEFAULT_MS),
    startPeriodMs: ms(flags.startPeriodMs, image?.StartPeriod, 0),
    startIntervalMs: ms(flags.startIntervalMs, image?.StartInterval, 5000),
    retries: flags.retries ?? (image?.Retries !== undefined && image.Retries > 0 ? image.Retries : 3),
  };
}

/** The healthcheck as docker's Config.Healthcheck (nanoseconds). */
export function healthConfigOf(spec: HealthcheckSpec): HealthConfig {
  return {
    Test: spec.test,
    Interval: spec.intervalMs * NS_PER_MS,
    Timeout: spec.timeoutMs * NS_PER_MS,
    StartPeriod: spec.startPeriodMs * NS_PER_MS,
    StartInterval: spec.startIntervalMs * NS_PER_MS,
    Retries: spec.retries,
  };
}

function healthFileOf(containers: ContainerStore, id: string): string {
  return join(containers.dirOf(id), 'health.json');
}

/** The health of container `id` while it runs with a healthcheck, else undefined. */
export async function readHealth(containers: ContainerStore, id: string): Promise<HealthState | undefined> {
  try {
    return JSON.parse(await readFile(healthFileOf(containers, id), 'utf8')) as HealthState;
  } catch {
    return undefined;
  }
}

async function writeHealth(containers: ContainerStore, id: string, h: HealthState): Promise<void> {
  const tmp = join(containers.dirOf(id), `.health.json.${process.pid}-${randomHex(4)}`);
  try {
    await writeFile(tmp, `${JSON.stringify(h, null, 2)}\n`);
    await rename(tmp, healthFileOf(containers, id));
  } catch {
    // The container was removed meanwhile: nothing to record.
    await rm(tmp, { force: true }).catch(() => undefined);
  }
}

/** Collects at most MAX_OUTPUT bytes of the probe's output. */
function outputCollector(): { sink: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (size < MAX_OUTPUT) {
        chunks.push(chunk.subarray(0, MAX_OUTPUT - size));
        size += Math.min(chunk.length, MAX_OUTPUT - size);
      }
      cb();
    },
  });
  return { sink, text: () => Buffer.concat(chunks).toString('utf8') };
}

/** Runs one probe in the running container; a timeout or a failure to run counts as exit -1 (as docker). */
async function probe(deps: ExecDeps, config: ContainerRecord, spec: HealthcheckSpec, stop: AbortSignal): Promise<HealthLogEntry> {
  const start = new Date().toISOString();
  const out = outputCollector();
  const command = spec.test[0] === 'CMD-SHELL' ? ['/bin/sh', '-c', spec.test.slice(1).join(' ')] : spec.test.slice(1);
  const timeout = AbortSignal.timeout(spec.timeoutMs);
  let exitCode: number;
  let extra = '';
  try {
    const entry = await deps.containers.inspect(config.id);
    if (entry === undefined) throw new TsbuildError('RUN_NO_SUCH_CONTAINER', 'the container is gone');
    // exec (and the sandbox's join) loads with the first probe: a container without a healthcheck never needs it.
    const { execInContainer } = await import('./exec.js');
    exitCode = (await execInContainer(deps, entry, { command, env: [], terminal: false, detach: false }, { stdin: 'ignore', stdout: out.sink, stderr: out.sink }, AbortSignal.any([timeout, stop]))).exitCode;
  } catch (err) {
    exitCode = -1;
    extra = timeout.aborted ? `Health check exceeded timeout (${spec.timeoutMs / 1000}s)` : (err as Error).message;
  }
  return { Start: start, End: new Date().toISOString(), ExitCode: exitCode, Output: `${out.text()}${extra}` };
}

/**
 * Runs `run` (one run of the container, which calls `onStarted` once its process runs and awaits
 * `onEnded` once it has ended, before the container may be removed) with the
 * healthcheck `spec` probing on schedule from the start until the run ends: `starting`, then
 * `healthy` after a passing probe, `unhealthy` after `retries` failures in a row (failures in the
 * start period do not count). Without a spec only `run` happens.
 */
export async function runWithHealthcheck(deps: ExecDeps, config: ContainerRecord, spec: HealthcheckSpec | undefined, run: (onStarted: () => void, onEnded: () => Promise<void>) => Promise<RunResult>): Promise<RunResult> {
  if (spec === undefined) return run(() => undefined, async () => undefined);
  const stop = new AbortController();
  let loop: Promise<void> | undefined;
  const sleep = (ms: number): Promise<void> => new Promise((res) => {
    const timer = setTimeout(res, ms);
    stop.signal.addEventListener('abort', () => { clearTimeout(timer); res(); }, { once: true });
  });
  const begin = async (): Promise<void> => {
    const startedAt = Date.now();
    let health: HealthState = { Status: 'starting', FailingStreak: 0, Log: [] };
    await writeHealth(deps.containers, config.id, health);
    for (;;) {
      const inStart = Date.now() - startedAt < spec.startPeriodMs && health.Status === 'starting';
      await sleep(inStart ? spec.startIntervalMs : spec.intervalMs);
      if (stop.signal.aborted) return;
      const result = await probe(deps, config, spec, stop.signal);
      if (stop.signal.aborted) return;
      const log = [...health.Log, result].slice(-MAX_LOG);
      const counts = !(Date.now() - startedAt < spec.startPeriodMs && health.Status === 'starting');
      if (result.ExitCode === 0) health = { Status: 'healthy', FailingStreak: 0, Log: log };
      else if (!counts) health = { ...health, Log: log };
      else {
        const streak = health.FailingStreak + 1;
        health = { Status: streak >= spec.retries ? 'unhealthy' : health.Status, FailingStreak: streak, Log: log };
      }
      await writeHealth(deps.containers, config.id, health);
    }
  };
  // No probe may still be writing health.json when the run removes the container (--rm).
  const end = async (): Promise<void> => {
    stop.abort();
    await loop;
  };
  try {
    return await run(() => {
      loop ??= begin().catch(() => undefined);
    }, end);
  } finally {
    stop.abort();
    await loop;
  }
}
