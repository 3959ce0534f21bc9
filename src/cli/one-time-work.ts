/**
 * A process event a command emits when it does one-time work (a `run` that unpacks its image's layers): its start
 * then writes no code cache (code-cache.ts), since the functions of that work would be in it and every later start
 * would deserialize them too (`run`'s cache: 520 KB from a run that unpacked, 469 KB from one that did not). The
 * next start writes it. Its own module: the command bundles need it, not the code cache's loader.
 */
export const ONE_TIME_WORK_EVENT = 'tsbuild:one-time-work';

/** Emits {@link ONE_TIME_WORK_EVENT}. */
export function markOneTimeWork(): void {
  (process as NodeJS.EventEmitter).emit(ONE_TIME_WORK_EVENT);
}
