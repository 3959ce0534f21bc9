import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import { TsbuildError } from '../../core/index.js';
import { copyFromContainer, copyToContainer, exportContainer, type FilesDeps } from '../../runner/index.js';
import { optBool, optString } from '../args.js';
import type { Command } from '../command.js';
import { openContainerDeps, type ContainerDeps } from '../container-deps.js';
import { requireArgs } from './image-info.js';

function filesDeps(deps: ContainerDeps): FilesDeps {
  return { snapshotter: deps.snapshotter, tmpDir: deps.store.paths.tmp, rootless: deps.rootless };
}

/** `tsbuild export [-o FILE] CONTAINER`: the container's file system as a tar (stdout by default). */
export const exportCommand: Command = {
  name: 'export',
  summary: 'Export a container\'s filesystem as a tar archive',
  usage: 'export [OPTIONS] CONTAINER',
  options: [{ name: 'output', short: 'o', type: 'string', value: 'FILE', help: 'Write to a file, instead of STDOUT' }],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'export', 'exactly 1 argument: CONTAINER');
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.resolve(args.positionals[0] as string);
    const output = optString(args, 'output');
    if (output === undefined) {
      if ('isTTY' in ctx.stdout && ctx.stdout.isTTY === true) {
        throw new TsbuildError('CLI_TTY_OUTPUT', 'cowardly refusing to save to a terminal', { hint: 'use the -o flag or redirect', exitCode: 1 });
      }
      await exportContainer(filesDeps(deps), entry, ctx.stdout);
      return 0;
    }
    // Written next to the target and renamed into place: a failed export leaves no partial file.
    const path = resolve(ctx.cwd, output);
    const tmp = `${path}.tmp-${process.pid}`;
    const file = createWriteStream(tmp);
    try {
      await exportContainer(filesDeps(deps), entry, file);
      file.end();
      await finished(file);
      await rename(tmp, path);
    } catch (err) {
      file.destroy();
      await rm(tmp, { force: true });
      throw err;
    }
    return 0;
  },
};

/** Splits `CONTAINER:PATH` (a host path has no colon before its first slash); undefined for a host path. */
export function splitContainerPath(arg: string): { container: string; path: string } | undefined {
  const colon = arg.indexOf(':');
  if (colon <= 0 || arg.slice(0, colon).includes('/')) return undefined;
  return { container: arg.slice(0, colon), path: arg.slice(colon + 1) };
}

/** `tsbuild cp CONTAINER:SRC DEST|-` and `tsbuild cp SRC|- CONTAINER:DEST`. */
export const cpCommand: Command = {
  name: 'cp',
  summary: 'Copy files/folders between a container and the local filesystem',
  usage: 'cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       tsbuild cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH',
  options: [
    { name: 'archive', short: 'a', type: 'bool', help: 'Archive mode (copy all uid/gid information)' },
    { name: 'follow-link', short: 'L', type: 'bool', help: 'Always follow symbol link in SRC_PATH' },
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 2, 'cp', 'exactly 2 arguments: SRC DEST');
    const [srcArg, destArg] = args.positionals as [string, string];
    const src = splitContainerPath(srcArg);
    const dest = splitContainerPath(destArg);
    if ((src === undefined) === (dest === undefined)) {
      throw new TsbuildError('CLI_BAD_VALUE', src === undefined ? 'must specify at least one container source' : 'copying between containers is not supported', {
        hint: 'usage: tsbuild cp CONTAINER:SRC DEST or tsbuild cp SRC CONTAINER:DEST', exitCode: 1,
      });
    }
    const deps = await openContainerDeps(ctx);
    const fd = filesDeps(deps);
    const options = { archive: optBool(args, 'archive'), followLink: optBool(args, 'follow-link') };
    if (options.archive && deps.rootless) {
      throw new TsbuildError('CLI_NOT_SUPPORTED', 'cp -a in a rootless store is not supported yet', { hint: 'the copies belong to the invoking user (the container\'s root)', exitCode: 1 });
    }
    if (src !== undefined) {
      const entry = await deps.containers.resolve(src.container);
      const path = src.path === '' ? '/' : src.path;
      await copyFromContainer(fd, entry, path, destArg === '-' ? { kind: 'tar', sink: ctx.stdout } : { kind: 'host', path: resolve(ctx.cwd, destArg) + (destArg.endsWith('/') ? '/' : '') }, options);
      return 0;
    }
    const d = dest as { container: string; path: string };
    const entry = await deps.containers.resolve(d.container);
    const hostSrc = srcArg === '-' ? undefined : resolve(ctx.cwd, srcArg) + (/\/\.$/.test(srcArg) ? '/.' : '');
    await copyToContainer(fd, entry, hostSrc === undefined ? { kind: 'tar', stream: ctx.stdin } : { kind: 'host', path: hostSrc }, d.path === '' ? '/' : d.path, options);
    return 0;
  },
};
