import { TsbuildError, type ContainerConfig, type ImageConfig } from '../core/index.js';

/** Instructions `--change` accepts (docker import/commit's set). */
export const CHANGE_INSTRUCTIONS = ['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'LABEL', 'ONBUILD', 'USER', 'VOLUME', 'WORKDIR', 'STOPSIGNAL'] as const;

function bad(change: string, why: string): TsbuildError {
  return new TsbuildError('IMAGE_BAD_CHANGE', `invalid --change "${change}": ${why}`, {
    hint: `supported: ${CHANGE_INSTRUCTIONS.join(', ')}, e.g. --change 'CMD ["/bin/sh"]'`,
  });
}

/** Parses a JSON string array, or undefined when `text` is not one. */
function jsonArray(text: string): string[] | undefined {
  if (!text.trimStart().startsWith('[')) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Splits `k=v k2="v 2"` pairs (double quotes and backslash escapes), or the legacy `k v` form. */
function keyValues(change: string, text: string): [string, string][] {
  if (!/^[^\s=]+=/.test(text)) {
    const m = /^(\S+)\s+(.*)$/s.exec(text);
    if (m === null) throw bad(change, 'expected KEY=VALUE');
    return [[m[1] as string, m[2] as string]];
  }
  const out: [string, string][] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i] as string)) i++;
    if (i >= text.length) break;
    let word = '';
    let quote: string | undefined;
    for (; i < text.length; i++) {
      const ch = text[i] as string;
      if (quote !== undefined) {
        if (ch === quote) quote = undefined;
        else if (ch === '\\' && quote === '"' && i + 1 < text.length) word += text[++i];
        else word += ch;
      } else if (ch === '"' || ch === "'") quote = ch;
      else if (ch === '\\' && i + 1 < text.length) word += text[++i];
      else if (/\s/.test(ch)) break;
      else word += ch;
    }
    if (quote !== undefined) throw bad(change, 'unterminated quote');
    const eq = word.indexOf('=');
    if (eq <= 0) throw bad(change, `"${word}" is not KEY=VALUE`);
    out.push([word.slice(0, eq), word.slice(eq + 1)]);
  }
  return out;
}

/** Applies one `--change` line (a Dockerfile instruction) to a container config. Throws `IMAGE_BAD_CHANGE`. */
export function applyChange(c: ContainerConfig, change: string): ContainerConfig {
  const m = /^\s*([A-Za-z]+)(?:\s+(.*))?$/s.exec(change);
  if (m === null) throw bad(change, 'expected an instruction such as CMD or ENV');
  const kw = (m[1] as string).toUpperCase();
  const rest = (m[2] ?? '').trim();
  const command = (): string[] => jsonArray(rest) ?? ['/bin/sh', '-c', rest];
  switch (kw) {
    case 'CMD':
      return { ...c, Cmd: command() };
    case 'ENTRYPOINT':
      return { ...c, Entrypoint: command() };
    case 'ENV': {
      const env = [...(c.Env ?? [])];
      for (const [k, v] of keyValues(change, rest)) {
        const i = env.findIndex((e) => e.startsWith(`${k}=`));
        if (i === -1) env.push(`${k}=${v}`);
        else env[i] = `${k}=${v}`;
      }
      return { ...c, Env: env };
    }
    case 'LABEL':
      return { ...c, Labels: { ...(c.Labels ?? {}), ...Object.fromEntries(keyValues(change, rest)) } };
    case 'EXPOSE': {
      const ports: Record<string, Record<string, never>> = { ...(c.ExposedPorts ?? {}) };
      for (const p of rest.split(/\s+/).filter(Boolean)) {
        if (!/^\d+(-\d+)?(\/(tcp|udp|sctp))?$/i.test(p)) throw bad(change, `invalid port "${p}"`);
        ports[p.includes('/') ? p.toLowerCase() : `${p}/tcp`] = {};
      }
      return { ...c, ExposedPorts: ports };
    }
    case 'VOLUME': {
      const vols: Record<string, Record<string, never>> = { ...(c.Volumes ?? {}) };
      for (const v of jsonArray(rest) ?? rest.split(/\s+/).filter(Boolean)) vols[v] = {};
      return { ...c, Volumes: vols };
    }
    case 'USER':
      if (rest === '') throw bad(change, 'USER needs a value');
      return { ...c, User: rest };
    case 'WORKDIR':
      if (rest === '') throw bad(change, 'WORKDIR needs a value');
      return { ...c, WorkingDir: rest.startsWith('/') ? rest : `${c.WorkingDir ?? '/'}/${rest}`.replace(/\/+/g, '/') };
    case 'STOPSIGNAL':
      return { ...c, StopSignal: rest };
    case 'ONBUILD':
      return { ...c, OnBuild: [...(c.OnBuild ?? []), rest] };
    default:
      throw bad(change, `${kw} cannot be used with --change`);
  }
}

/** Applies `--change` lines in order to an image config. */
export function applyChanges(config: ImageConfig, changes: readonly string[]): ImageConfig {
  return { ...config, config: changes.reduce(applyChange, config.config ?? {}) };
}
