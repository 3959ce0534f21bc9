import { isTsbuildError } from '../../core/index.js';
import { NaiveSnapshotter, OverlaySnapshotter } from '../../snapshot/index.js';
import { collectGarbage } from '../../store/index.js';
import { optBool } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { humanSize } from './image-info.js';

/** `tsbuild prune`: removes blobs no image needs, abandoned snapshots and leftovers of interrupted writers. */
export const pruneCommand: Command = {
  name: 'prune',
  summary: 'Remove unreferenced blobs and leftovers of interrupted operations',
  usage: 'prune [OPTIONS]',
  options: [{ name: 'dry-run', type: 'bool', help: 'Only report what would be removed' }],
  async run(args, ctx) {
    const store = await openCliStore(ctx);
    const dryRun = optBool(args, 'dry-run');
    // Active snapshots whose creating process is gone (a killed build or run) go first.
    let snapshots = 0;
    if (!dryRun) {
      const dirs = { snapshots: store.paths.snapshots, tmp: store.paths.tmp };
      for (const s of [new OverlaySnapshotter(dirs), new NaiveSnapshotter(dirs)]) {
        try {
          snapshots += (await s.removeStale()).length;
        } catch (err) {
          if (!isTsbuildError(err)) throw err;
          ctx.stderr.write(`warning: cannot remove stale snapshots: ${err.message}\n`);
        }
      }
    }
    const report = await collectGarbage(store, { dryRun });
    for (const d of report.blobs) ctx.stdout.write(`${dryRun ? 'Would delete' : 'Deleted'}: ${d}\n`);
    const extra = [
      ...(snapshots > 0 ? [`${snapshots} abandoned snapshots`] : []),
      ...(report.tmpEntries > 0 ? [`${report.tmpEntries} leftovers in tmp/`] : []),
    ];
    ctx.stdout.write(`Total reclaimed space: ${humanSize(report.bytes)}${extra.length > 0 ? ` (and ${extra.join(', ')})` : ''}\n`);
    return 0;
  },
};
