import { createPrivateKey, createPublicKey, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { TsbuildError } from '../core/index.js';

/**
 * SSH private keys for `--ssh ID=KEYFILE` (as buildx): OpenSSH's own format (`BEGIN OPENSSH PRIVATE
 * KEY`, what ssh-keygen writes) and PEM (PKCS#1/PKCS#8/SEC1), for ed25519, RSA and ECDSA P-256/384/521.
 * Each key gives its public blob (the SSH wire form agents list) and signs as an ssh-agent does.
 * Passphrase-protected keys are refused (load them into an ssh-agent instead).
 */
export interface SshKey {
  /** The public key blob in SSH wire format (`string type, ...`). */
  readonly blob: Buffer;
  readonly comment: string;
  /** Signs `data` as SSH_AGENTC_SIGN_REQUEST asks (`flags`: 2 = rsa-sha2-256, 4 = rsa-sha2-512); returns the SSH signature blob. */
  sign(data: Buffer, flags: number): Buffer;
}

const CURVES: Readonly<Record<string, { readonly jwk: string; readonly hash: string; readonly bytes: number }>> = {
  nistp256: { jwk: 'P-256', hash: 'sha256', bytes: 32 },
  nistp384: { jwk: 'P-384', hash: 'sha384', bytes: 48 },
  nistp521: { jwk: 'P-521', hash: 'sha512', bytes: 66 },
};
const JWK_CURVES: Readonly<Record<string, string>> = { 'P-256': 'nistp256', 'P-384': 'nistp384', 'P-521': 'nistp521' };

/** Parses a private key file's text; `name` is used in errors. Throws CLI_BAD_VALUE. */
export function parseSshPrivateKey(text: string, name: string): SshKey {
  const bad = (why: string): TsbuildError => new TsbuildError('CLI_BAD_VALUE', `--ssh: ${name}: ${why}`, { exitCode: 125 });
  const openssh = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (openssh !== null) return fromOpenSsh(Buffer.from((openssh[1] as string).replace(/\s+/g, ''), 'base64'), name, bad);
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) throw encrypted(name);
  if (!/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(text)) throw bad('not a private key (expected an OpenSSH or PEM private key file, or an ssh-agent socket)');
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (err) {
    throw bad(`cannot read the key: ${(err as Error).message}`);
  }
  return fromKeyObject(key, '', bad);
}

function encrypted(name: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', `--ssh: ${name} is protected by a passphrase`, {
    exitCode: 125, hint: 'load it into an ssh-agent (ssh-add) and pass the agent: --ssh default',
  });
}

