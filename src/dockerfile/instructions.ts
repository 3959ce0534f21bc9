import type { SourceLocation } from '../core/index.js';

/**
 * The typed Dockerfile model. Parsing fills these from text; words are kept UNEXPANDED
 * (quotes and `$VAR` intact) where the Dockerfile reference says the builder expands them,
 * so the planner can expand them with the environment in scope (see expand.ts).
 */

/** Command given in exec form (`["a","b"]`, already JSON-decoded) or shell form (raw text). */
export type CommandForm =
  | { readonly form: 'exec'; readonly args: readonly string[] }
  | { readonly form: 'shell'; readonly command: string };

/** A here-document attached to an instruction (`<<EOF`, `<<-EOF`, `<<"EOF"`). */
export interface Heredoc {
  /** Delimiter word without quotes, e.g. `EOF`. */
  readonly name: string;
  /** Body text (with `<<-` leading tabs already stripped); ends with a newline unless empty. */
  readonly content: string;
  /** False when the delimiter was quoted: the body is taken literally. */
  readonly expand: boolean;
  /** True for `<<-` (leading tabs stripped). */
  readonly stripTabs: boolean;
  /** File descriptor prefix such as `3<<EOF`, when given. */
  readonly fd?: number;
}

/** One `KEY=VALUE` pair of ENV/LABEL; both sides unexpanded, quotes intact. */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
}

/** `RUN --mount=...` (all option values as written, unexpanded). */
export type RunMount =
  | {
      readonly type: 'bind';
      readonly target: string;
      readonly source?: string;
      readonly from?: string;
      readonly readwrite: boolean;
    }
  | {
      readonly type: 'cache';
      readonly target: string;
      readonly id?: string;
      readonly source?: string;
      readonly from?: string;
      readonly readonly: boolean;
      readonly sharing: 'shared' | 'private' | 'locked';
      readonly mode?: number;
      readonly uid?: number;
      readonly gid?: number;
    }
  | { readonly type: 'tmpfs'; readonly target: string; readonly size?: number }
  | {
      readonly type: 'secret';
      readonly id?: string;
      readonly target?: string;
      readonly env?: string;
      readonly required: boolean;
      readonly mode?: number;
      readonly uid?: number;
      readonly gid?: number;
    }
  | {
      readonly type: 'ssh';
      readonly id?: string;
      readonly target?: string;
      readonly required: boolean;
      readonly mode?: number;
      readonly uid?: number;
      readonly gid?: number;
    };

/** Fields common to every instruction. */
export interface InstructionBase {
  /** 1-based location of the instruction keyword (endLine covers continuations/heredocs). */
  readonly loc: SourceLocation;
  /** The keyword as written (for casing lint), e.g. `run`. */
  readonly keyword: string;
  /** The original source text of the whole instruction (for history `created_by` and errors). */
  readonly source: string;
}

export interface FromInstruction extends InstructionBase {
  readonly kind: 'FROM';
  /** Image reference, stage name, or `scratch`; unexpanded (ARGs from the global scope apply). */
  readonly image: string;
  readonly platform?: string;
  /** `AS name` as written (case preserved; stage lookup is case-insensitive). */
  readonly alias?: string;
  /** The `AS` keyword as written (for casing lint). */
  readonly asKeyword?: string;
}

export interface RunInstruction extends InstructionBase {
  readonly kind: 'RUN';
  readonly command: CommandForm;
  readonly mounts: readonly RunMount[];
  readonly network?: 'default' | 'none' | 'host';
  readonly security?: 'sandbox' | 'insecure';
  readonly heredocs: readonly Heredoc[];
}

export interface CmdInstruction extends InstructionBase {
  readonly kind: 'CMD';
  readonly command: CommandForm;
}

export interface EntrypointInstruction extends InstructionBase {
  readonly kind: 'ENTRYPOINT';
  readonly command: CommandForm;
}

export interface LabelInstruction extends InstructionBase {
  readonly kind: 'LABEL';
  readonly pairs: readonly KeyValue[];
  /** True for the legacy `LABEL key value` form (set by the parser; for LegacyKeyValueFormat). */
  readonly legacy?: boolean;
}

export interface MaintainerInstruction extends InstructionBase {
  readonly kind: 'MAINTAINER';
  readonly name: string;
}

export interface ExposeInstruction extends InstructionBase {
  readonly kind: 'EXPOSE';
  /** Words such as `80`, `53/udp`, `8000-8010/tcp`, `$PORT`; unexpanded. */
  readonly ports: readonly string[];
}

