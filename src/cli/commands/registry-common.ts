import { join } from 'node:path';
import { homedir } from 'node:os';
import { createRegistryClient, HttpRegistryClient, redact, type CredentialSources, type Credentials } from '../../registry/index.js';
import { TsbuildError, type BuildEvent } from '../../core/index.js';
import { extraCaFile } from '../../sys/index.js';
import { optList, optString, type ParsedArgs } from '../args.js';
import type { CommandContext } from '../command.js';

export { registryOptions } from './registry-options.js';

/** Where credentials are looked up, from the environment ($DOCKER_CONFIG, $REGISTRY_AUTH_FILE, ...). */
export function credentialSources(ctx: Pick<CommandContext, 'env'>): CredentialSources {
  const env = ctx.env;
  const home = env.HOME ?? homedir();
  const authFiles: string[] = [];
  if (env.REGISTRY_AUTH_FILE !== undefined && env.REGISTRY_AUTH_FILE !== '') authFiles.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR !== undefined && env.XDG_RUNTIME_DIR !== '') authFiles.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  authFiles.push(join(env.XDG_CONFIG_HOME ?? join(home, '.config'), 'containers', 'auth.json'));
  return {
    dockerConfigDir: env.DOCKER_CONFIG !== undefined && env.DOCKER_CONFIG !== '' ? env.DOCKER_CONFIG : join(home, '.docker'),
    authFiles,
    ...(env.PATH === undefined ? {} : { path: env.PATH }),
  };
}

/** A client for one command: credentials from the environment's sources (or `fixed`), TLS and insecure options, --debug trace. */
export function createClient(args: ParsedArgs, ctx: CommandContext, fixed?: Credentials): HttpRegistryClient {
  const certsDir = optString(args, 'cert-dir');
  const nodeExtraCaFile = extraCaFile(ctx.env);
  const options = {
    insecureRegistries: optList(args, 'insecure-registry'),
    caFiles: optList(args, 'tls-ca'),
    ...(nodeExtraCaFile === undefined ? {} : { nodeExtraCaFile }),
    ...(certsDir === undefined ? {} : { certsDir }),
    ...(ctx.global.debug ? { log: (line: string) => void ctx.stderr.write(`debug: ${redact(line)}\n`) } : {}),
  };
  return fixed !== undefined ? new HttpRegistryClient({ ...options, credentials: async () => fixed }) : createRegistryClient({ ...options, credentialSources: credentialSources(ctx) });
}

/** Parses a positive integer option. Throws `CLI_BAD_VALUE`. */
export function optPositiveInt(args: ParsedArgs, name: string, fallback: number): number {
  const v = optString(args, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new TsbuildError('CLI_BAD_VALUE', `--${name} takes a positive integer, not "${v}"`, { exitCode: 125 });
  return n;
}

/** Prints transfer events as docker-style status lines (`<id>: Pull complete`), skipping byte progress. */
export function transferPrinter(ctx: CommandContext, quiet: boolean): (e: BuildEvent) => void {
  return (e) => {
    if (quiet || e.type !== 'transfer' || e.name === 'Downloading') return;
    ctx.stdout.write(`${e.id}: ${e.name}\n`);
  };
}
