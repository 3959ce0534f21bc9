import { formatReference, parseReference, TsbuildError } from '../../core/index.js';
import { resolveImage, withName } from '../../store/index.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { requireArgs } from './image-info.js';

/** `tsbuild tag SOURCE TARGET`. */
export const tagCommand: Command = {
  name: 'tag',
  summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
  usage: 'tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
  options: [],
  async run(args, ctx) {
    requireArgs(args.positionals, 2, 'tag', 'exactly 2 arguments: SOURCE_IMAGE TARGET_IMAGE');
    const [src, dst] = args.positionals as [string, string];
    const target = parseReference(dst);
    if (target.digest !== undefined) {
      throw new TsbuildError('CLI_BAD_VALUE', `refusing to create a tag with a digest reference: "${dst}"`, { exitCode: 125 });
    }
    const store = await openCliStore(ctx);
    const image = await resolveImage(store, src);
    await store.refs.set(formatReference(target), withName(image.descriptor, undefined));
    return 0;
  },
};
