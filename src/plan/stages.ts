import { suggest, TsbuildError, type SourceLocation } from '../core/index.js';
import type { Dockerfile } from '../dockerfile/index.js';

/** Fails with PLAN_NO_STAGES / PLAN_DUPLICATE_STAGE when the stage list is unusable. */
export function checkStages(df: Dockerfile): void {
  if (df.stages.length === 0) {
    throw new TsbuildError('PLAN_NO_STAGES', 'the Dockerfile has no FROM instruction, so there is nothing to build', {
      loc: { file: df.file, line: 1 },
    });
  }
  const seen = new Map<string, number>();
  for (const s of df.stages) {
    if (s.name === undefined) continue;
    const first = seen.get(s.name);
    if (first !== undefined) {
      throw new TsbuildError('PLAN_DUPLICATE_STAGE', `duplicate stage name "${s.name}" (first defined by stage ${first})`, {
        loc: s.from.loc,
      });
    }
    seen.set(s.name, s.index);
  }
}

/** Map of lower-cased stage name -> index (first definition wins; duplicates are rejected by checkStages). */
export function stageIndexByName(df: Dockerfile): Map<string, number> {
  const map = new Map<string, number>();
  for (const s of df.stages) if (s.name !== undefined && !map.has(s.name)) map.set(s.name, s.index);
  return map;
}

function stageNames(df: Dockerfile): string[] {
  return df.stages.flatMap((s) => (s.name === undefined ? [] : [s.name]));
}

/** Index of the `--target` stage (case-insensitive name), else the last stage. PLAN_UNKNOWN_TARGET lists the names. */
export function findTargetStage(df: Dockerfile, target: string | undefined): number {
  if (target === undefined || target === '') return df.stages.length - 1;
  const wanted = target.toLowerCase();
  const stage = df.stages.find((s) => s.name === wanted);
  if (stage !== undefined) return stage.index;
  const names = stageNames(df);
  const guess = suggest(wanted, names);
  throw new TsbuildError(
    'PLAN_UNKNOWN_TARGET',
    `target stage "${target}" could not be found; ${names.length === 0 ? 'the Dockerfile names no stages' : `stages: ${names.join(', ')}`}`,
    guess === undefined ? {} : { hint: `did you mean "${guess}"?` },
  );
}

/**
 * Resolves a stage reference of stage `current`: a stage name (case-insensitive) or, when
 * `allowIndex` (COPY --from, RUN --mount from=), a numeric index. Returns the stage index, or
 * undefined when `ref` names an image. A reference to the same stage is PLAN_STAGE_CYCLE, to a
 * later stage PLAN_FORWARD_REFERENCE, to a missing index PLAN_BAD_STAGE_INDEX.
 */
export function resolveStageRef(
  df: Dockerfile,
  byName: ReadonlyMap<string, number>,
  ref: string,
  current: number,
  loc: SourceLocation,
  allowIndex: boolean,
): number | undefined {
  let index: number | undefined;
  if (allowIndex && /^[0-9]+$/.test(ref)) {
    index = Number(ref);
    if (index >= df.stages.length) {
      throw new TsbuildError('PLAN_BAD_STAGE_INDEX', `stage index ${ref} is out of range: the Dockerfile has ${df.stages.length} stage(s)`, { loc });
    }
  } else {
    index = byName.get(ref.toLowerCase());
  }
  if (index === undefined) return undefined;
  if (index === current) {
    throw new TsbuildError('PLAN_STAGE_CYCLE', `stage ${describe(df, current)} refers to itself ("${ref}")`, { loc });
  }
  if (index > current) {
    throw new TsbuildError(
      'PLAN_FORWARD_REFERENCE',
      `stage ${describe(df, current)} refers to stage ${describe(df, index)}, which is defined later; move that stage before this one`,
      { loc },
    );
  }
  return index;
}

function describe(df: Dockerfile, index: number): string {
  const name = df.stages[index]?.name;
  return name === undefined ? `${index}` : `${index} ("${name}")`;
}
