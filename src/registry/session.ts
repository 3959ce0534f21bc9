import { HttpRegistryClient } from './client.js';
import { loadCredentials, type CredentialSources } from './credentials.js';
import { DOCKER_HUB_API_HOST } from './hosts.js';
import type { TransportOptions } from './transport.js';

/** Options of {@link createRegistryClient}: the transport's, plus where credentials come from. */
export interface RegistryClientOptions extends Omit<TransportOptions, 'credentials'> {
  /** Docker config / auth files to read credentials from (none: anonymous only). */
  readonly credentialSources?: CredentialSources;
}

/**
 * A client whose credentials are looked up per registry from `credentialSources` (docker's
 * order, see {@link loadCredentials}). This is the entry point for the CLI and the build engine
 * (FROM pulls, `--push`); the caller closes it.
 */
export function createRegistryClient(options: RegistryClientOptions = {}): HttpRegistryClient {
  const { credentialSources, ...transport } = options;
  return new HttpRegistryClient({
    ...transport,
    ...(credentialSources === undefined ? {} : {
      credentials: (host: string) => loadCredentials(host === DOCKER_HUB_API_HOST ? 'docker.io' : host, credentialSources),
    }),
  });
}
