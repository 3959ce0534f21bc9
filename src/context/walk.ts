/**
 * The context walker: resolves COPY/ADD source patterns inside the build context and returns the
 * selected entries (after `.dockerignore`) in a deterministic order with their lstat info.
 * SECURITY: nothing outside the context is ever listed, read or followed.
 */
import { lstatSync, readdirSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { TsbuildError, type SourceLocation } from '../core/index.js';
import type { IgnoreMatcher, ParentMatchInfo } from './dockerignore.js';
import { cleanGoPath, hasGoWildcards, matchGoPattern } from './go-path.js';

/** Kind of a context entry (`other`: fifo, socket or device node). */
export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

/**
 * The lstat fields kept for an entry (a subset of Node's Stats, same names and types). Plain
 * numbers, not Stats: for 20,000 entries the bigint fields (and the Dates Node makes with
 * them) cost more CPU in allocation and GC than the lstat calls. Times are milliseconds as Node
 * gives them (seconds * 1000 + ns / 1e6 in a double: exact to well under a microsecond), which is
 * enough for the stat cache: every content change moves the ctime (the kernel's clock, not
 * settable by users) far beyond that, and files changed within 50 ms of being read are not cached.
 */
export interface EntryStat {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly ino: number;
  readonly dev: number;
  readonly rdev: number;
}

/** Keeps only the fields we need: 20,000 retained full Stats objects cost a lot of GC time. */
function compactStat(st: Stats): EntryStat {
  return { mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, dev: st.dev, rdev: st.rdev };
}

/** One selected file system entry. */
export interface ContextEntry {
  /** Path relative to its match root, `/`-separated; `''` for the root itself. */
  readonly rel: string;
  /** Absolute path on disk to read it from (inside the real context directory). */
  readonly absPath: string;
  readonly type: EntryType;
  /** lstat of `absPath` (nanosecond times); mtimes are informational, never part of a digest. */
  readonly stat: EntryStat;
  /** The link text of a symlink (copied as is, never followed). */
  readonly linkTarget?: string;
}

/** One path a source pattern resolved to, with everything below it. */
export interface SourceMatch {
  /** The matched path relative to the context (`.` for the context itself), as named by the source. */
  readonly source: string;
  /** The root entry first (`rel === ''`), then descendants in sorted pre-order. */
  readonly entries: readonly ContextEntry[];
}

/** What one COPY/ADD source pattern selected. */
export interface SourceSelection {
  readonly pattern: string;
  /** The pattern had wildcards (Docker then copies each match by its base name). */
  readonly wildcard: boolean;
  /** Matches sorted by `source`. */
  readonly matches: readonly SourceMatch[];
}

/** The result of {@link selectSources}. */
export interface ContextSelection {
  /** The real path of the context directory. */
  readonly contextDir: string;
  readonly sources: readonly SourceSelection[];
}

/** Options of {@link selectSources}. */
export interface SelectOptions {
  /** Compiled `.dockerignore` rules (see loadIgnore); none when undefined. */
  readonly ignore?: IgnoreMatcher | undefined;
  /** The instruction's location, attached to CTX_ errors. */
  readonly loc?: SourceLocation | undefined;
}

const MAX_LINKS = 40;

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const S_IFMT = 0o170000;

function typeOf(st: Stats): EntryType {
  switch (st.mode & S_IFMT) {
    case 0o100000:
      return 'file';
    case 0o040000:
      return 'dir';
    case 0o120000:
      return 'symlink';
    default:
      return 'other';
  }
}

function joinRel(dir: string, name: string): string {
  return dir === '.' || dir === '' ? name : `${dir}/${name}`;
}

function absOf(ctx: string, rel: string): string {
  return rel === '.' ? ctx : `${ctx}/${rel}`;
}

function readError(path: string, cause: unknown): TsbuildError {
  const code = (cause as NodeJS.ErrnoException).code ?? 'error';
  return new TsbuildError('CTX_READ', `cannot read build context entry ${path}: ${code}`, { cause });
}

function tryLstat(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') return undefined;
    throw readError(path, e);
  }
}

/** Resolves a context-relative path, following symlinks only inside the context. */
class Resolver {
  constructor(
    private readonly ctx: string,
    private readonly pattern: string,
    private readonly loc: SourceLocation | undefined,
  ) {}

  outside(detail: string): TsbuildError {
    return new TsbuildError('CTX_OUTSIDE', `COPY/ADD source "${this.pattern}" ${detail}`, {
      ...(this.loc === undefined ? {} : { loc: this.loc }),
      hint: 'sources must stay inside the build context; symlinks pointing out of it are refused',
    });
  }

