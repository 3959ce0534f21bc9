/** Nanoseconds per Go duration unit. */
const UNITS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  'µs': 1e3,
  'μs': 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/**
 * Parses a Go duration (`time.ParseDuration`: `300ms`, `1.5h`, `1m30s`, `-2s`, `0`) into
 * nanoseconds, or undefined when the text is not one.
 */
export function parseGoDuration(text: string): number | undefined {
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let total = 0;
  const re = /^(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (s !== '') {
    const m = re.exec(s);
    if (m === null) return undefined;
    total += Number.parseFloat(m[1] as string) * (UNITS[m[2] as string] as number);
    s = s.slice(m[0].length);
  }
  if (!Number.isFinite(total)) return undefined;
  return sign * Math.round(total);
}

/** Parses a size like `64m`, `1GiB`, `1024` (Docker's RAMInBytes, binary units) into bytes. */
export function parseRamBytes(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(text.trim());
  if (m === null) return undefined;
  const unit = (m[2] as string).toLowerCase();
  const power = unit === '' ? 1 : 1024 ** ('kmgtp'.indexOf(unit) + 1);
  const n = Number.parseFloat(m[1] as string) * power;
  return Number.isFinite(n) ? Math.floor(n) : undefined;
}
