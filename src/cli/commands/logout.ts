import { TsbuildError } from '../../core/index.js';
import { normalizeRegistryArg, removeCredentials } from '../../registry/index.js';
import type { Command } from '../command.js';
import { credentialSources } from './registry-common.js';

/** `tsbuild logout [SERVER]`. */
export const logoutCommand: Command = {
  name: 'logout',
  summary: 'Log out from a registry',
  usage: 'logout [SERVER]',
  options: [],
  async run(args, ctx) {
    if (args.positionals.length > 1) throw new TsbuildError('CLI_BAD_ARGUMENT', '"tsbuild logout" takes at most 1 argument: SERVER', { exitCode: 125 });
    const domain = normalizeRegistryArg(args.positionals[0] ?? 'docker.io');
    const removed = await removeCredentials(domain, credentialSources(ctx));
    ctx.stdout.write(removed ? `Removing login credentials for ${domain}\n` : `Not logged in to ${domain}\n`);
    return 0;
  },
};
