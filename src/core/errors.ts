/** Where in a file something was found; lines and columns are 1-based. */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  readonly column?: number;
  readonly endLine?: number;
}

/** Area prefixes of error codes; a code is `<AREA>_<WHAT>` (e.g. `DF_UNKNOWN_INSTRUCTION`). */
export type ErrorArea =
  | 'CORE' | 'CLI' | 'DF' | 'PLAN' | 'CTX' | 'RUN' | 'REG' | 'STORE' | 'LAYER' | 'IMAGE'
  | 'SNAPSHOT' | 'SANDBOX' | 'SOLVE' | 'CTR' | 'LINT';

/** A string error code with an area prefix, or `INTERNAL` for bugs. */
export type ErrorCode = `${ErrorArea}_${string}` | 'INTERNAL';

/** Options of a {@link TsbuildError}. */
export interface TsbuildErrorOptions {
  readonly loc?: SourceLocation;
  readonly cause?: unknown;
  readonly hint?: string;
  /** The process exit code the CLI should use (default 1). */
  readonly exitCode?: number;
}

/** The only error type thrown across module boundaries; rendered by cli/render-error.ts. */
export class TsbuildError extends Error {
  readonly code: ErrorCode;
  readonly loc: SourceLocation | undefined;
  readonly hint: string | undefined;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options: TsbuildErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TsbuildError';
    this.code = code;
    this.loc = options.loc;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** True when `err` is a {@link TsbuildError} (optionally with the given code). */
export function isTsbuildError(err: unknown, code?: ErrorCode): err is TsbuildError {
  return err instanceof TsbuildError && (code === undefined || err.code === code);
}

/** Feature flags of later issues: a clear, uniform "not supported yet" error. */
export function notSupportedYet(what: string, hint?: string): TsbuildError {
  return new TsbuildError('CLI_NOT_SUPPORTED', `${what} is not supported yet`, hint === undefined ? {} : { hint });
}
