import { familiarReference, familiarRepository, parseReference } from '../../core/index.js';
import { parsePlatform, platformFromNode } from '../../image/index.js';
import { pullImage, type LayerUnpackHook } from '../../registry/index.js';
import { optBool, optString } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { requireArgs } from './image-info.js';
import { createClient, optPositiveInt, registryOptions, transferPrinter } from './registry-common.js';

/** `tsbuild pull [--platform P] NAME[:TAG|@DIGEST]`. */
export const pullCommand: Command = {
  name: 'pull',
  summary: 'Download an image from a registry',
  usage: 'pull [OPTIONS] NAME[:TAG|@DIGEST]',
  options: [
    { name: 'platform', type: 'string', value: 'OS/ARCH[/VARIANT]', help: 'Pick this platform from a multi-platform image (default: the host\'s)' },
    { name: 'concurrency', type: 'string', value: 'N', help: 'Parallel blob downloads (default 4)' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Print only the image name' },
    { name: 'all-tags', short: 'a', type: 'bool', help: 'Download all tagged images of the repository', notSupported: 'pull tags one by one' },
    { name: 'cert-dir', type: 'string', value: 'DIR', help: 'Per-registry CA directory (default /etc/docker/certs.d)', hidden: true },
    ...registryOptions,
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'pull', 'exactly 1 argument: NAME[:TAG|@DIGEST]');
    const ref = parseReference(args.positionals[0] as string);
    const p = optString(args, 'platform');
    const platform = p === undefined ? platformFromNode(process.platform, process.arch) : parsePlatform(p);
    const quiet = optBool(args, 'quiet');
    const store = await openCliStore(ctx);
    const client = createClient(args, ctx);
    try {
      if (!quiet) ctx.stdout.write(`${ref.tag ?? ref.digest}: Pulling from ${familiarRepository(ref)}\n`);
      // Each layer is unpacked into its snapshot while it downloads (loaded only when something downloads:
      // a no-op pull loads neither the unpack nor the compression tools, child_process and zlib).
      const unpack: LayerUnpackHook = (layers) => {
        const ready = import('../pull-unpack.js').then((m) => m.snapshotUnpacker(store, layers, { tools: m.findCompressionTools(ctx.env.PATH), signal: ctx.signal }));
        return async (layer, bytes) => (await ready)(layer, bytes);
      };
      const r = await pullImage(client, store, ref, { platform, concurrency: optPositiveInt(args, 'concurrency', 4), signal: ctx.signal, onEvent: transferPrinter(ctx, quiet), unpack });
      if (!quiet) {
        ctx.stdout.write(`Digest: ${r.repoDigest}\n`);
        ctx.stdout.write(r.downloaded === 0 ? `Status: Image is up to date for ${familiarReference(ref)}\n` : `Status: Downloaded newer image for ${familiarReference(ref)}\n`);
      }
      ctx.stdout.write(`${r.name}\n`);
      return 0;
    } finally {
      await client.close();
    }
  },
};
