import { commitContainer } from '../../runner/index.js';
import { optList, optString } from '../args.js';
import type { Command } from '../command.js';
import { openContainerDeps } from '../container-deps.js';
import { requireArgs } from './image-info.js';

/** `tsbuild commit [-a AUTHOR] [-c CHANGE] [-m MESSAGE] [--pause=false] CONTAINER [REPOSITORY[:TAG]]`. */
export const commitCommand: Command = {
  name: 'commit',
  summary: 'Create a new image from a container\'s changes',
  usage: 'commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]',
  options: [
    { name: 'author', short: 'a', type: 'string', value: 'TEXT', help: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")' },
    { name: 'change', short: 'c', type: 'list', value: 'INSTRUCTION', help: 'Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL)' },
    { name: 'message', short: 'm', type: 'string', value: 'TEXT', help: 'Commit message' },
    { name: 'pause', short: 'p', type: 'bool', help: 'Pause container during commit (default true; --pause=false to not pause)' },
  ],
  async run(args, ctx) {
    requireArgs(args.positionals, 1, 'commit', 'at least 1 argument: CONTAINER [REPOSITORY[:TAG]]');
    const [name, reference] = args.positionals as [string, string | undefined];
    const deps = await openContainerDeps(ctx);
    const entry = await deps.containers.resolve(name);
    const message = optString(args, 'message');
    const author = optString(args, 'author');
    const epoch = ctx.env.SOURCE_DATE_EPOCH;
    const created = epoch !== undefined && /^\d+$/.test(epoch) ? new Date(Number(epoch) * 1000).toISOString() : new Date().toISOString();
    const result = await commitContainer(deps, entry, {
      changes: optList(args, 'change'),
      pause: args.options.pause !== false,
      created,
      ...(reference === undefined ? {} : { reference }),
      ...(message === undefined ? {} : { message }),
      ...(author === undefined ? {} : { author }),
    }, ctx.signal);
    ctx.stdout.write(`${result.id}\n`);
    return 0;
  },
};
