import { formatReference, parseReference, repositoryOf, TsbuildError } from '../../core/index.js';
import { pushImage } from '../../registry/index.js';
import { resolveImage } from '../../store/index.js';
import { optBool } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { requireArgs } from './image-info.js';
import { createClient, optPositiveInt, registryOptions, transferPrinter } from './registry-common.js';

/** `tsbuild push IMAGE [DEST]`. */
export const pushCommand: Command = {
  name: 'push',
  summary: 'Upload an image to a registry',
  usage: 'push [OPTIONS] IMAGE [DESTINATION]',
  options: [
    { name: 'concurrency', type: 'string', value: 'N', help: 'Parallel blob uploads (default 4)' },
    { name: 'chunk-size', type: 'string', value: 'BYTES', help: 'Upload blobs larger than this in PATCH chunks of this size (default 64 MiB)' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Print only the pushed digest' },
    { name: 'all-tags', short: 'a', type: 'bool', help: 'Push all tags of the repository', notSupported: 'push tags one by one' },
    { name: 'cert-dir', type: 'string', value: 'DIR', help: 'Per-registry CA directory (default /etc/docker/certs.d)', hidden: true },
    ...registryOptions,
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'push', 'at least 1 argument: IMAGE');
    if (args.positionals.length > 2) throw new TsbuildError('CLI_BAD_ARGUMENT', '"tsbuild push" takes IMAGE and an optional DESTINATION', { exitCode: 125 });
    const [source, destText] = args.positionals as [string, string | undefined];
    const store = await openCliStore(ctx);
    const image = await resolveImage(store, source);
    const dest = parseReference(destText ?? source);
    const quiet = optBool(args, 'quiet');
    const chunk = optPositiveInt(args, 'chunk-size', 64 * 1024 * 1024);
    const client = createClient(args, ctx);
    try {
      if (!quiet) ctx.stdout.write(`The push refers to repository [${repositoryOf(dest)}]\n`);
      const r = await pushImage(client, store, image.descriptor, dest, {
        concurrency: optPositiveInt(args, 'concurrency', 4), chunkBytes: chunk, monolithicMaxBytes: chunk, signal: ctx.signal, onEvent: transferPrinter(ctx, quiet),
      });
      ctx.stdout.write(quiet ? `${r.digest}\n` : `${dest.tag ?? formatReference(dest)}: digest: ${r.digest} size: ${r.size}\n`);
      return 0;
    } finally {
      await client.close();
    }
  },
};