export interface EnvInstruction extends InstructionBase {
  readonly kind: 'ENV';
  readonly pairs: readonly KeyValue[];
  /** True for the legacy `ENV key value` form. */
  readonly legacy: boolean;
}

export interface CopyInstruction extends InstructionBase {
  readonly kind: 'COPY' | 'ADD';
  /** Source words (unexpanded); for heredoc sources, the heredoc names. */
  readonly sources: readonly string[];
  readonly dest: string;
  readonly from?: string;
  readonly chown?: string;
  readonly chmod?: string;
  readonly link: boolean;
  readonly parents: boolean;
  readonly exclude: readonly string[];
  /** ADD only. */
  readonly checksum?: string;
  /** ADD only. */
  readonly keepGitDir: boolean;
  readonly heredocs: readonly Heredoc[];
  /** True when the sources/dest were given in JSON form. */
  readonly json: boolean;
}

export interface VolumeInstruction extends InstructionBase {
  readonly kind: 'VOLUME';
  readonly paths: readonly string[];
  readonly json: boolean;
}

export interface UserInstruction extends InstructionBase {
  readonly kind: 'USER';
  /** `user[:group]`, unexpanded. */
  readonly user: string;
}

export interface WorkdirInstruction extends InstructionBase {
  readonly kind: 'WORKDIR';
  readonly path: string;
}

/** One declared build argument. */
export interface ArgDecl {
  readonly name: string;
  /** Default value, unexpanded (quotes intact); undefined when none was given. */
  readonly default?: string;
}

export interface ArgInstruction extends InstructionBase {
  readonly kind: 'ARG';
  readonly args: readonly ArgDecl[];
}

export interface OnbuildInstruction extends InstructionBase {
  readonly kind: 'ONBUILD';
  /** The trigger instruction (never ONBUILD, FROM or MAINTAINER). */
  readonly trigger: Instruction;
  /** The trigger text as written after `ONBUILD ` (what goes into the image config). */
  readonly triggerSource: string;
}

export interface StopsignalInstruction extends InstructionBase {
  readonly kind: 'STOPSIGNAL';
  readonly signal: string;
}

/** HEALTHCHECK options; durations in nanoseconds (as Docker's image config stores them). */
export interface HealthcheckOptions {
  readonly interval?: number;
  readonly timeout?: number;
  readonly startPeriod?: number;
  readonly startInterval?: number;
  readonly retries?: number;
}

export interface HealthcheckInstruction extends InstructionBase {
  readonly kind: 'HEALTHCHECK';
  /** `none` for `HEALTHCHECK NONE`. */
  readonly check: { readonly type: 'none' } | { readonly type: 'cmd'; readonly command: CommandForm; readonly options: HealthcheckOptions };
}

export interface ShellInstruction extends InstructionBase {
  readonly kind: 'SHELL';
  readonly shell: readonly string[];
}

/** Every instruction of the Dockerfile reference, discriminated on `kind`. */
export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | LabelInstruction
  | MaintainerInstruction
  | ExposeInstruction
  | EnvInstruction
  | CopyInstruction
  | VolumeInstruction
  | UserInstruction
  | WorkdirInstruction
  | ArgInstruction
  | OnbuildInstruction
  | StopsignalInstruction
  | HealthcheckInstruction
  | ShellInstruction;

/** The instruction kinds, in the reference's order. */
export type InstructionKind = Instruction['kind'];

/** One build stage: its FROM and the instructions that follow it. */
export interface Stage {
  /** 0-based position among the stages. */
  readonly index: number;
  /** Lower-cased `AS` name, when given. */
  readonly name?: string;
  readonly from: FromInstruction;
  /** Instructions after FROM, in order (FROM itself excluded). */
  readonly instructions: readonly Instruction[];
  readonly loc: SourceLocation;
}

/** `# check=skip=A,B;error=true`. */
export interface CheckDirective {
  /** Rule names to skip, or `all`. */
  readonly skip: readonly string[] | 'all';
  readonly error: boolean;
}

/** Parser directives found at the top of the file. */
export interface Directives {
  readonly syntax?: string;
  readonly escape: '\\' | '`';
  readonly check?: CheckDirective;
}

/** A parsed Dockerfile. */
export interface Dockerfile {
  /** Name used in messages (e.g. `Dockerfile` or the `-f` path). */
  readonly file: string;
  readonly directives: Directives;
  /** ARG instructions before the first FROM (the global scope). */
  readonly globalArgs: readonly ArgInstruction[];
  readonly stages: readonly Stage[];
}
