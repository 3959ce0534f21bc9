/**
 * The pure parts of the step ops the solver needs before (or without) running any step: support
 * checks, which context paths a COPY or RUN bind reads, which vertices a later step reads. Kept
 * apart from copy.ts, exec.ts, copy-layer.ts and mount-bind.ts so that a fully cached build loads
 * none of the step machinery (sandbox, snapshots, layer packing) those import.
 */
import { notSupportedYet, TsbuildError, type SourceLocation } from '../../core/index.js';
import type { CopyOp, ExecOp, Vertex } from '../../plan/index.js';
import { remoteKindOf } from './add-remote-kind.js';
import { parseChmod } from './copy-chmod.js';
import { compileExcludes } from './copy-select.js';

/** `e` with the instruction's location attached (same code, message and hint). */
export function withLoc(e: TsbuildError, loc: SourceLocation | undefined): TsbuildError {
  return loc === undefined ? e : new TsbuildError(e.code, e.message, { loc, ...(e.hint === undefined ? {} : { hint: e.hint }) });
}

/** Rejects `RUN --security=insecure` unless the build grants `security.insecure` (SOLVE_ENTITLEMENT, as BuildKit). */
export function checkExecSupported(op: ExecOp, vertex: Vertex, entitlements: readonly string[] = []): void {
  if (op.security === 'insecure' && !entitlements.includes('security.insecure')) {
    throw new TsbuildError('SOLVE_ENTITLEMENT', 'RUN --security=insecure needs the security.insecure entitlement, which this build does not grant', {
      ...(vertex.loc === undefined ? {} : { loc: vertex.loc }),
      hint: 'build with --allow security.insecure (the step then runs privileged: every capability, the host\'s devices)',
    });
  }
}

/** Rejects what no COPY/ADD can do, before any step runs (SOLVE_BAD_COPY, CLI_NOT_SUPPORTED). */
export function checkCopySupported(op: CopyOp, vertex: Vertex): void {
  const bad = (message: string, hint?: string): never => {
    throw new TsbuildError('SOLVE_BAD_COPY', message, { ...(vertex.loc === undefined ? {} : { loc: vertex.loc }), ...(hint === undefined ? {} : { hint }) });
  };
  const remote = op.instruction === 'ADD' ? op.sources.filter((s) => remoteKindOf(s) !== undefined) : [];
  if (op.instruction === 'ADD' && op.from.kind !== 'context') bad('ADD does not take --from', 'use COPY --from');
  if (remote.length > 0 && op.heredocs.some((h) => remote.includes(h.name))) bad('a here-document cannot be named like a URL');
  if (op.checksum !== undefined) {
    if (!/^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$/.test(op.checksum)) {
      bad(`invalid --checksum "${op.checksum}"`, 'write it as sha256:<64 hex digits>');
    }
    if (op.sources.length !== 1 || remoteKindOf(op.sources[0] as string) !== 'http') bad('ADD --checksum needs exactly one http(s) source');
  }
  if (op.keepGitDir && !remote.some((s) => remoteKindOf(s) === 'git')) bad('ADD --keep-git-dir needs a git source');
  try {
    if (op.chmod !== undefined) parseChmod(op.chmod);
    compileExcludes(op.exclude);
  } catch (e) {
    throw e instanceof TsbuildError ? withLoc(e, vertex.loc) : e;
  }
  if (op.heredocs.length > 0 && op.from.kind !== 'context') {
    throw withLoc(notSupportedYet('here-documents with COPY --from'), vertex.loc);
  }
}

/** The context patterns of a COPY (its sources without the here-document names). */
export function contextPatterns(op: CopyOp): string[] {
  const names = new Set(op.heredocs.map((h) => h.name));
  return op.sources.filter((s) => !names.has(s) && (op.instruction !== 'ADD' || remoteKindOf(s) === undefined));
}

/** The context binds of a RUN (index in `op.mounts` and source path): their content is part of the key. */
export function contextBindSources(op: ExecOp): { index: number; source: string }[] {
  return op.mounts.flatMap((m, index) => (m.type === 'bind' && m.from.kind === 'context' ? [{ index, source: m.source }] : []));
}

/** The selection key of a context bind (for the solver's selection map). */
export function bindSelectionKey(vertexId: string, index: number): string {
  return `${vertexId}#mount${index}`;
}

/**
 * Ids of the vertices whose file system a later step of `vertices` (topologically ordered) reads:
 * an input of a layer-making step (`makesLayer`), or of a pass-through vertex (FROM a stage,
 * metadata) whose own state is read so. A COPY outside this set (typically the last one of the
 * exported stage) never needs its snapshot, only its layer.
 */
export function verticesNeedingFiles<V extends { readonly id: string; readonly inputs: readonly string[] }>(vertices: readonly V[], makesLayer: (v: V) => boolean): Set<string> {
  const needed = new Set<string>();
  for (let i = vertices.length - 1; i >= 0; i--) {
    const u = vertices[i] as V;
    if (!makesLayer(u) && !needed.has(u.id)) continue;
    for (const id of u.inputs) needed.add(id);
  }
  return needed;
}
