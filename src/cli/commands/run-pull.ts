import { familiarReference, familiarRepository, parseReference, TsbuildError } from '../../core/index.js';
import { platformFromNode } from '../../image/index.js';
import { resolveImage, type Store } from '../../store/index.js';
import type { ParsedArgs } from '../args.js';
import type { CommandContext } from '../command.js';

/** `--pull` of `run`: always pull, pull when the image is not in the store, or never. */
export type PullPolicy = 'always' | 'missing' | 'never';

/** Parses `--pull always|missing|never`. Throws CLI_BAD_VALUE. */
export function parsePullPolicy(text: string | undefined, fallback: PullPolicy): PullPolicy {
  if (text === undefined) return fallback;
  if (text === 'always' || text === 'missing' || text === 'never') return text;
  throw new TsbuildError('CLI_BAD_VALUE', `invalid pull option: '${text}': must be one of "always", "missing" or "never"`, { exitCode: 125 });
}

/**
 * Pulls `image` for `run` as its policy says (`missing`: only when the store has no such name),
 * reporting on stderr as `docker run` does. With `never` a missing image fails later with
 * STORE_IMAGE_NOT_FOUND. Throws REG_* on a failed pull.
 */
export async function pullForRun(store: Store, image: string, policy: PullPolicy, args: ParsedArgs, ctx: CommandContext): Promise<void> {
  if (policy === 'never') return;
  if (policy === 'missing') {
    const present = await resolveImage(store, image).then(() => true, (err: unknown) => {
      if (err instanceof TsbuildError && err.code === 'STORE_IMAGE_NOT_FOUND') return false;
      throw err;
    });
    if (present) return;
    ctx.stderr.write(`Unable to find image '${image}' locally\n`);
  }
  const ref = parseReference(image);
  // The registry client loads only when a pull happens: `run` of a present image never needs it.
  const [{ pullImage }, { createClient }, { snapshotUnpacker }, { findCompressionTools }] = await Promise.all([
    import('../../registry/index.js'), import('./registry-common.js'), import('../pull-unpack.js'), import('../../layer/index.js'),
  ]);
  const tools = findCompressionTools(ctx.env.PATH);
  const client = createClient(args, ctx);
  try {
    ctx.stderr.write(`${ref.tag ?? ref.digest}: Pulling from ${familiarRepository(ref)}\n`);
    const r = await pullImage(client, store, ref, {
      platform: platformFromNode(process.platform, process.arch),
      concurrency: 4,
      signal: ctx.signal,
      // As `tsbuild pull`: the layers are unpacked while they download, so the run finds its snapshots made.
      unpack: (layers) => snapshotUnpacker(store, layers, { tools, signal: ctx.signal }),
      onEvent: (e) => {
        if (e.type === 'transfer' && e.name !== 'Downloading') ctx.stderr.write(`${e.id}: ${e.name}\n`);
      },
    });
    ctx.stderr.write(`Digest: ${r.repoDigest}\n`);
    ctx.stderr.write(r.downloaded === 0 ? `Status: Image is up to date for ${familiarReference(ref)}\n` : `Status: Downloaded newer image for ${familiarReference(ref)}\n`);
  } finally {
    await client.close();
  }
}
