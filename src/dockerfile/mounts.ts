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

/** The parsed `key=value` options of one --mount, with typed accessors that fail clearly. */
class MountOptions {
  readonly opts = new Map<string, string | undefined>();

  constructor(readonly value: string, readonly loc: SourceLocation) {}

  bad(message: string, hint?: string): TsbuildError {
    return new TsbuildError('DF_BAD_MOUNT', `--mount=${this.value}: ${message}`, hint === undefined ? { loc: this.loc } : { loc: this.loc, hint });
  }

  str(key: string): string | undefined {
    if (!this.opts.has(key)) return undefined;
    const v = this.opts.get(key);
    if (v === undefined || v === '') throw this.bad(`option "${key}" needs a value`);
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    if (!this.opts.has(key)) return dflt;
    const v = this.opts.get(key);
    if (v === undefined) return true;
    const b = parseBool(v);
    if (b === undefined) throw this.bad(`option "${key}" takes true or false, not "${v}"`);
    return b;
  }

  int(key: string, radix: 8 | 10): number | undefined {
    const v = this.str(key);
    if (v === undefined) return undefined;
    const ok = radix === 8 ? /^[0-7]+$/.test(v) : /^\d+$/.test(v);
    if (!ok && v.includes('$')) throw this.bad(`option "${key}" uses a variable ("${v}"); variables in mode, uid and gid are not supported yet`);
    if (!ok) throw this.bad(`option "${key}" must be ${radix === 8 ? 'an octal number such as 0755' : 'a non-negative integer'}, not "${v}"`);
    return Number.parseInt(v, radix);
  }
}

/** A writable view of a mount variant, for building it up. */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Copies the optional string options `keys` (when given) onto `out`. */
function copyStrings(o: MountOptions, out: Record<string, unknown>, keys: readonly string[]): void {
  for (const k of keys) {
    const v = o.str(k);
    if (v !== undefined) out[k] = v;
  }
}

/** Copies mode/uid/gid (when given) onto `out`. */
function copyPerms(o: MountOptions, out: Record<string, unknown>): void {
  const mode = o.int('mode', 8);
  const uid = o.int('uid', 10);
  const gid = o.int('gid', 10);
  if (mode !== undefined) out.mode = mode;
  if (uid !== undefined) out.uid = uid;
  if (gid !== undefined) out.gid = gid;
}

/**
 * Parses the value of `RUN --mount=...` into a typed mount (values unexpanded). Fails with
 * DF_BAD_MOUNT on an unknown type or option, an option the type does not take, a bad value.
 */
export function parseMount(value: string, loc: SourceLocation): RunMount {
  const o = new MountOptions(value, loc);
  for (const field of splitCsv(value)) {
    const f = field.trim();
    if (f === '') continue;
    const eq = f.indexOf('=');
    const rawKey = (eq < 0 ? f : f.slice(0, eq)).trim().toLowerCase();
    const key = Object.hasOwn(ALIASES, rawKey) ? ALIASES[rawKey] : undefined;
    if (key === undefined) {
      const s = suggest(rawKey, Object.keys(ALIASES));
      throw o.bad(`unknown mount option "${rawKey}"`, s === undefined ? undefined : `did you mean ${s}?`);
    }
    o.opts.set(key, eq < 0 ? undefined : f.slice(eq + 1));
  }
  const typeText = o.opts.get('type') ?? 'bind';
  const type = TYPES.find((t) => t === typeText.toLowerCase());
  if (type === undefined) {
    const s = suggest(typeText, TYPES);
    throw o.bad(`unknown mount type "${typeText}"`, `use one of ${TYPES.join(', ')}${s === undefined ? '' : ` (did you mean ${s}?)`}`);
  }
  for (const key of o.opts.keys()) {
    if (key !== 'type' && !ALLOWED[type].includes(key)) throw o.bad(`option "${key}" does not apply to a ${type} mount`);
  }
  const target = o.str('target');
  if (target === undefined && (type === 'bind' || type === 'cache' || type === 'tmpfs')) {
    throw o.bad(`a ${type} mount needs a target`, 'add target=/path');
  }
  switch (type) {
    case 'bind': {
      const m: Mutable<Extract<RunMount, { type: 'bind' }>> = {
        type, target: target as string, readwrite: o.bool('readwrite', false) || !o.bool('readonly', true),
      };
      copyStrings(o, m, ['source', 'from']);
      return m;
    }
    case 'cache': {
      const sharing = o.str('sharing') ?? 'shared';
      if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') {
        throw o.bad(`sharing must be shared, private or locked, not "${sharing}"`);
      }
      const m: Mutable<Extract<RunMount, { type: 'cache' }>> = {
        type, target: target as string, readonly: o.bool('readonly', false) && !o.bool('readwrite', false), sharing,
      };
      copyStrings(o, m, ['id', 'source', 'from']);
      copyPerms(o, m);
      return m;
    }
    case 'tmpfs': {
      const sizeText = o.str('size');
      const size = sizeText === undefined ? undefined : parseRamBytes(sizeText);
      if (sizeText !== undefined && size === undefined) throw o.bad(`size "${sizeText}" is not a size such as 64m`);
      return size === undefined ? { type, target: target as string } : { type, target: target as string, size };
    }
    case 'secret':
    case 'ssh': {
      const id = o.str('id') ?? o.str('source');
      const env = type === 'secret' ? o.str('env') : undefined;
      if (type === 'secret' && id === undefined && target === undefined && env === undefined) {
        throw o.bad('a secret mount needs an id, a target or an env', 'add id=<secret id>');
      }
      const m: Record<string, unknown> = { type };
      if (id !== undefined) m.id = id;
      if (target !== undefined) m.target = target;
      if (env !== undefined) m.env = env;
      m.required = o.bool('required', false);
      copyPerms(o, m);
      return m as RunMount;
    }
  }
}
