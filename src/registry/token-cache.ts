import type { AuthChallenge, CachedToken } from './auth.js';

interface Entry {
  readonly scopes: readonly string[];
  readonly token: CachedToken;
}

/** `type:name:actions` split; the name may hold colons (`registry:catalog:*` has none, repository names none either). */
function splitScope(scope: string): { resource: string; actions: Set<string> } {
  const at = scope.lastIndexOf(':');
  return at === -1 ? { resource: scope, actions: new Set() } : { resource: scope.slice(0, at), actions: new Set(scope.slice(at + 1).split(',')) };
}

/** True when a token asked for `held` scopes also serves a request needing `wanted` (same resources, at least those actions). */
export function scopesCover(held: readonly string[], wanted: readonly string[]): boolean {
  const have = held.map(splitScope);
  return wanted.every((w) => {
    const need = splitScope(w);
    return have.some((h) => h.resource === need.resource && (h.actions.has('*') || [...need.actions].every((a) => h.actions.has(a))));
  });
}

/**
 * Bearer tokens of one client session, in memory only (never written anywhere), per token
 * service (realm and service) and the scopes they were asked for. A token asked for wider scopes
 * (`repository:a:pull,push`) serves narrower requests (`repository:a:pull`), so a push fetches
 * one token, not one per action set.
 */
export class TokenCache {
  private readonly byService = new Map<string, Entry[]>();

  private keyOf(ch: AuthChallenge): string {
    return `${ch.realm ?? ''}|${ch.service ?? ''}`;
  }

  /** An unexpired token of `ch`'s service asked for scopes covering `scopes`, or undefined. */
  find(ch: AuthChallenge, scopes: readonly string[], now: number): CachedToken | undefined {
    const entries = this.byService.get(this.keyOf(ch)) ?? [];
    return entries.find((e) => e.token.expiresAt > now && scopesCover(e.scopes, scopes))?.token;
  }

  /** Remembers `token`, asked for `scopes` (the newest first). */
  add(ch: AuthChallenge, scopes: readonly string[], token: CachedToken): void {
    const key = this.keyOf(ch);
    this.byService.set(key, [{ scopes: [...scopes], token }, ...(this.byService.get(key) ?? [])]);
  }

  /** Forgets every entry holding the token `value` (it was refused: expired, revoked or short of scope). */
  drop(value: string): void {
    for (const [key, entries] of this.byService) this.byService.set(key, entries.filter((e) => e.token.token !== value));
  }
}
