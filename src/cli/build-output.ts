import { formatReference, parseReference, TsbuildError } from '../core/index.js';

/** Where a build's result goes besides the store (`--output`, `--push`); pure data. */
export type BuildOutput =
  /** The image in the store under `names` (besides the -t names), pushed to each when `push`. */
  | { readonly type: 'image'; readonly names: readonly string[]; readonly push: boolean }
  /** An OCI layout tar (`oci`) or a `docker load` archive (`docker`) at `dest` (`-` = stdout). */
  | { readonly type: 'oci' | 'docker'; readonly dest: string; readonly names: readonly string[] }
  /** The final root file system as a tar at `dest` (`-` = stdout). */
  | { readonly type: 'tar'; readonly dest: string }
  /** The final root file system written into the directory `dest`. */
  | { readonly type: 'local'; readonly dest: string };

/** What {@link parseBuildOutputs} needs besides the `--output` values. */
export interface OutputFlags {
  /** `--push`. */
  readonly push: boolean;
  /** The `-t` names (full references). */
  readonly tags: readonly string[];
}

const KEYS: Readonly<Record<BuildOutput['type'], readonly string[]>> = {
  image: ['name', 'push'],
  oci: ['dest', 'name'],
  docker: ['dest', 'name'],
  tar: ['dest'],
  local: ['dest'],
};

function bad(message: string, hint?: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', message, { exitCode: 125, ...(hint === undefined ? {} : { hint }) });
}

/**
 * Splits one `--output` value into its `key=value` fields as buildx does (CSV: fields separated by
 * commas, a field in double quotes may contain commas, `""` is a quote). Throws CLI_BAD_VALUE.
 */
export function splitOutputFields(value: string): string[] {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  let fieldStart = true;
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (quoted) {
      if (c === '"' && value[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"' && (fieldStart || cur.includes('='))) {
      quoted = true;
    } else if (c === ',') {
      fields.push(cur);
      cur = '';
      fieldStart = true;
      continue;
    } else cur += c;
    fieldStart = false;
  }
  if (quoted) throw bad(`invalid --output "${value}": unterminated quote`);
  fields.push(cur);
  return fields;
}

function parseBool(key: string, v: string, spec: string): boolean {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw bad(`invalid --output "${spec}": ${key} takes true or false, not "${v}"`);
}

function parseNames(v: string, spec: string): string[] {
  return v.split(',').map((n) => n.trim()).filter((n) => n !== '').map((n) => {
    try {
      return formatReference(parseReference(n));
    } catch (err) {
      throw new TsbuildError('CLI_BAD_VALUE', `invalid --output "${spec}": bad image name "${n}": ${(err as Error).message}`, { exitCode: 125, cause: err });
    }
  });
}

/** Parses one `--output` value (`type=...,dest=...`, or the shorthands `DIR` = local and `-` = tar to stdout). */
export function parseBuildOutput(spec: string): BuildOutput {
  if (spec === '') throw bad('--output needs a value, e.g. type=local,dest=DIR');
  if (!spec.includes('=')) return spec === '-' ? { type: 'tar', dest: '-' } : { type: 'local', dest: spec };
  const attrs = new Map<string, string>();
  for (const field of splitOutputFields(spec)) {
    const eq = field.indexOf('=');
    if (eq <= 0) throw bad(`invalid --output "${spec}": expected KEY=VALUE, got "${field}"`);
    const key = field.slice(0, eq).trim().toLowerCase();
    if (attrs.has(key)) throw bad(`invalid --output "${spec}": ${key} given twice`);
    attrs.set(key, field.slice(eq + 1));
  }
  let type = attrs.get('type');
  if (type === undefined) throw bad(`invalid --output "${spec}": type is missing`, 'types: image, registry, oci, docker, tar, local');
  attrs.delete('type');
  if (type === 'registry') {
    // buildx's type=registry is an image output that is pushed.
    if (attrs.has('push')) throw bad(`invalid --output "${spec}": type=registry always pushes`);
    attrs.set('push', 'true');
    type = 'image';
  }
  if (!(type in KEYS)) throw bad(`invalid --output "${spec}": unknown type "${type}"`, 'types: image, registry, oci, docker, tar, local');
  const t = type as BuildOutput['type'];
  for (const key of attrs.keys()) {
    if (!(KEYS[t] as readonly string[]).includes(key)) throw bad(`invalid --output "${spec}": type=${t} does not take "${key}"`, `it takes: ${KEYS[t].join(', ')}`);
  }
  if (t === 'image') return { type: t, names: parseNames(attrs.get('name') ?? '', spec), push: parseBool('push', attrs.get('push') ?? 'false', spec) };
  const dest = attrs.get('dest');
  if (dest === undefined || dest === '') throw bad(`invalid --output "${spec}": type=${t} needs dest=${t === 'local' ? 'DIR' : 'FILE (or - for stdout)'}`);
  if (t === 'local') {
    if (dest === '-') throw bad(`invalid --output "${spec}": type=local writes a directory, not stdout`, 'use type=tar,dest=- for a tar on stdout');
    return { type: t, dest };
  }
  if (t === 'tar') return { type: t, dest };
  return { type: t, dest, names: parseNames(attrs.get('name') ?? '', spec) };
}

/**
 * Parses every `--output` and folds `--push` in (it makes the image output push; one is added
 * when none is given). Checks before the build: at most one output to stdout, and a name to push
 * to (`-t` or `name=`) for each pushed image. Throws CLI_BAD_VALUE / CLI_MISSING_ARGUMENT (exit 125).
 */
export function parseBuildOutputs(values: readonly string[], flags: OutputFlags): BuildOutput[] {
  const outputs = values.map(parseBuildOutput);
  if (flags.push) {
    const i = outputs.findIndex((o) => o.type === 'image');
    if (i === -1) outputs.push({ type: 'image', names: [], push: true });
    else outputs[i] = { ...(outputs[i] as Extract<BuildOutput, { type: 'image' }>), push: true };
  }
  const toStdout = outputs.filter((o) => o.type !== 'image' && o.type !== 'local' && o.dest === '-');
  if (toStdout.length > 1) throw bad('only one --output can write to stdout (dest=-)');
  for (const o of outputs) {
    if (o.type === 'image' && o.push && o.names.length === 0 && flags.tags.length === 0) {
      throw new TsbuildError('CLI_MISSING_ARGUMENT', `${flags.push ? '--push' : '--output type=image,push=true'} needs a name to push to`, {
        exitCode: 125, hint: 'name the image with -t REGISTRY/REPOSITORY:TAG (or name= in --output)',
      });
    }
  }
  return outputs;
}

/** True when an output writes to stdout (then `-q` cannot print the image ID there). */
export function writesToStdout(outputs: readonly BuildOutput[]): boolean {
  return outputs.some((o) => o.type !== 'image' && o.type !== 'local' && o.dest === '-');
}

/**
 * The names an output records or pushes: for `image`, its `name=` values and the -t names; for
 * archives, their `name=` values, else the -t names.
 */
export function namesOf(output: Extract<BuildOutput, { type: 'image' | 'oci' | 'docker' }>, tags: readonly string[]): readonly string[] {
  if (output.type === 'image') return [...new Set([...tags, ...output.names])];
  return output.names.length > 0 ? output.names : tags;
}
