import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import { formatReference, parseReference, TsbuildError } from '../../core/index.js';
import { resolveImage, saveArchive, type ArchiveFormat, type SaveImage } from '../../store/index.js';
import { optString } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { requireArgs } from './image-info.js';

/** `tsbuild save -o FILE [--format oci|docker] IMAGE...`. */
export const saveCommand: Command = {
  name: 'save',
  summary: 'Save one or more images to a tar archive (streamed to STDOUT by default)',
  usage: 'save [OPTIONS] IMAGE [IMAGE...]',
  options: [
    { name: 'output', short: 'o', type: 'string', value: 'FILE', help: 'Write to a file, instead of STDOUT' },
    { name: 'format', type: 'string', value: 'oci|docker', help: 'Archive format: "docker" (default; docker load compatible, also an OCI layout) or "oci"; layers are gzip-compressed (once per layer)' },
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'save', 'at least 1 argument: IMAGE');
    const format = (optString(args, 'format') ?? 'docker') as ArchiveFormat;
    if (format !== 'oci' && format !== 'docker') {
      throw new TsbuildError('CLI_BAD_VALUE', `invalid --format "${String(format)}": expected oci or docker`, { exitCode: 125 });
    }
    const store = await openCliStore(ctx);
    const byDigest = new Map<string, { descriptor: SaveImage['descriptor']; names: Set<string> }>();
    for (const arg of args.positionals) {
      const image = await resolveImage(store, arg);
      let name: string | undefined;
      try {
        name = formatReference(parseReference(arg));
      } catch {
        name = undefined;
      }
      const names = name !== undefined && image.names.includes(name) ? [name] : image.names;
      const g = byDigest.get(image.descriptor.digest) ?? { descriptor: image.descriptor, names: new Set<string>() };
      for (const n of names) g.names.add(n);
      byDigest.set(image.descriptor.digest, g);
    }
    const images = [...byDigest.values()].map((g) => ({ descriptor: g.descriptor, names: [...g.names] }));
    const output = optString(args, 'output');
    if (output === undefined || output === '-') {
      if ((ctx.stdout as { isTTY?: boolean }).isTTY === true) {
        throw new TsbuildError('CLI_TTY_OUTPUT', 'refusing to write an archive to a terminal', { hint: 'use -o FILE or redirect the output', exitCode: 125 });
      }
      await saveArchive(store, images, ctx.stdout, { format, gzipLayers: true, signal: ctx.signal });
      return 0;
    }
    // Written next to the target and renamed: an interrupted save leaves no truncated archive.
    const path = resolve(ctx.cwd, output);
    const tmp = `${path}.tmp-${process.pid}`;
    const file = createWriteStream(tmp);
    try {
      await saveArchive(store, images, file, { format, gzipLayers: true, signal: ctx.signal });
      await finished(file);
      await rename(tmp, path);
    } catch (err) {
      file.destroy();
      await unlink(tmp).catch(() => undefined);
      if (err instanceof TsbuildError) throw err;
      throw new TsbuildError('CLI_IO', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
    }
    return 0;
  },
};
