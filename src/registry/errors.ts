import { TsbuildError, type ErrorCode } from '../core/index.js';

/** One entry of the distribution spec's error body `{"errors":[{code,message,detail}]}`. */
export interface RegistryErrorEntry {
  readonly code: string;
  readonly message: string;
}

/** Largest error body read from a registry (the rest is discarded). */
export const MAX_ERROR_BODY = 64 * 1024;

/** Parses a registry error body; unknown shapes give an empty list. */
export function parseErrorBody(text: string): RegistryErrorEntry[] {
  try {
    const doc = JSON.parse(text) as { errors?: unknown };
    if (!Array.isArray(doc.errors)) return [];
    return doc.errors
      .filter((e): e is { code?: unknown; message?: unknown } => e !== null && typeof e === 'object')
      .map((e) => ({ code: typeof e.code === 'string' ? e.code : 'UNKNOWN', message: typeof e.message === 'string' ? e.message : '' }));
  } catch {
    return [];
  }
}

const STATUS_CODES: Readonly<Record<number, string>> = {
  400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 403: 'DENIED', 404: 'NOT_FOUND', 405: 'UNSUPPORTED', 409: 'CONFLICT',
  413: 'TOO_LARGE', 416: 'RANGE_INVALID', 429: 'TOOMANYREQUESTS',
};

/**
 * Builds the `REG_*` error for a failed registry response: the code is the registry's own error
 * code (`REG_MANIFEST_UNKNOWN`, `REG_UNAUTHORIZED`, `REG_DENIED`...) or derived from the status,
 * and the message quotes the registry's code and message. `what` names the operation.
 */
export function responseError(what: string, status: number, bodyText: string, hint?: string): TsbuildError {
  const entries = parseErrorBody(bodyText);
  const first = entries[0];
  const name = (first?.code ?? STATUS_CODES[status] ?? (status >= 500 ? 'SERVER_ERROR' : 'BAD_RESPONSE')).toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  const quoted = entries.length > 0
    ? entries.map((e) => `${e.code}: ${e.message}`).join('; ')
    : bodyText.trim().slice(0, 200);
  const code = `REG_${name}` as ErrorCode;
  const h = hint ?? (name === 'UNAUTHORIZED' ? 'check the credentials (tsbuild login HOST)' : name === 'DENIED' ? 'the credentials lack access to this repository' : undefined);
  return new TsbuildError(code, redact(`${what}: registry answered ${status}${quoted === '' ? '' : ` (${quoted})`}`), h === undefined ? {} : { hint: h });
}

// SECURITY: patterns of secrets that may appear in text we echo (headers, JSON bodies, URLs).
const SECRET_PATTERNS: readonly RegExp[] = [
  /\b(basic|bearer)\s+[A-Za-z0-9._~+/=-]{8,}/gi,
  /("?(?:token|access_token|refresh_token|identitytoken|password|auth|secret)"?\s*[:=]\s*)"[^"]*"/gi,
  /([?&](?:token|access_token|password|refresh_token)=)[^&\s]+/gi,
];

/** Replaces credentials, tokens and Authorization values in `text` with `<redacted>`. */
export function redact(text: string): string {
  let out = text;
  for (const re of SECRET_PATTERNS) {
    out = out.replace(re, (m, prefix: string | undefined) => {
      if (typeof prefix === 'string' && m.startsWith(prefix)) {
        return /^(basic|bearer)$/i.test(prefix) ? `${prefix} <redacted>` : `${prefix}<redacted>`;
      }
      return '<redacted>';
    });
  }
  return out;
}

/** Network error codes of Node and of the HTTP pool (http.ts) worth a retry (resets, timeouts; not refused connections: nothing listens). */
const RETRYABLE_NET = new Set([
  'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'CONNECT_TIMEOUT', 'HEADERS_TIMEOUT', 'BODY_TIMEOUT',
]);

/** The error code of a (possibly wrapped) network error. */
export function netCodeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e !== null && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && !code.startsWith('REG_')) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** True when a network error is transient (a retry may succeed). */
export function isRetryableNetError(err: unknown): boolean {
  const code = netCodeOf(err);
  return code !== undefined && RETRYABLE_NET.has(code);
}

/** Wraps a network failure talking to `host` in a clear `REG_*` error. */
export function networkError(host: string, what: string, err: unknown): TsbuildError {
  if (err instanceof TsbuildError) return err;
  const code = netCodeOf(err) ?? '';
  const msg = redact((err as Error).message ?? String(err));
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'CONNECT_TIMEOUT') {
    return new TsbuildError('REG_UNREACHABLE', `${what}: cannot reach registry ${host} (${code})`, { cause: err, hint: 'check the host name and port, and that the registry is running' });
  }
  if (code === 'BODY_TIMEOUT' || code === 'HEADERS_TIMEOUT' || code === 'ETIMEDOUT') {
    return new TsbuildError('REG_TIMEOUT', `${what}: registry ${host} stopped answering (${code})`, { cause: err });
  }
  if (/certificate|SSL|TLS|self.signed|ERR_TLS|CERT_/i.test(`${code} ${msg}`)) {
    return new TsbuildError('REG_TLS', `${what}: TLS with ${host} failed: ${msg}`, {
      cause: err,
      hint: `trust the registry's CA (/etc/docker/certs.d/${host}/ca.crt or --tls-ca) or use --insecure-registry ${host}`,
    });
  }
  return new TsbuildError('REG_NETWORK', `${what}: connection to ${host} failed: ${code === '' ? '' : `${code} `}${msg}`, { cause: err });
}
