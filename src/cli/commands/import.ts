import { createReadStream } from 'node:fs';
import { resolve } from 'node:path';
import { formatReference, MediaType, parseReference, TsbuildError } from '../../core/index.js';
import { addLayer, applyChanges, createEmptyConfig, createManifest, parsePlatform, platformFromNode, serializeDocument } from '../../image/index.js';
import { acquireLease, decompressed } from '../../store/index.js';
import { optList, optString } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { requireArgs } from './image-info.js';

/** `tsbuild import FILE|- [REPOSITORY[:TAG]]`: a one-layer image from a root filesystem tarball. */
export const importCommand: Command = {
  name: 'import',
  summary: 'Import the contents from a tarball to create a filesystem image',
  usage: 'import [OPTIONS] FILE|- [REPOSITORY[:TAG]]',
  options: [
    { name: 'change', short: 'c', type: 'list', value: 'INSTRUCTION', help: 'Apply a Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL)' },
    { name: 'message', short: 'm', type: 'string', value: 'TEXT', help: 'Set a commit message for the imported image' },
    { name: 'platform', type: 'string', value: 'OS/ARCH', help: 'Set the platform (default: this machine)' },
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'import', 'at least 1 argument: FILE (or - for STDIN)');
    const [file, name] = args.positionals as [string, string | undefined];
    const target = name === undefined ? undefined : parseReference(name);
    if (target?.digest !== undefined) throw new TsbuildError('CLI_BAD_VALUE', `cannot import to a digest reference "${name}"`, { exitCode: 125 });
    const platformText = optString(args, 'platform');
    const platform = platformText === undefined ? platformFromNode(process.platform, process.arch) : parsePlatform(platformText);
    const store = await openCliStore(ctx);
    const source = file === '-' ? ctx.stdin : createReadStream(resolve(ctx.cwd, file));
    const what = file === '-' ? 'STDIN' : resolve(ctx.cwd, file);
    source.on('error', () => undefined);
    const lease = await acquireLease(store);
    try {
      // The layer is stored uncompressed, so its digest is its diffID.
      const tarStream = await decompressed(source, what).catch((err: unknown) => {
        throw err instanceof TsbuildError ? err : new TsbuildError('CLI_NOT_FOUND', `cannot read ${what}: ${(err as Error).message}`, { cause: err });
      });
      const layer = await store.blobs.put(tarStream, {}, { signal: ctx.signal });
      const created = sourceDateEpoch(ctx.env.SOURCE_DATE_EPOCH) ?? new Date().toISOString();
      const message = optString(args, 'message');
      let config = createEmptyConfig(platform, created);
      config = addLayer(config, layer.digest, { created, created_by: `tsbuild import ${file === '-' ? '-' : file}`, ...(message === undefined ? {} : { comment: message }) });
      config = applyChanges(config, optList(args, 'change'));
      const configBlob = await store.blobs.putBytes(serializeDocument(config));
      const manifest = createManifest(
        { mediaType: MediaType.ociConfig, digest: configBlob.digest, size: configBlob.size },
        [{ mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }],
      );
      const m = await store.blobs.putBytes(serializeDocument(manifest));
      const descriptor = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
      if (target === undefined) await store.refs.addUntagged(descriptor);
      else await store.refs.set(formatReference(target), descriptor);
      ctx.stdout.write(`${configBlob.digest}\n`);
    } finally {
      await lease.release();
    }
    return 0;
  },
};

/** `SOURCE_DATE_EPOCH` as an ISO time, when set and valid. */
function sourceDateEpoch(value: string | undefined): string | undefined {
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  return new Date(Number(value) * 1000).toISOString();
}
