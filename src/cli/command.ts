import type { Readable, Writable } from 'node:stream';
import type { OptionSpec, ParsedArgs } from './args.js';

/** Options given before the command name (`tsbuild --root DIR images`). */
export interface GlobalOptions {
  readonly root?: string;
  readonly debug: boolean;
}

/** Everything a command may touch; the only place process state enters the program. */
export interface CommandContext {
  readonly global: GlobalOptions;
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** Source texts read by the command, so errors can show the offending line. */
  readonly sources: Map<string, string>;
  readonly signal: AbortSignal;
  /** The whole argv of this invocation (without node and script), for a command that re-runs itself (a rootless build). */
  readonly argv?: readonly string[];
}

/** One `tsbuild <verb>`. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Usage line after `tsbuild `, e.g. `build [OPTIONS] PATH`. */
  readonly usage: string;
  readonly options: readonly OptionSpec[];
  /** Treat everything from the first positional on as positionals (run, exec). */
  readonly stopAtPositional?: boolean;
  /** Runs the command; resolves to the exit code. Throws TsbuildError on failure. */
  run(args: ParsedArgs, ctx: CommandContext): Promise<number>;
}
