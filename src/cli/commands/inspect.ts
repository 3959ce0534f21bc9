import { familiarRepository, parseReference } from '../../core/index.js';
import { resolveImage } from '../../store/index.js';
import { optString } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { findContainerJson } from './container-inspect.js';
import { renderGoTemplate } from '../go-template.js';
import { familiarNames, imageId, readImageDetails, requireArgs } from './image-info.js';

/** `tsbuild inspect IMAGE...`: docker image inspect's JSON. */
export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'Show low-level information on images and containers',
  usage: 'inspect [OPTIONS] IMAGE|CONTAINER [IMAGE|CONTAINER...]',
  options: [{ name: 'format', short: 'f', type: 'string', value: 'TEMPLATE', help: 'Format the output using the given Go template ({{.Id}}, {{json .Config}}, {{range .RepoTags}}...{{end}})' }],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'inspect', 'at least 1 argument: IMAGE');
    const store = await openCliStore(ctx);
    const out: unknown[] = [];
    for (const name of args.positionals) {
      // Not an image: a container of that name or ID (docker's inspect resolves both).
      const image = await resolveImage(store, name).catch(async (err: unknown) => {
        const container = await findContainerJson(ctx, name);
        if (container === undefined) throw err;
        out.push(container);
        return undefined;
      });
      if (image === undefined) continue;
      const d = await readImageDetails(store, image);
      const c = d.config;
      const repos = [...new Set(image.names.map((n) => familiarRepository(parseReference(n))))];
      out.push({
        Id: imageId(image),
        RepoTags: familiarNames(image).filter((n) => !n.includes('@')),
        RepoDigests: repos.map((r) => `${r}@${image.descriptor.digest}`),
        Parent: '',
        Comment: c?.history?.at(-1)?.comment ?? '',
        Created: c?.created ?? '',
        DockerVersion: '',
        Author: c?.author ?? '',
        Config: c?.config ?? null,
        Architecture: c?.architecture ?? '',
        ...(c?.variant === undefined ? {} : { Variant: c.variant }),
        Os: c?.os ?? '',
        Size: d.size,
        RootFS: { Type: 'layers', Layers: c?.rootfs.diff_ids ?? [] },
        Metadata: { LastTagTime: '0001-01-01T00:00:00Z' },
        Descriptor: image.descriptor,
      });
    }
    const template = optString(args, 'format');
    if (template !== undefined) {
      for (const o of out) ctx.stdout.write(`${renderGoTemplate(template, o)}\n`);
    } else {
      ctx.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
    }
    return 0;
  },
};
