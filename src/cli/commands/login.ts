import { TsbuildError } from '../../core/index.js';
import { apiHostOf, HttpRegistryClient, loadCredentials, normalizeRegistryArg, saveCredentials, type Credentials } from '../../registry/index.js';
import { optBool, optString } from '../args.js';
import type { Command } from '../command.js';
import { createClient, credentialSources, registryOptions } from './registry-common.js';

async function readAll(ctx: Parameters<Command['run']>[1]): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of ctx.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** `tsbuild login [-u USER] [--password-stdin | -p PASSWORD] [SERVER]`. */
export const loginCommand: Command = {
  name: 'login',
  summary: 'Log in to a registry',
  usage: 'login [OPTIONS] [SERVER]',
  options: [
    { name: 'username', short: 'u', type: 'string', value: 'USER', help: 'Username' },
    { name: 'password', short: 'p', type: 'string', value: 'PASSWORD', help: 'Password (insecure: visible in the process list; prefer --password-stdin)' },
    { name: 'password-stdin', type: 'bool', help: 'Read the password (or token) from STDIN' },
    { name: 'cert-dir', type: 'string', value: 'DIR', help: 'Per-registry CA directory (default /etc/docker/certs.d)', hidden: true },
    ...registryOptions,
  ],
  async run(args, ctx) {
    if (args.positionals.length > 1) throw new TsbuildError('CLI_BAD_ARGUMENT', '"tsbuild login" takes at most 1 argument: SERVER', { exitCode: 125 });
    const domain = normalizeRegistryArg(args.positionals[0] ?? 'docker.io');
    const sources = credentialSources(ctx);
    const username = optString(args, 'username');
    let password = optString(args, 'password');
    if (optBool(args, 'password-stdin')) {
      if (password !== undefined) throw new TsbuildError('CLI_BAD_ARGUMENT', '--password and --password-stdin are mutually exclusive', { exitCode: 125 });
      if (username === undefined) throw new TsbuildError('CLI_MISSING_ARGUMENT', 'must provide --username with --password-stdin', { exitCode: 125 });
      password = (await readAll(ctx)).replace(/\r?\n$/, '');
    } else if (password !== undefined) {
      ctx.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
    }
    let creds: Credentials | undefined;
    if (username !== undefined) {
      if (password === undefined || password === '') {
        throw new TsbuildError('CLI_MISSING_ARGUMENT', 'no password given', { hint: 'use --password-stdin (interactive prompts are not supported)', exitCode: 125 });
      }
      creds = { username, password };
    } else {
      if (password !== undefined) throw new TsbuildError('CLI_MISSING_ARGUMENT', 'a password needs --username', { exitCode: 125 });
      creds = await loadCredentials(domain, sources);
      if (creds === undefined) {
        throw new TsbuildError('CLI_MISSING_ARGUMENT', `no stored credentials for ${domain}`, { hint: 'use --username USER --password-stdin', exitCode: 125 });
      }
    }
    const client: HttpRegistryClient = createClient(args, ctx, creds);
    try {
      await client.ping(apiHostOf(domain), ctx.signal);
    } finally {
      await client.close();
    }
    if (username !== undefined) {
      const where = await saveCredentials(domain, creds, sources);
      if (ctx.global.debug) ctx.stderr.write(`debug: credentials stored in ${where}\n`);
    }
    ctx.stdout.write('Login Succeeded\n');
    return 0;
  },
};
