import { resolveImage } from '../../store/index.js';
import { optBool, optString } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { formatTable, humanSize, imageId, readImageDetails, requireArgs, shortId, timeAgo } from './image-info.js';

/** `tsbuild history IMAGE`. */
export const historyCommand: Command = {
  name: 'history',
  summary: 'Show the history of an image',
  usage: 'history [OPTIONS] IMAGE',
  options: [
    { name: 'no-trunc', type: 'bool', help: "Don't truncate output" },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only show image IDs' },
    { name: 'format', type: 'string', value: 'table|json', help: 'Output format: "table" (default) or "json" (one object per line)' },
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'history', 'exactly 1 argument: IMAGE');
    const store = await openCliStore(ctx);
    const image = await resolveImage(store, args.positionals[0] as string);
    const d = await readImageDetails(store, image);
    const noTrunc = optBool(args, 'no-trunc');
    const layers = d.manifest?.layers ?? [];
    let layer = 0;
    const entries = (d.config?.history ?? []).map((h) => {
      const size = h.empty_layer === true ? 0 : (layers[layer++]?.size ?? 0);
      return { h, size };
    });
    entries.reverse();
    const now = Date.now();
    const rows = entries.map(({ h, size }, i) => {
      const by = h.created_by ?? '';
      return {
        id: i === 0 ? shortId(imageId(image), noTrunc) : '<missing>',
        created: timeAgo(h.created, now),
        createdAt: h.created ?? '',
        createdBy: noTrunc || by.length <= 45 ? by : `${by.slice(0, 44)}…`,
        size,
        comment: h.comment ?? '',
      };
    });
    if (optBool(args, 'quiet')) {
      ctx.stdout.write(rows.map((r) => `${r.id}\n`).join(''));
      return 0;
    }
    if (optString(args, 'format') === 'json') {
      for (const r of rows) ctx.stdout.write(`${JSON.stringify({ ID: r.id, CreatedAt: r.createdAt, CreatedSince: r.created, CreatedBy: r.createdBy, Size: humanSize(r.size), Comment: r.comment })}\n`);
      return 0;
    }
    const table = [['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], ...rows.map((r) => [r.id, r.created, r.createdBy, humanSize(r.size), r.comment])];
    ctx.stdout.write(`${formatTable(table)}\n`);
    return 0;
  },
};
