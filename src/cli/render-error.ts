import { isTsbuildError } from '../core/index.js';

/** What the renderer may use to show context. */
export interface RenderOptions {
  readonly debug: boolean;
  /** Source texts by file name, to print the offending line under a located error. */
  readonly sources?: ReadonlyMap<string, string>;
}

/**
 * Formats any thrown value for the terminal: `FILE:LINE: CODE: message`, the source line,
 * and a hint. Stack traces only with `debug`. Unknown errors become `INTERNAL`.
 */
export function renderError(err: unknown, options: RenderOptions): string {
  const lines: string[] = [];
  if (isTsbuildError(err)) {
    const where = err.loc === undefined ? '' : `${err.loc.file}:${err.loc.line}: `;
    lines.push(`${where}${err.code}: ${err.message}`);
    const text = err.loc === undefined ? undefined : options.sources?.get(err.loc.file);
    if (err.loc !== undefined && text !== undefined) {
      const all = text.split(/\r?\n/);
      const last = Math.min(err.loc.endLine ?? err.loc.line, err.loc.line + 4);
      for (let n = err.loc.line; n <= last && n <= all.length; n++) {
        lines.push(` ${String(n).padStart(4)} | ${all[n - 1] ?? ''}`);
      }
    }
    if (err.hint !== undefined) lines.push(`hint: ${err.hint}`);
    if (options.debug) {
      lines.push(err.stack ?? '');
      if (err.cause !== undefined) lines.push(`caused by: ${renderCause(err.cause)}`);
    }
    return lines.join('\n');
  }
  const message = err instanceof Error ? err.message : String(err);
  lines.push(`INTERNAL: ${message}`);
  if (options.debug && err instanceof Error) lines.push(err.stack ?? '');
  else lines.push('hint: this is a bug in tsbuild; run again with --debug for details');
  return lines.join('\n');
}

function renderCause(cause: unknown): string {
  return cause instanceof Error ? (cause.stack ?? cause.message) : String(cause);
}
