import { DEFAULT_DOMAIN } from '../core/index.js';

/** The API host of Docker Hub (what `docker.io` means on the wire). */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
/** The key docker uses for Docker Hub in config.json `auths`. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';

/** The host:port to talk to for a reference domain (`docker.io` -> `registry-1.docker.io`). */
export function apiHostOf(domain: string): string {
  return domain === DEFAULT_DOMAIN || domain === 'index.docker.io' ? DOCKER_HUB_API_HOST : domain;
}

/** The host name without port and brackets (`[::1]:5000` -> `::1`). */
export function hostNameOf(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/**
 * True when plain HTTP may be used for `host`: localhost, 127.0.0.0/8, ::1, or a host listed
 * (with or without port) in `insecure`. // SECURITY: everything else is HTTPS only.
 */
export function isPlainHttpAllowed(host: string, insecure: readonly string[] = []): boolean {
  if (isLoopbackHost(host)) return true;
  const name = hostNameOf(host).toLowerCase();
  return insecure.some((h) => h.toLowerCase() === host.toLowerCase() || h.toLowerCase() === name);
}

/** True for `host:port` and `[v6]:port`: a registry address that names its port. */
export function hasExplicitPort(host: string): boolean {
  return /^(\[[^\]]*\]|[^:]*):\d+$/.test(host);
}

/** True for localhost, 127.0.0.0/8 and ::1 (with or without port): traffic that never leaves this machine. */
export function isLoopbackHost(host: string): boolean {
  const name = hostNameOf(host).toLowerCase();
  return name === 'localhost' || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** Normalises what a user typed for login/logout (`https://host/`, `docker.io`) to a registry domain. */
export function normalizeRegistryArg(text: string): string {
  let s = text.trim().replace(/^[a-z]+:\/\//i, '');
  s = s.replace(/\/.*$/, '');
  if (s === 'index.docker.io' || s === 'registry-1.docker.io' || s === '') return DEFAULT_DOMAIN;
  return s;
}
