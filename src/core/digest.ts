import { createHash } from 'node:crypto';
import { TsbuildError } from './errors.js';

declare const digestBrand: unique symbol;

/** A content digest `sha256:<64 lowercase hex>`; obtain one only through {@link parseDigest} or {@link sha256Of}. */
export type Digest = string & { readonly [digestBrand]: true };

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** True when `value` is a well-formed sha256 digest string. */
export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

/** Parses a digest string; throws `CORE_BAD_DIGEST` when it is not `sha256:<64 hex>`. */
export function parseDigest(value: string): Digest {
  if (!isDigest(value)) {
    throw new TsbuildError('CORE_BAD_DIGEST', `invalid digest "${value.slice(0, 80)}": expected sha256:<64 hex digits>`);
  }
  return value;
}

/** Returns the sha256 digest of a string (UTF-8) or bytes, computed in memory (for small documents only). */
export function sha256Of(data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
}

/** Returns the 64-hex part of a digest (the file name under blobs/sha256/). */
export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}
