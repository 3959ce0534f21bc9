import { TsbuildError } from '../core/index.js';
import type { Credentials } from './credentials.js';

/** A parsed `WWW-Authenticate` challenge. */
export interface AuthChallenge {
  readonly scheme: 'bearer' | 'basic';
  readonly realm?: string;
  readonly service?: string;
  /** The scope the registry asked for (in insufficient_scope errors). */
  readonly scope?: string;
}

/** Parses the first Bearer or Basic challenge of a `WWW-Authenticate` header; undefined for others. */
export function parseChallenge(header: string | readonly string[] | undefined): AuthChallenge | undefined {
  const values = header === undefined ? [] : typeof header === 'string' ? [header] : header;
  for (const value of values) {
    const m = /^\s*(bearer|basic)\b(.*)$/is.exec(value);
    if (m === null) continue;
    const scheme = (m[1] as string).toLowerCase() as 'bearer' | 'basic';
    const params: Record<string, string> = {};
    for (const p of (m[2] as string).matchAll(/([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
      params[(p[1] as string).toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
    }
    return {
      scheme,
      ...(params.realm === undefined ? {} : { realm: params.realm }),
      ...(params.service === undefined ? {} : { service: params.service }),
      ...(params.scope === undefined ? {} : { scope: params.scope }),
    };
  }
  return undefined;
}

/** The `Authorization` value of Basic credentials. // SECURITY: the result is a secret. */
export function basicAuthorization(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username ?? ''}:${creds.password ?? ''}`, 'utf8').toString('base64')}`;
}

/** The repository scope docker asks for: `repository:NAME:ACTIONS`. */
export function repositoryScope(path: string, actions: 'pull' | 'pull,push'): string {
  return `repository:${path}:${actions}`;
}

/** A bearer token and when it stops being usable (ms since the epoch). */
export interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

/** The answer of a token server (docker's token spec and the OAuth2 variant). */
export interface TokenResponse {
  readonly token?: string;
  readonly access_token?: string;
  readonly expires_in?: number;
  readonly issued_at?: string;
}

/** Reads the token and its expiry (default lifetime 60 s, as the spec says) from a token-server answer. Throws `REG_BAD_TOKEN`. */
export function tokenFromResponse(doc: TokenResponse, now: number): CachedToken {
  const token = typeof doc.token === 'string' && doc.token !== '' ? doc.token : doc.access_token;
  if (typeof token !== 'string' || token === '') throw new TsbuildError('REG_BAD_TOKEN', 'the token server answered without a token');
  const lifetime = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60;
  const issued = typeof doc.issued_at === 'string' ? Date.parse(doc.issued_at) : Number.NaN;
  const start = Number.isNaN(issued) || issued > now ? now : issued;
  // Renew 10 s early so a token does not expire in flight.
  return { token, expiresAt: start + Math.max(1, lifetime - 10) * 1000 };
}
