import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { TsbuildError, type SourceLocation } from '../../core/index.js';
import type { ExecOp } from '../../plan/index.js';
import type { MountSpec } from '../../sandbox/index.js';

/** What the secret and ssh mounts of a step add to its sandbox. */
export interface SecretMounts {
  readonly mounts: MountSpec[];
  /** `NAME=value` of secrets exposed as environment variables (`env=`): never in the image or a key. */
  readonly env: string[];
  /** Secret texts to mask in the step's output and error. */
  readonly redact: string[];
  /** Removes the secret files and stops the agent proxies (idempotent). */
  cleanup(): Promise<void>;
}

/** Where the secrets and agents of a build come from. */
export interface SecretSources {
  /** `--secret` contents by id. */
  readonly secrets: ReadonlyMap<string, Uint8Array>;
  /** `--ssh` agent sockets by id. */
  readonly sshAgents: ReadonlyMap<string, string>;
  /** A private directory for the secret files and proxy sockets (removed afterwards). */
  readonly tmpDir: string;
  /** Rootless: a uid/gid the user namespace does not map leaves the file owned by the caller (container root). */
  readonly rootless: boolean;
  readonly loc: SourceLocation | undefined;
}

/** Longest unix socket path (sun_path minus the NUL). */
const MAX_SOCKET_PATH = 107;

/** Proxies connections to an ssh-agent socket: the step sees only a socket with its mount's owner and mode. */
class AgentProxy {
  readonly #server: Server;
  readonly #open = new Set<Socket>();

  constructor(agent: string) {
    // Half-open both ways: an agent client may shut down its writing side and still read the answer.
    this.#server = createServer({ allowHalfOpen: true }, (client) => {
      const upstream = connect({ path: agent, allowHalfOpen: true });
      this.#open.add(client);
      this.#open.add(upstream);
      const destroy = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', destroy).on('close', () => {
        this.#open.delete(client);
        upstream.destroy();
      });
      upstream.on('error', destroy).on('close', () => {
        this.#open.delete(upstream);
        client.end();
      });
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  async listen(path: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(path, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.#open) s.destroy();
    this.#open.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Masks the lines of a secret that are long enough not to hit ordinary words. */
function redactionsOf(value: Uint8Array): string[] {
  return Buffer.from(value).toString('utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length >= 4);
}

/**
 * Prepares the `type=secret` and `type=ssh` mounts of a RUN step: each secret is written to a
 * private file (its mount's mode, uid, gid) bound read-only at its target, or exposed as an env
 * variable; each agent is served by a proxy socket bound at its target with `SSH_AUTH_SOCK` set
 * for the first one. Absent and not `required`: the mount is skipped, as BuildKit. Throws
 * RUN_SECRET_NOT_FOUND / RUN_SSH_NOT_FOUND at the instruction for a required one that is absent.
 */
export async function prepareSecretMounts(op: ExecOp, src: SecretSources): Promise<SecretMounts> {
  const mounts: MountSpec[] = [];
  const env: string[] = [];
  const redact: string[] = [];
  const proxies: AgentProxy[] = [];
  let dir: string | undefined;
  const cleanup = async (): Promise<void> => {
    await Promise.all(proxies.splice(0).map((p) => p.close()));
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  };
  const privateDir = async (): Promise<string> => {
    if (dir === undefined) {
      dir = join(src.tmpDir, `sec-${process.pid}-${randomBytes(4).toString('hex')}`); // `kind-<pid>-`: gc keeps it while we live
      await mkdir(dir, { mode: 0o700 });
    }
    return dir;
  };
  const owned = async (path: string, m: { mode: number; uid: number; gid: number }): Promise<void> => {
    // In a user namespace ids outside the mapping cannot be given: the file then stays the caller's (container root).
    await chown(path, m.uid, m.gid).catch((err: unknown) => {
      if (!src.rootless) throw err;
    });
    await chmod(path, m.mode);
  };
  const where = src.loc === undefined ? {} : { loc: src.loc };
  try {
    let n = 0;
    for (const m of op.mounts) {
      if (m.type === 'secret') {
        const value = src.secrets.get(m.id);
        if (value === undefined) {
          if (m.required) throw new TsbuildError('RUN_SECRET_NOT_FOUND', `secret "${m.id}" is required but was not given`, { ...where, hint: `pass it with --secret id=${m.id},src=FILE or --secret id=${m.id},env=VAR` });
          continue;
        }
        redact.push(...redactionsOf(value));
        if (m.env !== undefined) env.push(`${m.env}=${Buffer.from(value).toString('utf8')}`);
        if (m.target === undefined) continue;
        const file = join(await privateDir(), `s${n++}`);
        await writeFile(file, value, { mode: 0o600 });
        await owned(file, m);
        mounts.push({ destination: m.target, type: 'bind', source: file, options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] });
      } else if (m.type === 'ssh') {
        const agent = src.sshAgents.get(m.id);
        if (agent === undefined) {
          if (m.required) throw new TsbuildError('RUN_SSH_NOT_FOUND', `ssh agent "${m.id}" is required but was not forwarded`, { ...where, hint: `pass it with --ssh ${m.id}${m.id === 'default' ? '' : '=SOCKET'}` });
          continue;
        }
        const sock = join(await privateDir(), `a${n++}`);
        if (Buffer.byteLength(sock) > MAX_SOCKET_PATH) {
          throw new TsbuildError('RUN_SSH_PATH_TOO_LONG', `the ssh agent proxy socket ${sock} is longer than ${MAX_SOCKET_PATH} bytes`, { ...where, hint: 'use a shorter store root (--root)' });
        }
        const proxy = new AgentProxy(agent);
        proxies.push(proxy);
        await proxy.listen(sock);
        await owned(sock, m);
        mounts.push({ destination: m.target, type: 'bind', source: sock, options: ['bind', 'nosuid', 'nodev', 'noexec'] });
        if (!env.some((e) => e.startsWith('SSH_AUTH_SOCK='))) env.push(`SSH_AUTH_SOCK=${m.target}`);
      }
    }
  } catch (err) {
    await cleanup();
    if (err instanceof TsbuildError) throw err;
    throw new TsbuildError('SOLVE_IO', `cannot prepare the secret or ssh mounts: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { ...where, cause: err });
  }
  return { mounts, env, redact, cleanup };
}