  /**
   * Returns the real context-relative path of `rel` (`.` for the root) and its lstat, following
   * symlinks in every component (also the last when `followLast`), or undefined when missing.
   * SECURITY: a link whose target leaves the context throws CTX_OUTSIDE.
   */
  resolve(rel: string, followLast: boolean): { real: string; stat: Stats } | undefined {
    const todo = rel === '.' ? [] : rel.split('/');
    const done: string[] = [];
    let links = 0;
    let stat = tryLstat(this.ctx);
    if (stat === undefined) return undefined;
    while (todo.length > 0) {
      const part = todo.shift() as string;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (done.length === 0) throw this.outside('leads outside the build context');
        done.pop();
        stat = tryLstat(absOf(this.ctx, done.join('/') || '.'));
        if (stat === undefined) return undefined;
        continue;
      }
      const cur = [...done, part].join('/');
      const st = tryLstat(absOf(this.ctx, cur));
      if (st === undefined) return undefined;
      if (st.isSymbolicLink() && (todo.length > 0 || followLast)) {
        if (++links > MAX_LINKS) throw new TsbuildError('CTX_READ', `too many levels of symbolic links resolving "${this.pattern}"`);
        let target: string;
        try {
          target = readlinkSync(absOf(this.ctx, cur));
        } catch (e) {
          throw readError(cur, e);
        }
        if (target.startsWith('/')) {
          // SECURITY: an absolute target is inside only when it names a path under the real context.
          const clean = cleanGoPath(target);
          if (clean !== this.ctx && !clean.startsWith(`${this.ctx}/`)) throw this.outside(`is a symlink to "${target}" outside the build context`);
          done.length = 0;
          todo.unshift(...(clean === this.ctx ? [] : clean.slice(this.ctx.length + 1).split('/')));
        } else {
          const lexical = cleanGoPath([...done, target].join('/'));
          if (lexical === '..' || lexical.startsWith('../')) throw this.outside(`is a symlink to "${target}" outside the build context`);
          todo.unshift(...target.split('/'));
        }
        stat = tryLstat(absOf(this.ctx, done.join('/') || '.'));
        if (stat === undefined) return undefined;
        continue;
      }
      if (todo.length > 0 && !st.isDirectory()) return undefined;
      done.push(part);
      stat = st;
    }
    return { real: done.length === 0 ? '.' : done.join('/'), stat };
  }
}

/** A directory entry seen by the walker. */
interface Child {
  readonly name: string;
  readonly real: string;
  /** absOf(ctx, real), made once. */
  readonly abs: string;
  readonly stat: Stats;
  readonly type: EntryType;
  readonly excluded: boolean;
  readonly info: ParentMatchInfo;
}

const NOT_EXCLUDED = { excluded: false, info: undefined } as const;

/** Walks context directories applying the ignore rules; shared by all sources of one call. */
class Walker {
  constructor(
    readonly ctx: string,
    readonly ignore: IgnoreMatcher | undefined,
  ) {}

  /** Ignore state of a real context-relative path (the context root is never excluded). */
  check(real: string, parent?: ParentMatchInfo): { excluded: boolean; info: ParentMatchInfo } {
    if (this.ignore === undefined || this.ignore.rules.length === 0 || real === '.') return NOT_EXCLUDED;
    return this.ignore.matches(real, parent);
  }

  /** Sorted, non-excluded children of the real directory `real`, with their ignore state. */
  children(real: string, info: ParentMatchInfo, excluded = false): Child[] {
    let names: string[];
    try {
      names = readdirSync(absOf(this.ctx, real));
    } catch (e) {
      // As BuildKit: an excluded directory walked only for possible exceptions may be unreadable.
      const code = (e as NodeJS.ErrnoException).code;
      if (excluded && (code === 'EACCES' || code === 'EPERM')) return [];
      throw readError(real, e);
    }
    names.sort(compareNames);
    const out: Child[] = [];
    for (const name of names) {
      const childReal = joinRel(real, name);
      const m = this.check(childReal, info);
      if (m.excluded && this.ignore !== undefined && !this.ignore.mustDescend(childReal)) continue;
      const abs = absOf(this.ctx, childReal);
      const stat = tryLstat(abs);
      if (stat === undefined) continue; // removed while walking
      const type = typeOf(stat);
      if (m.excluded && type !== 'dir') continue;
      out.push({ name, real: childReal, abs, stat, type, excluded: m.excluded, info: m.info });
    }
    return out;
  }

  /** Appends the included entries below the real directory `real` to `out` (pre-order). */
  descend(real: string, rel: string, info: ParentMatchInfo, out: ContextEntry[], excluded = false): void {
    for (const c of this.children(real, info, excluded)) {
      const childRel = rel === '' ? c.name : `${rel}/${c.name}`;
      const entry = this.entry(c.real, childRel, c.stat, c.type, c.abs);
      if (c.type === 'dir') {
        const mark = out.length;
        if (!c.excluded) out.push(entry);
        this.descend(c.real, childRel, c.info, out, c.excluded);
        // An excluded directory exists only as the parent of re-included entries.
        if (c.excluded && out.length > mark) out.splice(mark, 0, entry);
      } else {
        out.push(entry);
      }
    }
  }

  entry(real: string, rel: string, stat: Stats, type: EntryType = typeOf(stat), absPath = absOf(this.ctx, real)): ContextEntry {
    if (type !== 'symlink') return { rel, absPath, type, stat: compactStat(stat) };
    try {
      return { rel, absPath, type, stat: compactStat(stat), linkTarget: readlinkSync(absPath) };
    } catch (e) {
      throw readError(real, e);
    }
  }

