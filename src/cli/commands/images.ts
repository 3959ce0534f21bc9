import { formatReference, parseReference } from '../../core/index.js';
import { listImages } from '../../store/index.js';
import { optBool, optString } from '../args.js';
import type { Command } from '../command.js';
import { alignTabs, executeGoTemplate, parseGoTemplate } from '../go-template.js';
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
    { name: 'format', type: 'string', value: 'FORMAT', help: 'Output format: "table" (default), "json" (one object per line), "table TEMPLATE" or a Go template ({{.Repository}}:{{.Tag}})' },
  ],
  async run(args, ctx) {
    const format = optString(args, 'format') ?? 'table';
    // Anything but table/json is a Go template (`table TEMPLATE` adds docker's header row); checked before listing.
    const template = format === 'table' || format === 'json' ? undefined : parseGoTemplate(format.replace(/^table /, ''));
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
    const objects = rows.map((r) => ({
      Containers: 'N/A', CreatedAt: r.created ?? '', CreatedSince: timeAgo(r.created, now), Digest: r.digest, ID: r.id,
      Repository: r.repository, SharedSize: 'N/A', Size: humanSize(r.size), Tag: r.tag, UniqueSize: 'N/A', VirtualSize: humanSize(r.size),
    }));
    if (format === 'json') {
      for (const o of objects) ctx.stdout.write(`${JSON.stringify(o)}\n`);
      return 0;
    }
    if (template !== undefined) {
      if (!format.startsWith('table ')) {
        for (const o of objects) ctx.stdout.write(`${executeGoTemplate(template, o)}\n`);
        return 0;
      }
      const headers = {
        Containers: 'CONTAINERS', CreatedAt: 'CREATED AT', CreatedSince: 'CREATED', Digest: 'DIGEST', ID: 'IMAGE ID', Repository: 'REPOSITORY',
        SharedSize: 'SHARED SIZE', Size: 'SIZE', Tag: 'TAG', UniqueSize: 'UNIQUE SIZE', VirtualSize: 'VIRTUAL SIZE',
      };
      ctx.stdout.write(`${alignTabs([headers, ...objects].flatMap((o) => executeGoTemplate(template, o).replace(/\n$/, '').split('\n')))}\n`);
      return 0;
    }
    const digests = optBool(args, 'digests');
    const header = ['REPOSITORY', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
    const body = rows.map((r) => [r.repository, r.tag, ...(digests ? [r.digest] : []), r.id, timeAgo(r.created, now), humanSize(r.size)]);
    ctx.stdout.write(`${formatTable([header, ...body])}\n`);
    return 0;
  },
};
