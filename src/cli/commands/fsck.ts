import { checkStore } from '../../store/index.js';
import { optBool } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { humanSize } from './image-info.js';

/** `tsbuild fsck`: verifies every blob digest and every reference; exit 1 when damage is found. */
export const fsckCommand: Command = {
  name: 'fsck',
  summary: 'Verify every blob and every reference of the store',
  usage: 'fsck [OPTIONS]',
  options: [{ name: 'json', type: 'bool', help: 'Print the report as JSON' }],
  async run(_args, ctx) {
    const store = await openCliStore(ctx);
    const report = await checkStore(store, { signal: ctx.signal });
    if (optBool(_args, 'json')) {
      ctx.stdout.write(`${JSON.stringify({ ...report, consistent: report.problems.length === 0, root: store.paths.root })}\n`);
      return report.problems.length === 0 ? 0 : 1;
    }
    for (const p of report.problems) ctx.stdout.write(`${p.kind}: ${p.message}\n`);
    const garbage = report.unreferenced + report.tmpLeftovers > 0
      ? ` (${report.unreferenced} unreferenced blobs, ${report.tmpLeftovers} leftovers in tmp/: "tsbuild prune" removes them)`
      : '';
    ctx.stdout.write(`checked ${report.blobs} blobs (${humanSize(report.bytes)}) and ${report.references} references in ${store.paths.root}: `
      + `${report.problems.length === 0 ? 'consistent' : `${report.problems.length} problems`}${garbage}\n`);
    return report.problems.length === 0 ? 0 : 1;
  },
};
