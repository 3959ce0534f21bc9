import { join } from 'node:path';

/**
 * path.join, exactly, without its normalization pass when nothing needs it: segments that are plain names
 * below a clean first one (no "//", no "." or ".." component, no trailing "/", nothing empty) are joined
 * with "/" as they are; anything else goes to path.join. A `run` joins ~250 paths, and path.join's
 * normalizeString got hot enough that V8 optimized it on a background thread (TurboFan, ~6 ms of CPU on
 * the second core, where the sandbox's processes start) in every short-lived command. The CLI bundle
 * gives every module this join for node:path's (scripts/bundle.mjs, src/core/node-path.ts).
 */
export function fastJoin(...segments: string[]): string {
  const first = segments[0];
  if (first === undefined || !plain(first) || first.endsWith('/')) return join(...segments);
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string;
    if (!plain(s) || s.startsWith('/') || s.endsWith('/')) return join(...segments);
  }
  return segments.join('/');
}

/** A non-empty string with no empty, "." or ".." component inside (a leading "/" is fine, a leading "." is not). */
function plain(s: unknown): boolean {
  return typeof s === 'string' && s !== '' && !s.startsWith('.') && !s.includes('//') && !s.includes('/.');
}
