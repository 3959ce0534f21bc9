import { suggest, TsbuildError, type SourceLocation } from '../core/index.js';
import { parseBool } from './directives.js';
import { parseRamBytes } from './duration.js';
import type { RunMount } from './instructions.js';

type MountType = RunMount['type'];
const TYPES: readonly MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];

/** Canonical option names and their aliases. */
const ALIASES: Readonly<Record<string, string>> = {
  type: 'type',
  target: 'target', dst: 'target', destination: 'target',
  source: 'source', src: 'source',
  from: 'from',
  readonly: 'readonly', ro: 'readonly',
  readwrite: 'readwrite', rw: 'readwrite',
  id: 'id', sharing: 'sharing', mode: 'mode', uid: 'uid', gid: 'gid',
  size: 'size', required: 'required', env: 'env',
};

/** Options each mount type accepts (besides `type`). */
const ALLOWED: Readonly<Record<MountType, readonly string[]>> = {
  bind: ['target', 'source', 'from', 'readonly', 'readwrite'],
  cache: ['target', 'id', 'source', 'from', 'readonly', 'readwrite', 'sharing', 'mode', 'uid', 'gid'],
  tmpfs: ['target', 'size'],
  secret: ['id', 'target', 'env', 'required', 'mode', 'uid', 'gid', 'source'],
  ssh: ['id', 'target', 'required', 'mode', 'uid', 'gid', 'source'],
};

/** Splits a CSV record (Go encoding/csv rules: a field may be wrapped in double quotes). */
function splitCsv(value: string): string[] {
  const fields: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i <= value.length) {
    const c = value[i];
    if (quoted) {
      if (c === undefined) break;
      if (c === '"' && value[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
      i++;
      continue;
    }
    if (c === undefined || c === ',') {
      fields.push(field);
      field = '';
      i++;
      continue;
    }
    if (c === '"' && field === '') quoted = true;
    else field += c;
    i++;
  }
  return fields;
}

/**
 * Parses the value of `RUN --mount=...` into a typed mount (values unexpanded). Fails with
 * DF_BAD_MOUNT on an unknown type or option, an option the type does not take, a bad value.
 */
export function parseMount(value: string, loc: SourceLocation): RunMount {
  const bad = (message: string, hint?: string): TsbuildError =>
    new TsbuildError('DF_BAD_MOUNT', `--mount=${value}: ${message}`, { loc, ...(hint === undefined ? {} : { hint }) });
  const opts = new Map<string, string | undefined>();
  for (const field of splitCsv(value)) {
    const f = field.trim();
    if (f === '') continue;
    const eq = f.indexOf('=');
    const rawKey = (eq < 0 ? f : f.slice(0, eq)).trim().toLowerCase();
    const key = ALIASES[rawKey];
    if (key === undefined) {
      const s = suggest(rawKey, Object.keys(ALIASES));
      throw bad(`unknown mount option "${rawKey}"`, s === undefined ? undefined : `did you mean ${s}?`);
    }
    opts.set(key, eq < 0 ? undefined : f.slice(eq + 1));
  }
  const typeText = opts.get('type') ?? 'bind';
  const type = TYPES.find((t) => t === typeText.toLowerCase());
  if (type === undefined) {
    const s = suggest(typeText, TYPES);
    throw bad(`unknown mount type "${typeText}"`, `use one of ${TYPES.join(', ')}${s === undefined ? '' : ` (did you mean ${s}?)`}`);
  }
  for (const key of opts.keys()) {
    if (key !== 'type' && !ALLOWED[type].includes(key)) throw bad(`option "${key}" does not apply to a ${type} mount`);
  }
  const str = (key: string): string | undefined => {
    if (!opts.has(key)) return undefined;
    const v = opts.get(key);
    if (v === undefined || v === '') throw bad(`option "${key}" needs a value`);
    return v;
  };
  const bool = (key: string, dflt: boolean): boolean => {
    if (!opts.has(key)) return dflt;
    const v = opts.get(key);
    if (v === undefined) return true;
    const b = parseBool(v);
    if (b === undefined) throw bad(`option "${key}" takes true or false, not "${v}"`);
    return b;
  };
  const int = (key: string, radix: number): number | undefined => {
    const v = str(key);
    if (v === undefined) return undefined;
    const ok = radix === 8 ? /^[0-7]+$/.test(v) : /^\d+$/.test(v);
    if (!ok && v.includes('$')) throw bad(`option "${key}" uses a variable ("${v}"); variables in mode, uid and gid are not supported yet`);
    if (!ok) throw bad(`option "${key}" must be ${radix === 8 ? 'an octal number such as 0755' : 'a non-negative integer'}, not "${v}"`);
    return Number.parseInt(v, radix);
  };
  const opt = <K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } =>
    (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };
  const target = str('target');
  const needTarget = (): string => {
    if (target === undefined) throw bad(`a ${type} mount needs a target`, `add target=/path`);
    return target;
  };
  const perms = { ...opt('mode', int('mode', 8)), ...opt('uid', int('uid', 10)), ...opt('gid', int('gid', 10)) };
  switch (type) {
    case 'bind':
      return {
        type, target: needTarget(), ...opt('source', str('source')), ...opt('from', str('from')),
        readwrite: bool('readwrite', false) || !bool('readonly', true),
      };
    case 'cache': {
      const sharing = str('sharing') ?? 'shared';
      if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') {
        throw bad(`sharing must be shared, private or locked, not "${sharing}"`);
      }
      return {
        type, target: needTarget(), ...opt('id', str('id')), ...opt('source', str('source')), ...opt('from', str('from')),
        readonly: bool('readonly', false) && !bool('readwrite', false), sharing, ...perms,
      };
    }
    case 'tmpfs': {
      const sizeText = str('size');
      const size = sizeText === undefined ? undefined : parseRamBytes(sizeText);
      if (sizeText !== undefined && size === undefined) throw bad(`size "${sizeText}" is not a size such as 64m`);
      return { type, target: needTarget(), ...opt('size', size) };
    }
    case 'secret': {
      const id = str('id') ?? str('source');
      const env = str('env');
      if (id === undefined && target === undefined && env === undefined) throw bad('a secret mount needs an id, a target or an env', 'add id=<secret id>');
      return { type, ...opt('id', id), ...opt('target', target), ...opt('env', env), required: bool('required', false), ...perms };
    }
    case 'ssh':
      return { type, ...opt('id', str('id') ?? str('source')), ...opt('target', target), required: bool('required', false), ...perms };
  }
}
