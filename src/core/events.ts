import type { SourceLocation } from './errors.js';

/**
 * One reason why a step missed the cache. `kind`: no-record (never built), record-gone (built with
 * the same inputs but the record was pruned), cache-disabled, file (`what` = context path,
 * `change` = added|removed|changed; `more` = further changed files not listed), arg and env
 * (`what` = name; `from`/`to` = values, absent when unset or hidden), command, instruction
 * (`what` = the field), network, content (downloads or file metadata), base-image (`from`/`to` =
 * digests or references), parent (`what` = the step, `change` = re-ran|changed), unknown.
 */
export interface MissChange {
  readonly kind: 'no-record' | 'record-gone' | 'cache-disabled' | 'file' | 'arg' | 'env' | 'command' | 'instruction' | 'network' | 'content' | 'base-image' | 'parent' | 'unknown';
  readonly what?: string;
  readonly change?: 'added' | 'removed' | 'changed' | 're-ran';
  readonly from?: string;
  readonly to?: string;
  readonly more?: number;
}

/** Progress of a build or transfer as a typed stream; renderers live in cli/progress. */
export type BuildEvent =
  | { readonly type: 'warning'; readonly message: string; readonly code?: string; readonly loc?: SourceLocation }
  | { readonly type: 'vertex.start'; readonly vertex: string; readonly name: string; readonly time: number }
  | { readonly type: 'vertex.cached'; readonly vertex: string; readonly name: string; readonly time: number }
  /** `reason` is the human text; `changes` (when known) the same facts, structured. */
  | { readonly type: 'vertex.miss'; readonly vertex: string; readonly reason: string; readonly changes?: readonly MissChange[] }
  | { readonly type: 'vertex.log'; readonly vertex: string; readonly stream: 'stdout' | 'stderr'; readonly data: string }
  | { readonly type: 'vertex.done'; readonly vertex: string; readonly time: number; readonly error?: string }
  | { readonly type: 'transfer'; readonly id: string; readonly name: string; readonly current: number; readonly total?: number }
  | { readonly type: 'info'; readonly message: string };

/** Receives events; must not throw and must not block. */
export type EventSink = (event: BuildEvent) => void;

/** An {@link EventSink} that drops everything. */
export const discardEvents: EventSink = () => {};
