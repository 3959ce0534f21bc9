import { familiarReference, formatReference, isTsbuildError, parseReference, TsbuildError } from '../../core/index.js';
import { collectGarbage, reachableDigests, resolveImage } from '../../store/index.js';
import { optBool } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { imageId, requireArgs } from './image-info.js';

/** The full name `text` denotes, if it is a reference. */
function nameOf(text: string): string | undefined {
  try {
    return formatReference(parseReference(text));
  } catch {
    return undefined;
  }
}

/** `tsbuild rmi [-f] IMAGE...`: untags, and deletes the blobs no other image needs. */
export const rmiCommand: Command = {
  name: 'rmi',
  summary: 'Remove one or more images',
  usage: 'rmi [OPTIONS] IMAGE [IMAGE...]',
  options: [{ name: 'force', short: 'f', type: 'bool', help: 'Remove an image referenced by several names, ignore missing images' }],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'rmi', 'at least 1 argument: IMAGE');
    const force = optBool(args, 'force');
    const store = await openCliStore(ctx);
    let failed = 0;
    for (const arg of args.positionals) {
      try {
        const image = await resolveImage(store, arg);
        const name = nameOf(arg);
        const byName = name !== undefined && image.names.includes(name);
        if (!byName && image.names.length > 1 && !force) {
          throw new TsbuildError('CLI_IMAGE_IN_USE', `unable to delete ${imageId(image).slice(7, 19)} (must be forced) - image is referenced in multiple repositories`);
        }
        const removed = await store.refs.remove((e) => e.descriptor.digest === image.descriptor.digest && (!byName || e.name === name || (image.names.length === 1 && e.name === undefined)));
        for (const e of removed) if (e.name !== undefined) ctx.stdout.write(`Untagged: ${familiarReference(parseReference(e.name))}\n`);
        const left = (await store.refs.list()).some((e) => e.descriptor.digest === image.descriptor.digest);
        if (!left) {
          const candidates = await reachableDigests(store.blobs, [image.descriptor]);
          const gc = await collectGarbage(store, { candidates });
          if (gc.blobs.length > 0) ctx.stdout.write(`Deleted: ${imageId(image)}\n`);
        }
      } catch (err) {
        if (force && isTsbuildError(err, 'STORE_IMAGE_NOT_FOUND')) continue;
        if (!isTsbuildError(err)) throw err;
        ctx.stderr.write(`Error: ${err.message}\n`);
        failed++;
      }
    }
    return failed > 0 ? 1 : 0;
  },
};
