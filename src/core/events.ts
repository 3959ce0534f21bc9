import type { SourceLocation } from './errors.js';

/** Progress of a build or transfer as a typed stream; renderers live in cli/progress. */
export type BuildEvent =
  | { readonly type: 'warning'; readonly message: string; readonly code?: string; readonly loc?: SourceLocation }
  | { readonly type: 'vertex.start'; readonly vertex: string; readonly name: string; readonly time: number }
  | { readonly type: 'vertex.cached'; readonly vertex: string; readonly name: string; readonly time: number }
  | { readonly type: 'vertex.miss'; readonly vertex: string; readonly reason: string }
  | { readonly type: 'vertex.log'; readonly vertex: string; readonly stream: 'stdout' | 'stderr'; readonly data: string }
  | { readonly type: 'vertex.done'; readonly vertex: string; readonly time: number; readonly error?: string }
  | { readonly type: 'transfer'; readonly id: string; readonly name: string; readonly current: number; readonly total?: number }
  | { readonly type: 'info'; readonly message: string };

/** Receives events; must not throw and must not block. */
export type EventSink = (event: BuildEvent) => void;

/** An {@link EventSink} that drops everything. */
export const discardEvents: EventSink = () => {};
