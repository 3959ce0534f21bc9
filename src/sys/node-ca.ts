import { readFile } from 'node:fs/promises';

/**
 * NODE_EXTRA_CA_CERTS, deferred. Node 20 parses every certificate of that file before it runs any
 * code: ~90 ms of each start-up when it names the system bundle (/etc/ssl/certs/ca-certificates.crt),
 * for commands that open no TLS connection at all. bin/tsbuild.js's shebang therefore starts Node
 * without it and hands the file name on in {@link DEFERRED_CA_VAR}; tsbuild reads the file only when
 * it opens a TLS connection (registry client, ADD of an https URL) and trusts it beside Node's roots,
 * as Node would have. External programs (credential helpers) get NODE_EXTRA_CA_CERTS back.
 */
export const DEFERRED_CA_VAR = 'TSBUILD_NODE_EXTRA_CA_CERTS';

/**
 * Moves NODE_EXTRA_CA_CERTS to {@link DEFERRED_CA_VAR} in `env` (when Node was started with it, e.g.
 * `node bin/tsbuild.js`), so tsbuild's own Node child processes (container monitors, the rootless
 * re-exec, the rootless unpack) start without the cost and still know the file.
 */
export function deferNodeExtraCaCerts(env: NodeJS.ProcessEnv): void {
  const file = env.NODE_EXTRA_CA_CERTS;
  if (file === undefined) return;
  if (file !== '' && (env[DEFERRED_CA_VAR] ?? '') === '') env[DEFERRED_CA_VAR] = file;
  delete env.NODE_EXTRA_CA_CERTS;
}

/** The extra CA file the user asked Node to trust (deferred or not), or undefined. */
export function extraCaFile(env: NodeJS.ProcessEnv): string | undefined {
  const file = env[DEFERRED_CA_VAR] || env.NODE_EXTRA_CA_CERTS;
  return file === undefined || file === '' ? undefined : file;
}

/** `env` for an external program: NODE_EXTRA_CA_CERTS as the user set it, without the deferred name. */
export function externalProgramEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const file = extraCaFile(env);
  const out: NodeJS.ProcessEnv = { ...env };
  delete out[DEFERRED_CA_VAR];
  if (file !== undefined) out.NODE_EXTRA_CA_CERTS = file;
  return out;
}

/**
 * The PEM text of the extra CA file (see {@link extraCaFile}), or undefined without one. A file that
 * cannot be read is ignored, as Node ignores it (with a warning) when it loads NODE_EXTRA_CA_CERTS itself.
 */
export async function readExtraCaFile(file: string | undefined): Promise<string | undefined> {
  return file === undefined ? undefined : readFile(file, 'utf8').catch(() => undefined);
}

/**
 * The `ca` option of a TLS connection that trusts `extraPems` besides Node's roots (a `ca` replaces
 * Node's list, so the roots are repeated); undefined, Node's defaults, when there are none.
 */
export async function withNodeRoots(extraPems: readonly string[]): Promise<string[] | undefined> {
  if (extraPems.length === 0) return undefined;
  const { rootCertificates } = await import('node:tls');
  return [...rootCertificates, ...extraPems];
}
