/**
 * The build context: `.dockerignore` rules, the COPY/ADD source walker and content checksums
 * with a persistent stat cache. Typical use by the solver:
 *
 *   const ignore = loadIgnore(contextDir, dockerfilePath);            // once per build
 *   const cache = StatCache.load(join(store.root, 'cache', statCacheName(contextDir)));
 *   const sel = selectSources(contextDir, ['src/', '*.json'], { ignore: ignore.matcher, loc });
 *   const sums = await checksumSources(sel, { statCache: cache });   // sums.digest -> cache key
 *   cache.save();                                                    // after the build
 */
export { parseDockerignore, compileIgnore, type IgnoreMatcher, type IgnoreRule, type ParentMatchInfo } from './dockerignore.js';
export { loadIgnore, type LoadedIgnore } from './ignore-file.js';
export { cleanGoPath, matchGoPattern, hasGoWildcards, type GoMatchResult } from './go-path.js';
export {
  selectSources,
  type ContextEntry,
  type ContextSelection,
  type EntryStat,
  type EntryType,
  type SelectOptions,
  type SourceMatch,
  type SourceSelection,
} from './walk.js';
export {
  checksumSources,
  type ChecksumOptions,
  type EntryDigest,
  type FileReader,
  type MatchChecksum,
  type SelectionChecksum,
} from './checksum.js';
export { StatCache, statCacheName, type FileFingerprint } from './stat-cache.js';
