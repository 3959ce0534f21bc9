import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { familiarReference, parseReference, TsbuildError } from '../../core/index.js';
import { acquireLease, configDigestOf, loadArchive, loadLayoutDir, type LoadResult } from '../../store/index.js';
import { optBool, optString } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';

/** `tsbuild load -i FILE [--tag NAME]`: OCI archives, docker archives, OCI layout directories (gzip too). */
export const loadCommand: Command = {
  name: 'load',
  summary: 'Load images from a tar archive or an OCI layout directory (STDIN by default)',
  usage: 'load [OPTIONS]',
  options: [
    { name: 'input', short: 'i', type: 'string', value: 'FILE', help: 'Read from an archive file (OCI or docker, optionally gzip) or an OCI layout directory, instead of STDIN' },
    { name: 'tag', type: 'string', value: 'NAME[:TAG]', help: 'Name the image when the archive has no full reference (e.g. only "latest")' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Suppress the load output' },
  ],
  async run(args, ctx) {
    if (args.positionals.length > 0) {
      throw new TsbuildError('CLI_BAD_ARGUMENT', '"tsbuild load" accepts no arguments', { hint: 'use -i FILE', exitCode: 125 });
    }
    const input = optString(args, 'input');
    const tag = optString(args, 'tag');
    const store = await openCliStore(ctx);
    const options = { ...(tag === undefined ? {} : { tag }), signal: ctx.signal };
    const lease = await acquireLease(store);
    let result: LoadResult;
    try {
      if (input === undefined || input === '-') {
        result = await loadArchive(store, ctx.stdin, 'STDIN', options);
      } else {
        const path = resolve(ctx.cwd, input);
        const st = await stat(path).catch((err: unknown) => {
          throw new TsbuildError('CLI_NOT_FOUND', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
        });
        result = st.isDirectory() ? await loadLayoutDir(store, path, options) : await loadArchive(store, createReadStream(path), path, options);
      }
    } finally {
      await lease.release();
    }
    for (const w of result.warnings) ctx.stderr.write(`warning: ${w}\n`);
    if (!optBool(args, 'quiet')) {
      for (const img of result.images) {
        if (img.names.length === 0) ctx.stdout.write(`Loaded image ID: ${(await configDigestOf(store.blobs, img.descriptor)) ?? img.descriptor.digest}\n`);
        for (const n of img.names) ctx.stdout.write(`Loaded image: ${familiarReference(parseReference(n))}\n`);
      }
    }
    return 0;
  },
};