/** A reader of SSH wire data (RFC 4251 §5). */
class Wire {
  #off = 0;
  constructor(private readonly buf: Buffer, private readonly bad: (why: string) => TsbuildError) {}
  get rest(): number {
    return this.buf.length - this.#off;
  }
  u32(): number {
    if (this.rest < 4) throw this.bad('truncated key data');
    const v = this.buf.readUInt32BE(this.#off);
    this.#off += 4;
    return v;
  }
  bytes(n: number): Buffer {
    if (n > this.rest) throw this.bad('truncated key data');
    const b = this.buf.subarray(this.#off, this.#off + n);
    this.#off += n;
    return b;
  }
  string(): Buffer {
    return this.bytes(this.u32());
  }
  text(): string {
    return this.string().toString('utf8');
  }
}

/** SSH `string`: a length and the bytes. */
export function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

/** SSH `mpint` from unsigned big-endian magnitude bytes. */
function mpint(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return sshString(m.length > 0 && (m[0] as number) & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}

const b64u = (b: Buffer): string => b.toString('base64url');
const unsigned = (mp: Buffer): Buffer => (mp.length > 0 && mp[0] === 0 ? mp.subarray(1) : mp);
const big = (b: Buffer): bigint => (b.length === 0 ? 0n : BigInt(`0x${b.toString('hex')}`));
function bigBytes(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  return Buffer.from(hex, 'hex');
}

/** openssh-key-v1 (PROTOCOL.key): unencrypted keys only. */
function fromOpenSsh(data: Buffer, name: string, bad: (why: string) => TsbuildError): SshKey {
  const magic = Buffer.from('openssh-key-v1\0');
  if (!data.subarray(0, magic.length).equals(magic)) throw bad('not an openssh-key-v1 key');
  const w = new Wire(data.subarray(magic.length), bad);
  const cipher = w.text();
  w.text(); // kdf name
  w.string(); // kdf options
  if (cipher !== 'none') throw encrypted(name);
  if (w.u32() !== 1) throw bad('key files with several keys are not supported');
  const publicBlob = Buffer.from(w.string());
  const p = new Wire(w.string(), bad);
  if (p.u32() !== p.u32()) throw bad('damaged key (check words differ)');
  const type = p.text();
  let jwk: JsonWebKey;
  if (type === 'ssh-ed25519') {
    const pub = p.string();
    const priv = p.string();
    if (pub.length !== 32 || priv.length !== 64) throw bad('bad ed25519 key lengths');
    jwk = { kty: 'OKP', crv: 'Ed25519', x: b64u(pub), d: b64u(priv.subarray(0, 32)) };
  } else if (type === 'ssh-rsa') {
    const [n, e, d, iqmp, pp, q] = [p.string(), p.string(), p.string(), p.string(), p.string(), p.string()].map(unsigned) as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer];
    const dv = big(d);
    jwk = {
      kty: 'RSA', n: b64u(n), e: b64u(e), d: b64u(d), p: b64u(pp), q: b64u(q), qi: b64u(iqmp),
      dp: b64u(bigBytes(dv % (big(pp) - 1n))), dq: b64u(bigBytes(dv % (big(q) - 1n))),
    };
  } else if (type.startsWith('ecdsa-sha2-')) {
    const curve = CURVES[p.text()];
    if (curve === undefined) throw bad(`unsupported ECDSA curve in ${type}`);
    const point = p.string();
    const d = unsigned(p.string());
    if (point[0] !== 4 || point.length !== 1 + 2 * curve.bytes) throw bad('bad ECDSA public point');
    const pad = (b: Buffer): Buffer => Buffer.concat([Buffer.alloc(Math.max(0, curve.bytes - b.length)), b]);
    jwk = { kty: 'EC', crv: curve.jwk, x: b64u(point.subarray(1, 1 + curve.bytes)), y: b64u(point.subarray(1 + curve.bytes)), d: b64u(pad(d)) };
  } else {
    throw bad(`unsupported key type ${type}`);
  }
  const comment = p.rest >= 4 ? p.text() : '';
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw bad(`cannot use the ${type} key: ${(err as Error).message}`);
  }
  const made = fromKeyObject(key, comment, bad);
  if (!made.blob.equals(publicBlob)) throw bad('the public key does not match the private key');
  return made;
}

/** The SSH public blob and signer of a private KeyObject. */
function fromKeyObject(key: KeyObject, comment: string, bad: (why: string) => TsbuildError): SshKey {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  const buf = (s: string | undefined): Buffer => Buffer.from(s ?? '', 'base64url');
  if (key.asymmetricKeyType === 'ed25519') {
    return {
      blob: Buffer.concat([sshString('ssh-ed25519'), sshString(buf(jwk.x))]),
      comment,
      sign: (data) => Buffer.concat([sshString('ssh-ed25519'), sshString(sign(null, data, key))]),
    };
  }
  if (key.asymmetricKeyType === 'rsa') {
    return {
      blob: Buffer.concat([sshString('ssh-rsa'), mpint(buf(jwk.e)), mpint(buf(jwk.n))]),
      comment,
      sign: (data, flags) => {
        const [alg, hash] = flags & 4 ? ['rsa-sha2-512', 'sha512'] : flags & 2 ? ['rsa-sha2-256', 'sha256'] : ['ssh-rsa', 'sha1'];
        return Buffer.concat([sshString(alg), sshString(sign(hash, data, key))]);
      },
    };
  }
  const curveName = key.asymmetricKeyType === 'ec' ? JWK_CURVES[jwk.crv ?? ''] : undefined;
  const curve = curveName === undefined ? undefined : CURVES[curveName];
  if (curveName === undefined || curve === undefined) throw bad(`unsupported key type ${key.asymmetricKeyType ?? 'unknown'}${jwk.crv === undefined ? '' : ` (${jwk.crv})`}`);
  const type = `ecdsa-sha2-${curveName}`;
  const point = Buffer.concat([Buffer.from([4]), buf(jwk.x), buf(jwk.y)]);
  return {
    blob: Buffer.concat([sshString(type), sshString(curveName), sshString(point)]),
    comment,
    sign: (data) => {
      const rs = sign(curve.hash, data, { key, dsaEncoding: 'ieee-p1363' });
      const half = rs.length / 2;
      return Buffer.concat([sshString(type), sshString(Buffer.concat([mpint(rs.subarray(0, half)), mpint(rs.subarray(half))]))]);
    },
  };
}
