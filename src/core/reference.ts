import { isDigest, type Digest } from './digest.js';
import { TsbuildError } from './errors.js';

/** The registry host that short names belong to (what `busybox` means). */
export const DEFAULT_DOMAIN = 'docker.io';
/** The repository namespace of official images on the default domain. */
export const OFFICIAL_NAMESPACE = 'library';
/** The tag added when a reference has neither tag nor digest. */
export const DEFAULT_TAG = 'latest';

/** A normalised image reference: `domain/path[:tag][@digest]`, e.g. `docker.io/library/busybox:latest`. */
export interface ImageReference {
  /** Registry host, with port when given (`docker.io`, `localhost:5000`, `[::1]:5000`). */
  readonly domain: string;
  /** Repository path inside the registry (`library/busybox`, `a/b`). */
  readonly path: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

// The grammar of github.com/distribution/reference.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

function bad(text: string, why: string): TsbuildError {
  return new TsbuildError('CORE_BAD_REFERENCE', `invalid reference "${text.slice(0, 300)}": ${why}`);
}

/** True when the first path component names a registry host rather than a namespace (docker's rule). */
function isDomainComponent(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || component !== component.toLowerCase();
}

/**
 * Parses and normalises an image reference the way docker does: `busybox` ->
 * `docker.io/library/busybox:latest`, `host:5000/a/b:tag`, `name@sha256:...`, `name:tag@sha256:...`.
 * The tag defaults to `latest` only when there is no digest. Throws `CORE_BAD_REFERENCE`.
 */
export function parseReference(text: string): ImageReference {
  if (text === '') throw bad(text, 'empty');
  let rest = text;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw bad(text, 'the digest must be sha256:<64 lowercase hex digits>');
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(text, `invalid tag "${tag}" (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`);
  }
  const parts = rest.split('/');
  let domain = DEFAULT_DOMAIN;
  if (parts.length > 1 && isDomainComponent(parts[0] as string)) {
    domain = parts.shift() as string;
    if (!DOMAIN.test(domain)) throw bad(text, `invalid registry host "${domain}"`);
  }
  if (domain === 'index.docker.io' || domain === 'registry-1.docker.io') domain = DEFAULT_DOMAIN;
  for (const p of parts) {
    if (p !== p.toLowerCase()) throw bad(text, 'repository name must be lowercase');
    if (!PATH_COMPONENT.test(p)) throw bad(text, `invalid repository name component "${p}"`);
  }
  if (domain === DEFAULT_DOMAIN && parts.length === 1) parts.unshift(OFFICIAL_NAMESPACE);
  const path = parts.join('/');
  if (domain.length + 1 + path.length > MAX_NAME) throw bad(text, `repository name longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return { domain, path, ...(tag === undefined ? {} : { tag }), ...(digest === undefined ? {} : { digest }) };
}

/** True when `text` parses as an image reference. */
export function isReference(text: string): boolean {
  try {
    parseReference(text);
    return true;
  } catch {
    return false;
  }
}

/** Formats the full normalised form `domain/path[:tag][@digest]` (the store's ref name). */
export function formatReference(ref: ImageReference): string {
  return `${repositoryOf(ref)}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/** The repository part `domain/path` (no tag, no digest). */
export function repositoryOf(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The short repository name docker shows: `busybox`, `user/app`, `localhost:5000/a/b`. */
export function familiarRepository(ref: ImageReference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return repositoryOf(ref);
  return ref.path.startsWith(`${OFFICIAL_NAMESPACE}/`) ? ref.path.slice(OFFICIAL_NAMESPACE.length + 1) : ref.path;
}

/** The short form docker prints: `busybox:latest`, `localhost:5000/a/b:v1`, `alpine@sha256:...`. */
export function familiarReference(ref: ImageReference): string {
  return `${familiarRepository(ref)}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/** Returns `ref` with `tag` replaced (and any digest dropped). Throws `CORE_BAD_REFERENCE` for a bad tag. */
export function withTag(ref: ImageReference, tag: string): ImageReference {
  if (!TAG.test(tag)) throw bad(tag, 'invalid tag');
  return { domain: ref.domain, path: ref.path, tag };
}

/** True when `text` is a valid tag on its own (e.g. `latest`, `v1.2`). */
export function isTag(text: string): boolean {
  return TAG.test(text);
}
