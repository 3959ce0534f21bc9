import { TsbuildError, type SourceLocation } from '../core/index.js';
import { buildInstruction } from './build-instruction.js';
import { scanDirectives } from './directives.js';
import type { ArgInstruction, Dockerfile, FromInstruction, Instruction, Stage } from './instructions.js';
import { segmentLines } from './segment.js';

/*
 * Why our own line scanner rather than dockerfile-ast's instruction list: dockerfile-ast (a
 * language-server parser) does not recognise `3<<EOF` heredocs, keeps reading directives after
 * an unknown one and cuts `# check=` values at whitespace; BuildKit's behaviour is the
 * reference, so segment.ts and directives.ts follow BuildKit's scanner line by line. All line
 * numbers produced here are 1-based (SourceLocation); nothing below this file sees 0-based lines.
 */

/**
 * Parses Dockerfile text into typed, validated stages (words unexpanded). `file` names the
 * Dockerfile in locations and messages. Throws TsbuildError (DF_*) with a 1-based location.
 */
export function parseDockerfile(text: string, file: string): Dockerfile {
  const lines = (text.startsWith('\uFEFF') ? text.slice(1) : text).split('\n');
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop(); // the final newline ends a line, it does not start one
  const { directives } = scanDirectives(lines, file);
  const raws = segmentLines(lines, directives.escape, file);
  const globalArgs: ArgInstruction[] = [];
  const stages: Stage[] = [];
  let from: FromInstruction | undefined;
  let body: Instruction[] = [];
  const close = (): void => {
    if (from === undefined) return;
    const last = body[body.length - 1] ?? from;
    const name = from.alias?.toLowerCase();
    stages.push({
      index: stages.length,
      ...(name === undefined ? {} : { name }),
      from,
      instructions: body,
      loc: { file, line: from.loc.line, endLine: last.loc.endLine ?? last.loc.line },
    });
  };
  for (const raw of raws) {
    const loc: SourceLocation = { file, line: raw.line, endLine: raw.endLine };
    const ins = buildInstruction({ keyword: raw.keyword, args: raw.args, heredocs: raw.heredocs, source: raw.source, loc, escape: directives.escape });
    if (ins.kind === 'FROM') {
      close();
      from = ins;
      body = [];
    } else if (from !== undefined) body.push(ins);
    else if (ins.kind === 'ARG') globalArgs.push(ins);
    else {
      throw new TsbuildError('DF_BEFORE_FROM', `${ins.kind} before the first FROM: only ARG may come before FROM`, {
        loc,
        hint: 'start the Dockerfile with FROM <image> (global ARGs may precede it)',
      });
    }
  }
  close();
  if (stages.length === 0) {
    throw new TsbuildError('DF_NO_STAGE', raws.length === 0 ? 'the Dockerfile has no instructions' : 'the Dockerfile has no FROM instruction', {
      loc: { file, line: 1 },
      hint: 'a Dockerfile needs at least one FROM <image> instruction',
    });
  }
  return { file, directives, globalArgs, stages };
}

/**
 * Parses one instruction given as text, e.g. an ONBUILD trigger from a base image's config
 * (`RUN make`). `loc` is where it applies (the FROM line that pulls it in). Throws DF_*.
 */
export function parseInstructionText(text: string, loc: SourceLocation, escape: '\\' | '`' = '\\'): Instruction {
  const raws = segmentLines(text.split('\n'), escape, loc.file);
  const raw = raws[0];
  if (raw === undefined || raws.length > 1) {
    throw new TsbuildError('DF_BAD_ARGUMENTS', `expected exactly one instruction, got ${raws.length}: ${JSON.stringify(text)}`, { loc });
  }
  return buildInstruction({ ...raw, loc, escape });
}
