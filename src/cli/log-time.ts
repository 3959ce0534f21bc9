import { TsbuildError } from '../core/index.js';

const NS_PER_UNIT: Readonly<Record<string, number>> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** A Go duration (`10m`, `1h30m`, `1.5s`, `300ms`) in nanoseconds; undefined when `text` is not one. */
export function parseGoDuration(text: string): bigint | undefined {
  const m = /^([-+]?)((?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(text);
  if (m === null) return undefined;
  let total = 0;
  for (const part of (m[2] as string).matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) total += Number(part[1]) * (NS_PER_UNIT[part[2] as string] as number);
  const ns = BigInt(Math.round(total));
  return m[1] === '-' ? -ns : ns;
}

/** Nanoseconds since the epoch of a fraction of a second `frac` ("123" -> 123000000). */
function fractionNs(frac: string | undefined): bigint {
  return frac === undefined || frac === '' ? 0n : BigInt(frac.slice(0, 9).padEnd(9, '0'));
}

/**
 * Parses docker's `--since`/`--until` value to nanoseconds since the epoch: RFC 3339 timestamps
 * (`2024-01-02T15:04:05.123Z`, `+02:00` offsets; without a zone: local time; `2024-01-02`,
 * `2024-01-02T15:04`), Unix seconds with an optional fraction (`1700000000.5`), or a Go duration
 * relative to `nowMs` (`10m`, `1h30m`: that long ago). Throws CLI_BAD_VALUE naming the option and value.
 */
export function parseLogTime(text: string, nowMs: number, option: string): bigint {
  const value = text.trim();
  const unix = /^(\d+)(?:\.(\d{1,9}))?$/.exec(value);
  if (unix !== null) return BigInt(unix[1] as string) * 1_000_000_000n + fractionNs(unix[2]);
  const duration = parseGoDuration(value);
  if (duration !== undefined) return BigInt(nowMs) * 1_000_000n - duration;
  const ts = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|z|[+-]\d{2}:\d{2})?$/.exec(value);
  if (ts !== null) {
    const [, y, mo, d, h = '0', mi = '0', s = '0', frac, zone] = ts;
    const fields = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)] as const;
    let ms: number;
    if (zone === undefined) {
      ms = new Date(...fields).getTime(); // local time, as docker
    } else {
      ms = Date.UTC(...fields);
      if (zone !== 'Z' && zone !== 'z') {
        const sign = zone.startsWith('-') ? -1 : 1;
        ms -= sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * 60_000;
      }
    }
    const check = new Date(Date.UTC(...fields));
    if (Number.isFinite(ms) && check.getUTCMonth() === fields[1] && check.getUTCDate() === fields[2] && fields[3] < 24 && fields[4] < 60 && fields[5] < 61) {
      return BigInt(ms) * 1_000_000n + fractionNs(frac);
    }
  }
  throw new TsbuildError('CLI_BAD_VALUE', `invalid value "${text}" for --${option}`, {
    hint: 'give an RFC 3339 timestamp (2024-01-02T15:04:05Z), Unix seconds (1700000000.5) or a duration ago (10m, 1h30m)',
    exitCode: 125,
  });
}
