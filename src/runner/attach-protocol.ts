/**
 * The attach socket's wire format and the files beside it. A detached container's monitor listens
 * on `containers/<id>/attach.sock`; every message either way is a frame: one type byte, a 32-bit
 * big-endian length, the payload. Without a tty stdout and stderr stay separate frame types.
 */
import { openSync, closeSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import type { ContainerStore } from './container-store.js';

/** Frame types: client -> monitor. */
export const FRAME_STDIN = 0;
/** Payload `ROWS COLS` (text): the client's terminal size, for a tty container. */
export const FRAME_RESIZE = 1;
/** Frame types: monitor -> client. */
export const FRAME_STDOUT = 1;
export const FRAME_STDERR = 2;
/** Payload: the exit code (text) of the container's process; the monitor then closes the connection. */
export const FRAME_EXIT = 3;

const HEADER = 5;

/**
 * A foreground `run` listens on its attach socket only once its container has run this long: the listen costs
 * ~2 ms of CPU (node:net loads the cluster module and with it child_process), which a short command such as
 * `run --rm IMAGE true` never needs. A client retries a running container's missing socket for
 * {@link ATTACH_GRACE_MS} after its start.
 */
export const FOREGROUND_ATTACH_DELAY_MS = 50;
/** How long after a container's start a client retries its missing attach socket (its owner listens by then). */
export const ATTACH_GRACE_MS = 2000;

/** Encodes one frame. */
export function encodeFrame(type: number, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const head = Buffer.alloc(HEADER);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** Splits a byte stream into frames (chunks may cut frames anywhere). */
export class FrameDecoder {
  #pending: Buffer = Buffer.alloc(0);

  /** Adds `chunk` and returns the frames it completes. */
  push(chunk: Buffer): { type: number; payload: Buffer }[] {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const out: { type: number; payload: Buffer }[] = [];
    while (this.#pending.length >= HEADER) {
      const len = this.#pending.readUInt32BE(1);
      if (this.#pending.length < HEADER + len) break;
      out.push({ type: this.#pending.readUInt8(0), payload: this.#pending.subarray(HEADER, HEADER + len) });
      this.#pending = this.#pending.subarray(HEADER + len);
    }
    return out;
  }
}

/**
 * The attach socket of container `id`'s monitor `monitorPid`: one per monitor, so a client never
 * reaches the monitor of an earlier run that is still closing down, nor does its cleanup remove
 * the socket of the next.
 */
export function attachSocketPathOf(containers: ContainerStore, id: string, monitorPid: number): string {
  return join(containers.dirOf(id), `attach-${monitorPid}.sock`);
}

/** True for the name of an attach socket file (any monitor's). */
export function isAttachSocketName(name: string): boolean {
  return /^attach-\d+\.sock$/.test(name);
}

/**
 * Runs `fn` with a short path naming `path` (a unix socket's sun_path holds 108 bytes, a store's
 * container directory may be longer): `/proc/self/fd/N/NAME` through an open fd of its directory.
 */
export async function withShortSocketPath<T>(path: string, fn: (short: string) => Promise<T>): Promise<T> {
  if (Buffer.byteLength(path) < 100) return fn(path);
  const slash = path.lastIndexOf('/');
  const fd = openSync(path.slice(0, slash), 'r');
  try {
    return await fn(`/proc/self/fd/${fd}/${path.slice(slash + 1)}`);
  } finally {
    closeSync(fd);
  }
}

/** The file recording `-i` (docker's Config.OpenStdin) of a container. */
function openStdinPathOf(containers: ContainerStore, id: string): string {
  return join(containers.dirOf(id), 'open-stdin');
}

/** Records that container `id` keeps its stdin open (`run -d -i`): every monitor run gives it one. */
export async function markOpenStdin(containers: ContainerStore, id: string): Promise<void> {
  await writeFile(openStdinPathOf(containers, id), '1\n', { mode: 0o640 });
}

/** True when container `id` was created with `-i`. */
export async function hasOpenStdin(containers: ContainerStore, id: string): Promise<boolean> {
  return readFile(openStdinPathOf(containers, id), 'utf8').then(() => true, () => false);
}

/**
 * Parses docker's `--detach-keys`: comma-separated keys, each one character or `ctrl-X` (X a
 * letter or one of `@[\]^_`). Throws CLI_BAD_VALUE.
 */
export function parseDetachKeys(text: string): Buffer {
  const bytes: number[] = [];
  const bad = (): TsbuildError => new TsbuildError('CLI_BAD_VALUE', `invalid detach keys "${text}"`, {
    hint: 'comma-separated keys: a single character or ctrl-<value> (a-z, @, [, \\, ], ^, _), e.g. "ctrl-p,ctrl-q"', exitCode: 1,
  });
  for (const key of text.split(',')) {
    if (key.length === 1) {
      bytes.push(key.charCodeAt(0));
      continue;
    }
    const m = /^ctrl-(.)$/i.exec(key);
    if (m === null) throw bad();
    const c = (m[1] as string).toLowerCase();
    if (c >= 'a' && c <= 'z') bytes.push(c.charCodeAt(0) - 96);
    else if ('@[\\]^_'.includes(c)) bytes.push('@[\\]^_'.indexOf(c) === 0 ? 0 : 27 + '[\\]^_'.indexOf(c));
    else throw bad();
  }
  return Buffer.from(bytes);
}

/** Docker's default detach keys (ctrl-p, ctrl-q). */
export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';
