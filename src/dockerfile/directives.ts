import { TsbuildError, type SourceLocation } from '../core/index.js';
import type { CheckDirective, Directives } from './instructions.js';

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN = new Set(['syntax', 'escape', 'check']);

/** Parser directives plus the number of leading lines they occupy. */
export interface DirectiveScan {
  readonly directives: Directives;
  /** 1-based line of each directive found, by name. */
  readonly lines: ReadonlyMap<string, number>;
}

/**
 * Reads the parser directives at the top of a Dockerfile the way BuildKit does: `# name=value`
 * lines (leading whitespace allowed) until the first line that is not one, or names an unknown
 * directive. Fails with DF_BAD_DIRECTIVE on a repeated directive, a bad escape or check value.
 */
export function scanDirectives(lines: readonly string[], file: string): DirectiveScan {
  const seen = new Map<string, number>();
  let syntax: string | undefined;
  let escape: '\\' | '`' = '\\';
  let check: CheckDirective | undefined;
  for (let i = 0; i < lines.length; i++) {
    const m = DIRECTIVE.exec((lines[i] as string).trimStart());
    if (m === null) break;
    const name = (m[1] as string).toLowerCase();
    const value = m[2] as string;
    if (!KNOWN.has(name)) break;
    const loc: SourceLocation = { file, line: i + 1, endLine: i + 1 };
    if (seen.has(name)) {
      throw new TsbuildError('DF_BAD_DIRECTIVE', `only one ${name} parser directive can be used`, { loc });
    }
    seen.set(name, i + 1);
    if (name === 'syntax') syntax = value;
    else if (name === 'escape') {
      if (value !== '\\' && value !== '`') {
        throw new TsbuildError('DF_BAD_DIRECTIVE', `invalid escape token '${value}' does not match \` or \\`, {
          loc,
          hint: 'use "# escape=\\" (the default) or "# escape=`"',
        });
      }
      escape = value;
    } else check = parseCheck(value, loc);
  }
  const directives: Directives = {
    escape,
    ...(syntax === undefined ? {} : { syntax }),
    ...(check === undefined ? {} : { check }),
  };
  return { directives, lines: seen };
}

/** Parses `skip=A,B;error=true` (also `skip=all`). */
export function parseCheck(value: string, loc: SourceLocation): CheckDirective {
  let skip: string[] | 'all' = [];
  let error = false;
  for (const part of value.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const key = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const v = eq < 0 ? '' : part.slice(eq + 1).trim();
    if (key === 'skip') {
      const names = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
      skip = names.some((n) => n.toLowerCase() === 'all') ? 'all' : names;
    } else if (key === 'error') {
      const b = parseBool(v);
      if (b === undefined) throw new TsbuildError('DF_BAD_DIRECTIVE', `invalid check directive: error=${v} is not a boolean`, { loc });
      error = b;
    } else {
      throw new TsbuildError('DF_BAD_DIRECTIVE', `invalid check directive: unknown key "${key}"`, {
        loc,
        hint: 'the check directive takes skip=<rules>|all and error=true|false, separated by ";"',
      });
    }
  }
  return { skip, error };
}

/** Go's strconv.ParseBool. */
export function parseBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}
