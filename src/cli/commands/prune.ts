import { collectGarbage } from '../../store/index.js';
import { optBool } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { humanSize } from './image-info.js';

/** `tsbuild prune`: removes blobs no image needs and leftovers of interrupted writers. */
export const pruneCommand: Command = {
  name: 'prune',
  summary: 'Remove unreferenced blobs and leftovers of interrupted operations',
  usage: 'prune [OPTIONS]',
  options: [{ name: 'dry-run', type: 'bool', help: 'Only report what would be removed' }],
  async run(args, ctx) {
    const store = await openCliStore(ctx);
    const dryRun = optBool(args, 'dry-run');
    const report = await collectGarbage(store, { dryRun });
    for (const d of report.blobs) ctx.stdout.write(`${dryRun ? 'Would delete' : 'Deleted'}: ${d}\n`);
    ctx.stdout.write(`Total reclaimed space: ${humanSize(report.bytes)}${report.tmpEntries > 0 ? ` (and ${report.tmpEntries} leftovers in tmp/)` : ''}\n`);
    return 0;
  },
};
