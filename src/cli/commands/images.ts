import { formatReference, parseReference, TsbuildError } from '../../core/index.js';
import { listImages } from '../../store/index.js';
import { optBool, optString } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { formatTable, humanSize, imageId, readImageDetails, shortId, splitName, timeAgo } from './image-info.js';

/** `tsbuild images [REPOSITORY[:TAG]]`. */
export const imagesCommand: Command = {
  name: 'images',
  summary: 'List images',
  usage: 'images [OPTIONS] [REPOSITORY[:TAG]]',
  options: [
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only show image IDs' },
    { name: 'no-trunc', type: 'bool', help: "Don't truncate output" },
    { name: 'digests', type: 'bool', help: 'Show digests' },
    { name: 'format', type: 'string', value: 'table|json', help: 'Output format: "table" (default) or "json" (one object per line)' },
  ],
  async run(args, ctx) {
    const format = optString(args, 'format') ?? 'table';
    if (format !== 'table' && format !== 'json') {
      throw new TsbuildError('CLI_BAD_VALUE', `invalid --format "${format}": expected table or json`, { exitCode: 125 });
    }
    const filter = args.positionals[0];
    let match: (name: string | undefined) => boolean = () => true;
    if (filter !== undefined) {
      const ref = parseReference(filter);
      const hasTag = /:[^/]*$/.test(filter.replace(/@.*$/, ''));
      const full = formatReference(ref);
      const repo = full.replace(/:[^:/]*$/, '');
      match = (n) => n !== undefined && (hasTag ? n === full : n.replace(/:[^:/]*$/, '') === repo);
    }
    const store = await openCliStore(ctx);
    const noTrunc = optBool(args, 'no-trunc');
    const now = Date.now();
    type Row = { repository: string; tag: string; id: string; digest: string; created: string | undefined; size: number };
    const rows: Row[] = [];
    for (const image of await listImages(store)) {
      const details = await readImageDetails(store, image).catch(() => undefined);
      const names = image.names.length === 0 ? [undefined] : image.names;
      for (const name of names) {
        if (!match(name)) continue;
        rows.push({
          ...splitName(name),
          id: shortId(imageId(image), noTrunc),
          digest: image.descriptor.digest,
          created: details?.config?.created,
          size: details?.size ?? 0,
        });
      }
    }
    rows.sort((a, b) => (b.created ?? '').localeCompare(a.created ?? '') || a.repository.localeCompare(b.repository) || a.tag.localeCompare(b.tag));
    if (optBool(args, 'quiet')) {
      const ids = [...new Set(rows.map((r) => r.id))];
      if (ids.length > 0) ctx.stdout.write(`${ids.join('\n')}\n`);
      return 0;
    }
    if (format === 'json') {
      for (const r of rows) {
        ctx.stdout.write(`${JSON.stringify({
          Containers: 'N/A', CreatedAt: r.created ?? '', CreatedSince: timeAgo(r.created, now), Digest: r.digest, ID: r.id,
          Repository: r.repository, SharedSize: 'N/A', Size: humanSize(r.size), Tag: r.tag, UniqueSize: 'N/A', VirtualSize: humanSize(r.size),
        })}\n`);
      }
      return 0;
    }
    const digests = optBool(args, 'digests');
    const header = ['REPOSITORY', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
    const body = rows.map((r) => [r.repository, r.tag, ...(digests ? [r.digest] : []), r.id, timeAgo(r.created, now), humanSize(r.size)]);
    ctx.stdout.write(`${formatTable([header, ...body])}\n`);
    return 0;
  },
};
