import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { extraCaFile } from '../../sys/index.js';

/** Host programs ADD uses (found on the CLI's PATH), the environment git runs with and the extra CA file. */
export interface HostTools {
  readonly git?: string;
  readonly bzip2?: string;
  readonly xz?: string;
  /** Environment of git (HOME, SSH_AUTH_SOCK, proxies...: only what git needs, never the whole env). */
  readonly gitEnv?: Readonly<Record<string, string>>;
  /** NODE_EXTRA_CA_CERTS's file (deferred by bin/tsbuild.js): trusted beside Node's roots by ADD of https URLs. */
  readonly extraCaFile?: string;
}

const GIT_ENV_KEYS = ['HOME', 'SSH_AUTH_SOCK', 'GIT_SSH_COMMAND', 'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'GIT_SSL_CAINFO'];

/** Finds git, bzip2 and xz in the directories of `env.PATH` and keeps the variables git needs and the extra CA file. */
export function findHostTools(env: Readonly<Record<string, string | undefined>>): HostTools {
  const find = (name: string): string | undefined => {
    for (const dir of (env.PATH ?? '').split(delimiter)) {
      if (dir === '') continue;
      try {
        accessSync(join(dir, name), constants.X_OK);
        return join(dir, name);
      } catch {
        // not here
      }
    }
    return undefined;
  };
  const gitEnv: Record<string, string> = {};
  for (const k of GIT_ENV_KEYS) {
    const v = env[k];
    if (v !== undefined) gitEnv[k] = v;
  }
  if (env.PATH !== undefined) gitEnv.PATH = env.PATH;
  const git = find('git');
  const bzip2 = find('bzip2');
  const xz = find('xz');
  const ca = extraCaFile(env);
  return { ...(git === undefined ? {} : { git }), ...(bzip2 === undefined ? {} : { bzip2 }), ...(xz === undefined ? {} : { xz }), gitEnv, ...(ca === undefined ? {} : { extraCaFile: ca }) };
}
