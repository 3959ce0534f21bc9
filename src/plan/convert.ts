import { posix } from 'node:path';
import { TsbuildError, type HistoryEntry, type SourceLocation } from '../core/index.js';
import {
  expandWords,
  type CommandForm,
  type CopyInstruction,
  type Heredoc,
  type Instruction,
  type KeyValue,
  type RunInstruction,
  type RunMount,
  type VarLookup,
} from '../dockerfile/index.js';
import { expandText, proxyEnvOf, type ArgEnv, type ArgScope } from './args.js';
import type { ConfigEdit, CopyOp, ExecMount, ExecOp, GraphHeredoc, Op, SourceRef } from './graph.js';
import { DEFAULT_SHELL, envStrings, type ConfigState } from './image-config.js';

/** What converting one instruction needs from the stage being planned. */
export interface StageContext {
  readonly config: ConfigState;
  readonly args: ArgScope;
  readonly env: ArgEnv;
  /** ENV first, then the stage's ARGs. */
  readonly lookup: VarLookup;
  /** Resolves `--from`/`from=` (stage name, index or image) to a source, planning what it needs. */
  resolveSource(ref: string, loc: SourceLocation): SourceRef;
}

/** One planned step: its op, extra inputs beyond the previous step, and its history entry. */
export interface Step {
  readonly op: Op;
  readonly extraInputs: readonly string[];
  readonly history: HistoryEntry;
}

function expand(word: string, ctx: StageContext, loc: SourceLocation): string {
  return expandText(word, ctx.lookup, ctx.env, loc);
}

/** Resolves a path against the working directory, keeping a trailing `/` (and `.`) as "directory". */
export function resolveAgainst(workdir: string, path: string): string {
  const dirLike = path.endsWith('/') || path === '.' || path.endsWith('/.');
  const abs = posix.join('/', path.startsWith('/') ? '' : workdir, path);
  return dirLike && !abs.endsWith('/') ? `${abs}/` : abs;
}

function shellArgs(ctx: StageContext, form: CommandForm): string[] {
  return form.form === 'exec' ? [...form.args] : [...(ctx.config.shell ?? DEFAULT_SHELL), form.command];
}

function refInputs(ref: SourceRef | undefined): string[] {
  return ref === undefined || ref.kind === 'context' ? [] : [ref.vertex];
}

function planMount(m: RunMount, ctx: StageContext, loc: SourceLocation, sshIndex: number): ExecMount {
  const cwd = ctx.config.workdir === '' ? '/' : ctx.config.workdir;
  const x = (w: string | undefined): string | undefined => (w === undefined ? undefined : expand(w, ctx, loc));
  const target = (w: string | undefined): string | undefined => {
    const t = x(w);
    return t === undefined ? undefined : resolveAgainst(cwd, t).replace(/(.)\/$/, '$1');
  };
  switch (m.type) {
    case 'bind': {
      const from = x(m.from);
      return {
        type: 'bind',
        target: target(m.target) as string,
        source: x(m.source) ?? '/',
        from: from === undefined || from === '' ? { kind: 'context' } : ctx.resolveSource(from, loc),
        readwrite: m.readwrite,
      };
    }
    case 'cache': {
      const t = target(m.target) as string;
      const from = x(m.from);
      const source = x(m.source);
      return {
        type: 'cache',
        target: t,
        id: x(m.id) ?? t,
        ...(source === undefined ? {} : { source }),
        ...(from === undefined || from === '' ? {} : { from: ctx.resolveSource(from, loc) }),
        readonly: m.readonly,
        sharing: m.sharing,
        mode: m.mode ?? 0o755,
        uid: m.uid ?? 0,
        gid: m.gid ?? 0,
      };
    }
    case 'tmpfs':
      return { type: 'tmpfs', target: target(m.target) as string, ...(m.size === undefined ? {} : { size: m.size }) };
    case 'secret': {
      const t = target(m.target);
      const envName = x(m.env);
      const id = x(m.id) ?? (t === undefined ? undefined : posix.basename(t));
      if (id === undefined || id === '') {
        throw new TsbuildError('PLAN_BAD_MOUNT', 'a secret mount needs id= or target=', { loc });
      }
      const finalTarget = t ?? (envName === undefined ? `/run/secrets/${id}` : undefined);
      return {
        type: 'secret',
        id,
        ...(finalTarget === undefined ? {} : { target: finalTarget }),
        ...(envName === undefined ? {} : { env: envName }),
        required: m.required,
        mode: m.mode ?? 0o400,
        uid: m.uid ?? 0,
        gid: m.gid ?? 0,
      };
    }
    case 'ssh':
      return {
        type: 'ssh',
        id: x(m.id) ?? 'default',
        target: target(m.target) ?? `/run/buildkit/ssh_agent.${sshIndex}`,
        required: m.required,
        mode: m.mode ?? 0o600,
        uid: m.uid ?? 0,
        gid: m.gid ?? 0,
      };
  }
}