  /** The entries of one match root (followed when a symlink); undefined when fully excluded. */
  collect(real: string, stat: Stats): ContextEntry[] | undefined {
    const m = this.check(real);
    const root = this.entry(real, '', stat);
    if (!stat.isDirectory()) return m.excluded ? undefined : [root];
    if (m.excluded && !(this.ignore?.mustDescend(real) ?? false)) return undefined;
    const out: ContextEntry[] = [root];
    this.descend(real, '', m.info, out, m.excluded);
    return m.excluded && out.length === 1 ? undefined : out;
  }
}

/** Splits a cleaned relative source into the part before the first wildcard component and the rest. */
function splitWildcards(rel: string): [string, string] {
  const parts = rel === '.' ? [] : rel.split('/');
  const i = parts.findIndex(hasGoWildcards);
  if (i === -1) return [rel, ''];
  return [parts.slice(0, i).join('/') || '.', parts.slice(i).join('/')];
}

/** How deep (in `/`) a path matched by Go pattern `p` can be: classes may match `/` in Go. */
function maxDepth(p: string): number {
  let n = 0;
  for (const ch of p) if (ch === '/' || ch === '[') n++;
  return n;
}

/**
 * Resolves COPY/ADD source patterns (Docker's rules: relative to the context, a leading `/` means
 * the context root, wildcards are Go filepath.Match per path, `**` is not special) to the selected
 * entries. Throws CTX_OUTSIDE for a path or symlink leading out of the context, CTX_NOT_FOUND
 * (naming the pattern) for a source that matches nothing, CTX_BAD_PATTERN for a malformed pattern.
 * Excluded entries are never read.
 */
export function selectSources(contextDir: string, patterns: readonly string[], options: SelectOptions = {}): ContextSelection {
  let ctx: string;
  try {
    ctx = realpathSync(contextDir);
  } catch (e) {
    throw new TsbuildError('CTX_NOT_FOUND', `build context ${contextDir} cannot be opened`, { cause: e });
  }
  const walker = new Walker(ctx, options.ignore);
  const locOpt = options.loc === undefined ? {} : { loc: options.loc };
  const sources: SourceSelection[] = [];
  for (const pattern of patterns) {
    const resolver = new Resolver(ctx, pattern, options.loc);
    const rel = cleanGoPath(pattern.replace(/^\/+/, ''));
    if (rel === '..' || rel.startsWith('../')) throw resolver.outside('leads outside the build context');
    const [fixed, wild] = splitWildcards(rel);
    const matches: SourceMatch[] = [];
    if (wild === '') {
      const r = resolver.resolve(fixed, true);
      const entries = r === undefined ? undefined : walker.collect(r.real, r.stat);
      if (entries !== undefined) matches.push({ source: fixed, entries });
    } else {
      if (matchGoPattern(wild, '').bad) {
        throw new TsbuildError('CTX_BAD_PATTERN', `COPY/ADD source "${pattern}" is not a valid wildcard pattern`, locOpt);
      }
      const base = resolver.resolve(fixed, true);
      if (base !== undefined && base.stat.isDirectory()) {
        collectWildcard(walker, resolver, base.real, fixed, wild, matches);
      }
    }
    if (matches.length === 0) {
      const hasRules = options.ignore !== undefined && options.ignore.rules.length > 0;
      throw new TsbuildError('CTX_NOT_FOUND', `COPY/ADD source "${pattern}" not found in the build context`, {
        ...locOpt,
        ...(hasRules ? { hint: 'check that .dockerignore does not exclude it' } : {}),
      });
    }
    matches.sort((a, b) => compareNames(a.source, b.source));
    sources.push({ pattern, wildcard: wild !== '', matches });
  }
  return { contextDir: ctx, sources };
}

/** Walks below `baseReal` and records every path matching `wild` (relative to the base). */
function collectWildcard(walker: Walker, resolver: Resolver, baseReal: string, baseNamed: string, wild: string, out: SourceMatch[]): void {
  const limit = maxDepth(wild);
  const visit = (real: string, relFromBase: string, depth: number, info: ParentMatchInfo, excluded = false): void => {
    for (const c of walker.children(real, info, excluded)) {
      const rel = relFromBase === '' ? c.name : `${relFromBase}/${c.name}`;
      if (matchGoPattern(wild, rel).matched) {
        const named = joinRel(baseNamed, rel);
        let target = { real: c.real, stat: c.stat };
        if (c.type === 'symlink') {
          const r = resolver.resolve(c.real, true);
          if (r === undefined) continue;
          target = r;
        }
        const entries = walker.collect(target.real, target.stat);
        if (entries !== undefined) out.push({ source: named, entries });
        continue;
      }
      if (c.type === 'dir' && depth < limit) visit(c.real, rel, depth + 1, c.info, c.excluded);
    }
  };
  visit(baseReal, '', 0, walker.check(baseReal).info);
}
