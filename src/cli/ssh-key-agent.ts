import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsbuildError } from '../core/index.js';
import { sshString, type SshKey } from './ssh-keys.js';

/**
 * A minimal ssh-agent (draft-miller-ssh-agent) serving private keys read from files, for
 * `--ssh ID=KEYFILE`: RUN --mount=type=ssh gets its socket as it would get a real agent's. It lists
 * the keys (REQUEST_IDENTITIES) and signs with them (SIGN_REQUEST); everything else (adding or
 * removing keys, locking, extensions) is refused with SSH_AGENT_FAILURE. The keys never leave this
 * process. The socket lives in a private (0700) directory, removed by close().
 */
export interface KeyAgent {
  readonly socket: string;
  close(): Promise<void>;
}

const FAILURE = 5;
const REQUEST_IDENTITIES = 11;
const IDENTITIES_ANSWER = 12;
const SIGN_REQUEST = 13;
const SIGN_RESPONSE = 14;
/** Larger requests are refused and the connection closed (real requests are a few KiB). */
const MAX_MESSAGE = 256 * 1024;

/** Starts an agent for `keys` on a fresh socket. */
export async function startKeyAgent(keys: readonly SshKey[]): Promise<KeyAgent> {
  const dir = mkdtempSync(join(tmpdir(), 'tsbuild-ssh-'));
  const socket = join(dir, 'agent.sock');
  const clients = new Set<Socket>();
  const server: Server = createServer((c) => {
    clients.add(c);
    c.on('close', () => clients.delete(c));
    c.on('error', () => undefined);
    serve(c, keys);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socket, () => resolve());
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new TsbuildError('CLI_IO', `--ssh: cannot start the key agent on ${socket}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err, hint: 'set TMPDIR to a short, writable directory' });
  }
  // Not referenced: a build that is done does not wait for the agent.
  server.unref();
  return {
    socket,
    async close() {
      for (const c of clients) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function serve(c: Socket, keys: readonly SshKey[]): void {
  let pending: Buffer = Buffer.alloc(0);
  c.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 4) {
      const len = pending.readUInt32BE(0);
      if (len === 0 || len > MAX_MESSAGE) {
        c.destroy();
        return;
      }
      if (pending.length < 4 + len) break;
      const msg = pending.subarray(4, 4 + len);
      pending = pending.subarray(4 + len);
      c.write(sshString(answer(msg, keys)));
    }
  });
}

/** The reply to one request (type byte and contents). */
function answer(msg: Buffer, keys: readonly SshKey[]): Buffer {
  const type = msg[0];
  if (type === REQUEST_IDENTITIES) {
    const count = Buffer.alloc(4);
    count.writeUInt32BE(keys.length);
    return Buffer.concat([Buffer.from([IDENTITIES_ANSWER]), count, ...keys.flatMap((k) => [sshString(k.blob), sshString(k.comment)])]);
  }
  if (type === SIGN_REQUEST) {
    const parsed = parseSignRequest(msg.subarray(1));
    const key = parsed === undefined ? undefined : keys.find((k) => k.blob.equals(parsed.blob));
    if (parsed === undefined || key === undefined) return Buffer.from([FAILURE]);
    try {
      return Buffer.concat([Buffer.from([SIGN_RESPONSE]), sshString(key.sign(parsed.data, parsed.flags))]);
    } catch {
      return Buffer.from([FAILURE]);
    }
  }
  return Buffer.from([FAILURE]);
}

function parseSignRequest(b: Buffer): { blob: Buffer; data: Buffer; flags: number } | undefined {
  let off = 0;
  const take = (): Buffer | undefined => {
    if (b.length - off < 4) return undefined;
    const n = b.readUInt32BE(off);
    if (b.length - off - 4 < n) return undefined;
    const out = b.subarray(off + 4, off + 4 + n);
    off += 4 + n;
    return out;
  };
  const blob = take();
  const data = take();
  if (blob === undefined || data === undefined) return undefined;
  const flags = b.length - off >= 4 ? b.readUInt32BE(off) : 0;
  return { blob, data, flags };
}
