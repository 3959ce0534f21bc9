import { notSupportedYet } from '../../core/index.js';
import type { Command } from '../command.js';

/** A command whose issue has not landed: accepted, and fails with a clear "not supported yet". */
export function notYetCommand(name: string, summary: string, area: string): Command {
  return {
    name,
    summary: `${summary} [not supported yet]`,
    usage: `${name} [OPTIONS] ...`,
    options: [],
    stopAtPositional: true,
    async run() {
      throw notSupportedYet(`"tsbuild ${name}"`, `${area} has not landed yet`);
    },
  };
}
