import { PassThrough } from 'node:stream';
import { runCli } from '../../src/cli/app.js';

/** What one in-process CLI run produced. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link cli}. */
export interface CliOptions {
  readonly cwd?: string;
  readonly env?: Record<string, string | undefined>;
  /** Bytes or text fed to stdin (stdin is ended either way). */
  readonly stdin?: string | Buffer;
}

/** Runs `runCli(argv)` in-process with PassThrough streams and collects the output. */
export async function cli(argv: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  stdin.end(options.stdin ?? '');
  const code = await runCli(argv, {
    stdin,
    stdout,
    stderr,
    env: options.env ?? {},
    cwd: options.cwd ?? process.cwd(),
    signal: new AbortController().signal,
  });
  stdout.end();
  stderr.end();
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** True when `text` contains a V8 stack frame line. */
export function hasStackTrace(text: string): boolean {
  return /^\s+at .+(:\d+:\d+\)?|\(native\))$/m.test(text);
}
