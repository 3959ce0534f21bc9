import { posix } from 'node:path';
import { cleanGoPath, compileIgnore, type ContextSelection, type IgnoreMatcher } from '../../context/index.js';

/** The shape of an entry list the filters work on (context entries and copy entries alike). */
interface RelEntry {
  readonly rel: string;
  readonly type: string;
}

/** Compiles `--exclude` patterns (`.dockerignore` syntax, `!` re-includes) or undefined when none. */
export function compileExcludes(patterns: readonly string[]): IgnoreMatcher | undefined {
  return patterns.length === 0 ? undefined : compileIgnore(patterns, '--exclude');
}

/**
 * The entries of one source left after `--exclude` (BuildKit semantics): entries below the source
 * root are matched by their path relative to it; the root itself by the source's path as named
 * (so `COPY --exclude=*.txt hom* /d/` skips a matched `home.txt`). An excluded directory is kept
 * only as the parent of re-included (`!`) entries. Returns [] when the whole source is excluded.
 */
export function excludeEntries<E extends RelEntry>(matcher: IgnoreMatcher, sourceName: string, entries: readonly E[]): E[] {
  const rootName = cleanGoPath(sourceName.replace(/^\/+/, ''));
  if (rootName !== '.' && rootName !== '' && matcher.matches(rootName).excluded) return [];
  const kept = new Set<string>();
  const byRel = new Map<string, E>();
  for (const e of entries) {
    byRel.set(e.rel, e);
    if (e.rel === '' || !matcher.matches(e.rel).excluded) kept.add(e.rel);
  }
  if (matcher.hasNegations) {
    // Re-included entries below an excluded directory bring their parent directories back.
    for (const rel of [...kept]) {
      for (let dir = posix.dirname(rel); dir !== '.' && !kept.has(dir); dir = posix.dirname(dir)) {
        if (byRel.has(dir)) kept.add(dir);
      }
    }
  } else {
    // Without `!` rules, nothing below an excluded directory can stay.
    for (const rel of [...kept]) {
      for (let dir = posix.dirname(rel); dir !== '.'; dir = posix.dirname(dir)) {
        if (!kept.has(dir) && byRel.has(dir)) {
          kept.delete(rel);
          break;
        }
      }
    }
  }
  return entries.filter((e) => kept.has(e.rel));
}

/** A context selection without the entries `--exclude` removes (matches left empty are dropped). */
export function excludeFromSelection(sel: ContextSelection, patterns: readonly string[]): ContextSelection {
  const matcher = compileExcludes(patterns);
  if (matcher === undefined) return sel;
  return {
    contextDir: sel.contextDir,
    sources: sel.sources.map((s) => ({
      ...s,
      matches: s.matches.flatMap((m) => {
        const entries = excludeEntries(matcher, m.source, m.entries);
        return entries.length === 0 ? [] : [{ source: m.source, entries }];
      }),
    })),
  };
}

/**
 * The directory a `--parents` source keeps below the destination: the pattern's part before a
 * `/./` pivot is dropped (`COPY --parents ./x/./y/*.txt /d/` -> `/d/y/...`), everything else kept.
 * Returns the context/stage-relative prefix to drop ('' without a pivot).
 */
export function parentsPivot(pattern: string): string {
  const i = pattern.indexOf('/./');
  if (i < 0) return '';
  const prefix = cleanGoPath(pattern.slice(0, i).replace(/^\/+/, ''));
  return prefix === '.' ? '' : prefix;
}

/**
 * The destination-relative path of a `--parents` source named `name` (cleaned, relative to its
 * source root), without the `pivot` prefix; '' for the root itself.
 */
export function parentsPath(name: string, pivot: string): string {
  let rel = cleanGoPath(name.replace(/^\/+/, ''));
  if (rel === '.') rel = '';
  if (pivot !== '' && (rel === pivot || rel.startsWith(`${pivot}/`))) rel = rel.slice(pivot.length + 1);
  return rel;
}
