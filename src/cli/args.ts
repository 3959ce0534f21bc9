import { suggest, TsbuildError } from '../core/index.js';


/** How an option takes its value. */
export type OptionType = 'bool' | 'string' | 'list';

/** Declares one command-line option. */
export interface OptionSpec {
  /** Long name without dashes, e.g. `build-arg`. */
  readonly name: string;
  readonly short?: string;
  readonly type: OptionType;
  readonly help: string;
  /** Placeholder for help output, e.g. `KEY=VALUE`. */
  readonly value?: string;
  /** Accepted, but using it fails with "not supported yet" naming this. */
  readonly notSupported?: string;
  /** Hidden from help. */
  readonly hidden?: boolean;
}

/** Parsed options and positional arguments. */
export interface ParsedArgs {
  readonly options: Readonly<Record<string, string | boolean | readonly string[] | undefined>>;
  readonly positionals: readonly string[];
}

/** Options accepted by every command. */
export const commonOptions: readonly OptionSpec[] = [
  { name: 'help', short: 'h', type: 'bool', help: 'Show help for this command' },
];

/**
 * Parses `argv` against `specs`: `--name value`, `--name=value`, `-s value`, `-svalue`,
 * bundled short booleans (`-it`), `--` ends options. Throws `CLI_BAD_FLAG` (with a
 * did-you-mean hint) for unknown flags and `CLI_MISSING_VALUE` for a flag without value.
 * With `stopAtPositional`, the first positional and everything after it are positionals.
 */
export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[], command: string, stopAtPositional = false): ParsedArgs {
  const all = [...specs, ...commonOptions];
  const byLong = new Map(all.map((s) => [s.name, s]));
  const byShort = new Map(all.filter((s) => s.short !== undefined).map((s) => [s.short as string, s]));
  const options: Record<string, string | boolean | string[] | undefined> = {};
  const positionals: string[] = [];

  const set = (spec: OptionSpec, value: string | boolean): void => {
    if (spec.type === 'list') {
      const prev = options[spec.name];
      options[spec.name] = [...(Array.isArray(prev) ? prev : []), String(value)];
    } else {
      options[spec.name] = value;
    }
  };
  const unknown = (flag: string): TsbuildError => {
    const names = all.filter((s) => !s.hidden).map((s) => `--${s.name}`);
    const guess = suggest(flag.replace(/=.*$/, ''), names);
    return new TsbuildError('CLI_BAD_FLAG', `unknown flag ${flag} for "tsbuild ${command}"`, {
      hint: guess === undefined ? `see "tsbuild ${command} --help"` : `did you mean ${guess}?`,
      exitCode: 125,
    });
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const spec = byLong.get(name);
      if (spec === undefined) throw unknown(arg);
      if (spec.type === 'bool') {
        const v = eq === -1 ? 'true' : arg.slice(eq + 1);
        if (v !== 'true' && v !== 'false') {
          throw new TsbuildError('CLI_BAD_VALUE', `flag --${name} takes true or false, not "${v}"`, { exitCode: 125 });
        }
        set(spec, v === 'true');
        continue;
      }
      let value: string | undefined;
      if (eq !== -1) value = arg.slice(eq + 1);
      else value = argv[++i];
      if (value === undefined) {
        throw new TsbuildError('CLI_MISSING_VALUE', `flag --${name} needs a value`, { exitCode: 125 });
      }
      set(spec, value);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const ch = arg[j] as string;
        const spec = byShort.get(ch);
        if (spec === undefined) throw unknown(`-${ch}`);
        if (spec.type === 'bool') {
          set(spec, true);
          continue;
        }
        let value: string | undefined = arg.slice(j + 1);
        if (value.startsWith('=')) value = value.slice(1);
        if (value === '') value = argv[++i];
        if (value === undefined) {
          throw new TsbuildError('CLI_MISSING_VALUE', `flag -${ch} needs a value`, { exitCode: 125 });
        }
        set(spec, value);
        break;
      }
      continue;
    }
    positionals.push(arg);
    if (stopAtPositional) {
      positionals.push(...argv.slice(i + 1));
      break;
    }
  }

  for (const spec of all) {
    // With --help the command only prints its help, so unsupported flags do not matter.
    if (spec.notSupported !== undefined && options[spec.name] !== undefined && options.help !== true) {
      throw new TsbuildError('CLI_NOT_SUPPORTED', `--${spec.name} is not supported yet (${spec.notSupported})`, { exitCode: 125 });
    }
  }
  return { options, positionals };
}

/** Reads a string option. */
export function optString(args: ParsedArgs, name: string): string | undefined {
  const v = args.options[name];
  return typeof v === 'string' ? v : undefined;
}

/** Reads a boolean option (false when absent). */
export function optBool(args: ParsedArgs, name: string): boolean {
  return args.options[name] === true;
}

/** Reads a repeatable option (empty when absent). */
export function optList(args: ParsedArgs, name: string): readonly string[] {
  const v = args.options[name];
  return Array.isArray(v) ? v : [];
}

/** Formats the options table of a help text. */
export function formatOptions(specs: readonly OptionSpec[]): string {
  const rows = [...specs, ...commonOptions]
    .filter((s) => !s.hidden)
    .map((s) => {
      const flag = `${s.short === undefined ? '    ' : `-${s.short}, `}--${s.name}${s.type === 'bool' ? '' : ` ${s.value ?? 'string'}`}`;
      return [flag, s.help + (s.type === 'list' ? ' (repeatable)' : '') + (s.notSupported === undefined ? '' : ' [not supported yet]')] as const;
    });
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  return rows.map(([f, h]) => `  ${f.padEnd(width)}${h}`).join('\n');
}