/** Heredoc bodies are expanded with quotes and backslashes kept literally (BuildKit's raw mode). */
function expandHeredocBody(h: Heredoc, ctx: StageContext, loc: SourceLocation): string {
  if (!h.expand) return h.content;
  const esc = ctx.env.escape;
  let protectedText = '';
  for (let i = 0; i < h.content.length; i++) {
    const c = h.content[i] as string;
    if (c === '"' || c === "'") protectedText += esc + c;
    else if (c === esc && h.content[i + 1] !== '$') protectedText += esc + esc;
    else protectedText += c;
  }
  return expand(protectedText, ctx, loc);
}

function runEnv(ctx: StageContext): { env: readonly string[]; buildArgs: string[] } {
  const env = envStrings(ctx.config);
  const buildArgs: string[] = [];
  for (const [name, value] of ctx.args) {
    if (value === undefined || ctx.config.env.has(name)) continue;
    buildArgs.push(`${name}=${value}`);
  }
  return { env: buildArgs.length === 0 ? env : [...env, ...buildArgs], buildArgs };
}

function planRun(ins: RunInstruction, ctx: StageContext): Step {
  let sshIndex = 0;
  const mounts = ins.mounts.map((m) => planMount(m, ctx, ins.loc, m.type === 'ssh' ? sshIndex++ : 0));
  let args = shellArgs(ctx, ins.command);
  let heredocs: GraphHeredoc[] = [];
  const only = ins.heredocs[0];
  if (ins.command.form === 'shell' && ins.heredocs.length === 1 && only !== undefined && /^<<-?(["']?)[^\s"']+\1$/.test(ins.command.command.trim())) {
    // `RUN <<EOF` alone: as BuildKit, the body becomes the executable file /dev/pipes/<name>,
    // run through the shell (a shebang picks the interpreter; without one the shell runs it).
    args = [...(ctx.config.shell ?? DEFAULT_SHELL), `/dev/pipes/${only.name}`];
    heredocs = [{ name: only.name, content: only.content, executable: true }];
  } else if (ins.command.form === 'shell' && ins.heredocs.length > 0) {
    // Heredocs inside a longer command: as BuildKit, the shell gets the whole script (command,
    // then each body and its delimiter) and handles the here-documents itself.
    const script = `${ins.command.command}\n${ins.heredocs.map((h) => `${h.content}${h.name}\n`).join('')}`;
    args = [...(ctx.config.shell ?? DEFAULT_SHELL), script];
  }
  const { env, buildArgs } = runEnv(ctx);
  const op: ExecOp = {
    type: 'exec',
    args,
    env,
    proxyEnv: proxyEnvOf(ctx.args, ctx.env),
    user: ctx.config.user,
    cwd: ctx.config.workdir === '' ? '/' : ctx.config.workdir,
    mounts,
    network: ins.network ?? 'default',
    security: ins.security ?? 'sandbox',
    heredocs,
  };
  const prefix = buildArgs.length === 0 ? '' : `|${buildArgs.length} ${buildArgs.join(' ')} `;
  const extraInputs = [...new Set(mounts.flatMap((m) => ('from' in m ? refInputs(m.from) : [])))];
  return { op, extraInputs, history: { created_by: `RUN ${prefix}${args.join(' ')}`, empty_layer: false } };
}

function planCopy(ins: CopyInstruction, ctx: StageContext): Step {
  const x = (w: string): string => expand(w, ctx, ins.loc);
  const heredocNames = new Set(ins.heredocs.map((h) => h.name));
  const sources = ins.sources.map((s) => (heredocNames.has(s) ? s : x(s)));
  const rawDest = x(ins.dest);
  if (rawDest === '') throw new TsbuildError('PLAN_BAD_COPY', `${ins.kind} needs a non-empty destination`, { loc: ins.loc });
  if (sources.length > 1 && !rawDest.endsWith('/')) {
    throw new TsbuildError('PLAN_COPY_DEST_NOT_DIR', `when using ${ins.kind} with more than one source, the destination must be a directory and end with a /`, {
      loc: ins.loc,
    });
  }
  const fromWord = ins.from === undefined ? undefined : x(ins.from);
  const from: SourceRef = fromWord === undefined || fromWord === '' ? { kind: 'context' } : ctx.resolveSource(fromWord, ins.loc);
  const chown = ins.chown === undefined ? undefined : x(ins.chown);
  const chmod = ins.chmod === undefined ? undefined : x(ins.chmod);
  if (chmod !== undefined && !/^[0-7]{3,4}$/.test(chmod) && !/^([ugoa]*[-+=][rwxXst]*)(,[ugoa]*[-+=][rwxXst]*)*$/.test(chmod)) {
    throw new TsbuildError('PLAN_BAD_CHMOD', `invalid --chmod "${chmod}": expected an octal mode like 0755 or a symbolic one like u+x`, { loc: ins.loc });
  }
  const checksum = ins.checksum === undefined ? undefined : x(ins.checksum);
  const op: CopyOp = {
    type: 'copy',
    instruction: ins.kind,
    from,
    sources,
    dest: resolveAgainst(ctx.config.workdir === '' ? '/' : ctx.config.workdir, rawDest),
    ...(chown === undefined ? {} : { chown }),
    ...(chmod === undefined ? {} : { chmod }),
    link: ins.link,
    parents: ins.parents,
    exclude: ins.exclude.map(x),
    ...(checksum === undefined ? {} : { checksum }),
    keepGitDir: ins.keepGitDir,
    heredocs: ins.heredocs.map((h) => ({ name: h.name, content: expandHeredocBody(h, ctx, ins.loc) })),
  };
  const flags = [fromWord === undefined ? '' : `--from=${fromWord} `, chown === undefined ? '' : `--chown=${chown} `, chmod === undefined ? '' : `--chmod=${chmod} `].join('');
  return { op, extraInputs: refInputs(from), history: { created_by: `${ins.kind} ${flags}${sources.join(' ')} ${rawDest}`, empty_layer: false } };
}

function expandPairs(pairs: readonly KeyValue[], ctx: StageContext, loc: SourceLocation, what: string): [string, string][] {
  return pairs.map((p) => {
    const key = expand(p.key, ctx, loc);
    if (key === '') throw new TsbuildError('PLAN_EMPTY_KEY', `${what} key is empty after expansion`, { loc });
    return [key, expand(p.value, ctx, loc)];
  });
}

const PORT_RE = /^([0-9]+)(?:-([0-9]+))?(?:\/([A-Za-z]+))?$/;

/** Normalises EXPOSE words (`80`, `53/udp`, `8000-8002`) to `port/proto` entries, ranges expanded. */
export function parsePorts(words: readonly string[], loc: SourceLocation): string[] {
  const out: string[] = [];
  for (const w of words) {
    const m = PORT_RE.exec(w);
    const proto = (m?.[3] ?? 'tcp').toLowerCase();
    const start = Number(m?.[1]);
    const end = m?.[2] === undefined ? start : Number(m[2]);
    if (m === null || !['tcp', 'udp', 'sctp'].includes(proto) || start > 65535 || end > 65535 || end < start) {
      throw new TsbuildError('PLAN_BAD_PORT', `invalid port "${w}" in EXPOSE: expected PORT[-PORT][/tcp|udp|sctp]`, { loc });
    }
    for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  }
  return out;
}

function meta(edit: ConfigEdit, createdBy: string): Step {
  const emptyLayer = !(edit.kind === 'workdir' && edit.mkdir);
  return { op: { type: 'meta', edit }, extraInputs: [], history: { created_by: createdBy, empty_layer: emptyLayer } };
}

/** Converts one non-FROM, non-ARG instruction into a step. */
export function convertInstruction(ins: Exclude<Instruction, { kind: 'FROM' | 'ARG' }>, ctx: StageContext): Step {
  const loc = ins.loc;
  switch (ins.kind) {
    case 'RUN':
      return planRun(ins, ctx);
    case 'COPY':
    case 'ADD':
      return planCopy(ins, ctx);
    case 'ENV': {
      const pairs = expandPairs(ins.pairs, ctx, loc, 'ENV');
      return meta({ kind: 'env', pairs }, `ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`);
    }
    case 'LABEL': {
      const pairs = expandPairs(ins.pairs, ctx, loc, 'LABEL');
      return meta({ kind: 'label', pairs }, `LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`);
    }
    case 'CMD': {
      const cmd = shellArgs(ctx, ins.command);
      return meta({ kind: 'cmd', cmd }, `CMD ${JSON.stringify(cmd)}`);
    }
    case 'ENTRYPOINT': {
      const entrypoint = shellArgs(ctx, ins.command);
      return meta({ kind: 'entrypoint', entrypoint }, `ENTRYPOINT ${JSON.stringify(entrypoint)}`);
    }
    case 'EXPOSE': {
      const words = ins.ports.flatMap((p) => expandWords(p, ctx.lookup, { escape: ctx.env.escape, loc }).values);
      const ports = parsePorts(words, loc);
      return meta({ kind: 'expose', ports }, `EXPOSE ${ports.join(' ')}`);
    }
    case 'VOLUME': {
      const paths = ins.paths.map((p) => expand(p, ctx, loc));
      if (paths.some((p) => p.trim() === '')) throw new TsbuildError('PLAN_BAD_VOLUME', 'VOLUME path is empty after expansion', { loc });
      return meta({ kind: 'volume', paths }, `VOLUME ${JSON.stringify(paths)}`);
    }
    case 'USER': {
      const user = expand(ins.user, ctx, loc);
      return meta({ kind: 'user', user }, `USER ${user}`);
    }
    case 'WORKDIR': {
      const raw = expand(ins.path, ctx, loc);
      if (raw === '') throw new TsbuildError('PLAN_BAD_WORKDIR', 'WORKDIR path is empty after expansion', { loc });
      const path = posix.join('/', raw.startsWith('/') ? '' : ctx.config.workdir, raw).replace(/(.)\/$/, '$1');
      return meta({ kind: 'workdir', path, mkdir: path !== '/', user: ctx.config.user }, `WORKDIR ${path}`);
    }
    case 'STOPSIGNAL': {
      const signal = expand(ins.signal, ctx, loc);
      if (!/^[A-Za-z0-9+-]+$/.test(signal)) throw new TsbuildError('PLAN_BAD_SIGNAL', `invalid STOPSIGNAL "${signal}"`, { loc });
      return meta({ kind: 'stopsignal', signal }, `STOPSIGNAL ${signal}`);
    }
    case 'HEALTHCHECK': {
      if (ins.check.type === 'none') return meta({ kind: 'healthcheck', test: ['NONE'] }, 'HEALTHCHECK NONE');
      const c = ins.check.command;
      const test = c.form === 'exec' ? ['CMD', ...c.args] : ['CMD-SHELL', c.command];
      return meta({ kind: 'healthcheck', test, ...ins.check.options }, `HEALTHCHECK ${JSON.stringify(test)}`);
    }
    case 'SHELL':
      return meta({ kind: 'shell', shell: ins.shell }, `SHELL ${JSON.stringify(ins.shell)}`);
    case 'ONBUILD':
      return meta({ kind: 'onbuild', trigger: ins.triggerSource }, `ONBUILD ${ins.triggerSource}`);
    case 'MAINTAINER':
      return meta({ kind: 'maintainer', author: ins.name }, `MAINTAINER ${ins.name}`);
  }
}

/** One-line display text of an instruction (continuations joined, comments and heredoc bodies left out). */
export function displayText(ins: Instruction, escape: string): string {
  let text = ins.source;
  if (text.includes('\n')) {
    const [first = '', ...rest] = text.split('\n');
    const lines = 'heredocs' in ins && ins.heredocs.length > 0 ? [first] : [first, ...rest.filter((l) => !/^\s*(#|$)/.test(l))];
    text = lines.join('\n').split(`${escape}\n`).join(' ');
  }
  if (/\s\s|[^\S ]/.test(text)) text = text.replace(/\s+/g, ' ');
  text = text.trim();
  const space = text.indexOf(' ');
  return space < 0 ? text.toUpperCase() : `${text.slice(0, space).toUpperCase()}${text.slice(space)}`;
}
