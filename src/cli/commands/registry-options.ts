import type { OptionSpec } from '../args.js';

/**
 * Options shared by pull, push, login and build. Apart from registry-common.ts so that `build`
 * names them without loading the registry client (a build whose bases are in the store needs none).
 */
export const registryOptions: readonly OptionSpec[] = [
  { name: 'insecure-registry', type: 'list', value: 'HOST', help: 'Allow plain HTTP to this registry (localhost and 127.0.0.0/8 always are)' },
  { name: 'tls-ca', type: 'list', value: 'FILE', help: 'Trust this CA certificate (PEM) for registries, besides the system CAs and /etc/docker/certs.d/HOST/ca.crt' },
];
