import type { Readable } from 'node:stream';
import { isDigest, MediaType, sha256Of, TsbuildError, type Digest } from '../core/index.js';
import { repositoryScope } from './auth.js';
import { dumpBody, failResponse, headerOf, RegistryTransport, type RegistryResponse, type TransportOptions } from './transport.js';

/** Largest manifest or index accepted (the distribution spec's limit). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Every manifest and index media type a pull accepts. */
export const MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.dockerManifest].join(', ');

/** A repository on a registry: API host and repository path. */
export interface RepositoryLocation {
  /** API host (`registry-1.docker.io`, `127.0.0.1:5000`). */
  readonly host: string;
  readonly path: string;
  /**
   * Actions every request to this repository asks a token for: `pull,push` for a push session, so
   * that one token serves its reads and writes (default: what each request needs).
   */
  readonly actions?: 'pull' | 'pull,push';
}

const MANIFEST_TYPES: readonly string[] = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifest, MediaType.dockerManifestList];

/**
 * The media type of a manifest or index: its own `mediaType` field, else a manifest Content-Type,
 * else guessed from its shape (OCI index or manifest). Throws `REG_UNSUPPORTED_MEDIA_TYPE` for
 * anything else (schema 1). `op` names the operation in the error.
 */
export function manifestMediaTypeOf(doc: { mediaType?: unknown; manifests?: unknown }, contentType: string | undefined, op: string): string {
  let mediaType = (contentType ?? '').split(';')[0]?.trim() ?? '';
  if (typeof doc.mediaType === 'string') mediaType = doc.mediaType;
  else if (!MANIFEST_TYPES.includes(mediaType)) mediaType = Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest;
  if (!MANIFEST_TYPES.includes(mediaType)) {
    throw new TsbuildError('REG_UNSUPPORTED_MEDIA_TYPE', `${op}: unsupported manifest media type "${mediaType.slice(0, 100)}"`, { hint: 'schema 1 manifests are not supported' });
  }
  return mediaType;
}

/** A manifest or index as fetched: exact bytes, verified digest and media type. */
export interface FetchedManifest {
  readonly bytes: Buffer;
  readonly digest: Digest;
  readonly mediaType: string;
}

/** Where a started upload continues (absolute URL) and from which offset. */
export interface UploadSession {
  readonly location: string;
  readonly offset: number;
  /** `OCI-Chunk-Min-Length` of the registry, if it told one. */
  readonly minChunk?: number;
}

function what(repo: RepositoryLocation, op: string): string {
  return `${op} ${repo.host}/${repo.path}`;
}

/**
 * The distribution API of one registry client session (manifests, blobs, uploads) over a
 * {@link RegistryTransport}. Errors are `REG_*` quoting the registry's own error codes.
 */
export class HttpRegistryClient {
  readonly transport: RegistryTransport;

  constructor(options: TransportOptions | RegistryTransport = {}) {
    this.transport = options instanceof RegistryTransport ? options : new RegistryTransport(options);
  }

  /** Closes the connections. */
  close(): Promise<void> {
    return this.transport.close();
  }

  /** GET /v2/ with the auth flow (login's check). Throws `REG_UNAUTHORIZED` for wrong credentials. */
  async ping(host: string, signal?: AbortSignal): Promise<void> {
    const res = await this.transport.send({ method: 'GET', host, path: '/v2/', scopes: [], ...(signal === undefined ? {} : { signal }) });
    if (res.status !== 200) await failResponse(res, `logging in to ${host}`);
    await dumpBody(res);
  }

  /**
   * Fetches a manifest or index by tag or digest, verified against the requested digest (or the
   * registry's Docker-Content-Digest) and at most 4 MiB. Throws `REG_MANIFEST_UNKNOWN`,
   * `REG_DIGEST_MISMATCH`, `REG_MANIFEST_TOO_LARGE`, `REG_UNSUPPORTED_MEDIA_TYPE`.
   */
  async getManifest(repo: RepositoryLocation, reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const res = await this.transport.send({
      method: 'GET', host: repo.host, path: `/v2/${repo.path}/manifests/${reference}`, scopes: [repositoryScope(repo.path, repo.actions ?? 'pull')],
      headers: { accept: MANIFEST_ACCEPT }, followRedirects: true, ...(signal === undefined ? {} : { signal }),
    });
    const op = what(repo, `fetching manifest ${reference} of`);
    if (res.status !== 200) await failResponse(res, op);
    const bytes = await readLimited(res, MAX_MANIFEST_BYTES, op);
    const digest = sha256Of(bytes);
    const expected = isDigest(reference) ? reference : headerOf(res, 'docker-content-digest');
    if (expected !== undefined && isDigest(expected) && expected !== digest) {
      throw new TsbuildError('REG_DIGEST_MISMATCH', `${op}: content digest ${digest} does not match ${expected}`);
    }
    let doc: { mediaType?: unknown; manifests?: unknown };
    try {
      doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
    } catch {
      throw new TsbuildError('REG_BAD_MANIFEST', `${op}: the manifest is not JSON`);
    }
    const mediaType = manifestMediaTypeOf(doc, headerOf(res, 'content-type'), op);
    return { bytes, digest, mediaType };
  }

  /**
   * HEAD of a manifest by tag or digest: the digest (`Docker-Content-Digest`) and Content-Type the
   * registry reports, or undefined when it does not have it or names no digest (any status but
   * 200: the caller's GET or PUT reports errors with the registry's error body).
   */
  async manifestDigest(repo: RepositoryLocation, reference: string, signal?: AbortSignal): Promise<{ digest: Digest; contentType: string | undefined } | undefined> {
    const res = await this.transport.send({
      method: 'HEAD', host: repo.host, path: `/v2/${repo.path}/manifests/${reference}`, scopes: [repositoryScope(repo.path, repo.actions ?? 'pull')],
      headers: { accept: MANIFEST_ACCEPT }, followRedirects: true, ...(signal === undefined ? {} : { signal }),
    });
    await dumpBody(res);
    const digest = headerOf(res, 'docker-content-digest');
    if (res.status !== 200 || digest === undefined || !isDigest(digest)) return undefined;
    return { digest, contentType: headerOf(res, 'content-type')?.split(';')[0]?.trim() };
  }

  /** Uploads a manifest under `reference` (tag or digest). Resolves to the digest the registry reports. */
  async putManifest(repo: RepositoryLocation, reference: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<Digest> {
    const res = await this.transport.send({
      method: 'PUT', host: repo.host, path: `/v2/${repo.path}/manifests/${reference}`, scopes: [repositoryScope(repo.path, 'pull,push')],
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) }, body: () => bytes, ...(signal === undefined ? {} : { signal }),
    });
    if (res.status !== 201 && res.status !== 200) await failResponse(res, what(repo, `uploading manifest ${reference} to`));
    await dumpBody(res);
    const d = headerOf(res, 'docker-content-digest');
    const digest = sha256Of(bytes);
    if (d !== undefined && isDigest(d) && d !== digest) {
      throw new TsbuildError('REG_DIGEST_MISMATCH', `${what(repo, 'uploading a manifest to')}: registry reports digest ${d}, expected ${digest}`);
    }
    return digest;
  }

  /** HEAD of a blob: its size when the repository has it, undefined when not. */
  async blobSize(repo: RepositoryLocation, digest: Digest, signal?: AbortSignal): Promise<number | undefined> {
    const res = await this.transport.send({
      method: 'HEAD', host: repo.host, path: `/v2/${repo.path}/blobs/${digest}`, scopes: [repositoryScope(repo.path, repo.actions ?? 'pull')],
      followRedirects: true, ...(signal === undefined ? {} : { signal }),
    });
    await dumpBody(res);
    if (res.status === 200) return Number(headerOf(res, 'content-length') ?? '-1');
    if (res.status === 404) return undefined;
    return failResponse(res, what(repo, `checking blob ${digest} in`));
  }

  /**
   * Opens a blob download from byte `offset` (Range). Resolves to the body stream (the caller
   * consumes or destroys it) and the offset the server actually starts at (0 when it ignored Range).
   */
  async openBlob(repo: RepositoryLocation, digest: Digest, offset = 0, signal?: AbortSignal): Promise<{ body: Readable; start: number; length: number | undefined }> {
    const res = await this.transport.send({
      method: 'GET', host: repo.host, path: `/v2/${repo.path}/blobs/${digest}`, scopes: [repositoryScope(repo.path, repo.actions ?? 'pull')],
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {}, followRedirects: true, ...(signal === undefined ? {} : { signal }),
    });
    if (res.status === 206) {
      const m = /^bytes (\d+)-/.exec(headerOf(res, 'content-range') ?? '');
      const start = m === null ? 0 : Number(m[1]);
      return { body: res.body, start, length: lengthOf(res) };
    }
    if (res.status !== 200) await failResponse(res, what(repo, `downloading blob ${digest} from`));
    return { body: res.body, start: 0, length: lengthOf(res) };
  }

  private async absolute(host: string, location: string): Promise<string> {
    return new URL(location, `${await this.transport.schemeOf(host)}://${host}/`).toString();
  }

  /**
   * POST an upload; with `mountFrom`, asks to mount `digest` from that repository first.
   * Resolves to `mounted` or a session to upload into.
   */
  async startUpload(repo: RepositoryLocation, mount?: { digest: Digest; from: string }, signal?: AbortSignal): Promise<{ mounted: true } | { mounted: false; session: UploadSession }> {
    const query = mount === undefined ? '' : `?mount=${mount.digest}&from=${encodeURIComponent(mount.from)}`;
    const scopes = [repositoryScope(repo.path, 'pull,push'), ...(mount === undefined ? [] : [repositoryScope(mount.from, 'pull')])];
    const res = await this.transport.send({
      method: 'POST', host: repo.host, path: `/v2/${repo.path}/blobs/uploads/${query}`, scopes,
      headers: { 'content-length': '0' }, ...(signal === undefined ? {} : { signal }),
    });
    if (res.status === 201 && mount !== undefined) {
      await dumpBody(res);
      return { mounted: true };
    }
    if (res.status !== 202) await failResponse(res, what(repo, 'starting an upload to'));
    await dumpBody(res);
    return { mounted: false, session: await this.sessionOf(repo, res, 0) };
  }

  /**
   * The session a POST or PATCH answer describes. `offset` is what the client sent so far: the
   * registry's `Range: 0-N` cannot tell 0 bytes from 1 (distribution answers `0-0` to a new upload),
   * so a reported end that disagrees with a non-empty upload is an error.
   */
  private async sessionOf(repo: RepositoryLocation, res: RegistryResponse, offset: number): Promise<UploadSession> {
    const location = headerOf(res, 'location');
    if (location === undefined) throw new TsbuildError('REG_BAD_RESPONSE', `${what(repo, 'uploading to')}: the registry gave no upload Location`);
    const m = /^(?:bytes=)?0-(\d+)$/.exec(headerOf(res, 'range') ?? '');
    if (m !== null && offset > 0 && Number(m[1]) + 1 !== offset) {
      throw new TsbuildError('REG_BAD_RESPONSE', `${what(repo, 'uploading to')}: the registry holds ${Number(m[1]) + 1} bytes of the upload, ${offset} were sent`);
    }
    const min = Number(headerOf(res, 'oci-chunk-min-length') ?? 'NaN');
    return { location: await this.absolute(repo.host, location), offset, ...(Number.isFinite(min) ? { minChunk: min } : {}) };
  }

  /**
   * Asks where an earlier upload stands (GET on its URL, for resuming after a restart). Resolves
   * to the session to continue, or undefined when the registry no longer knows the upload.
   */
  async uploadStatus(repo: RepositoryLocation, location: string, signal?: AbortSignal): Promise<UploadSession | undefined> {
    const res = await this.transport.send({
      method: 'GET', host: repo.host, path: location, scopes: [repositoryScope(repo.path, 'pull,push')], ...(signal === undefined ? {} : { signal }),
    });
    await dumpBody(res);
    if (res.status !== 204 && res.status !== 200) return undefined;
    // Distribution answers "0-0" for an empty upload; resumed uploads are whole chunks, never 1 byte.
    const m = /^(?:bytes=)?0-(\d+)$/.exec(headerOf(res, 'range') ?? '');
    const end = m === null ? 0 : Number(m[1]);
    const next = headerOf(res, 'location');
    return { location: next === undefined ? location : await this.absolute(repo.host, next), offset: end === 0 ? 0 : end + 1 };
  }

  /** Uploads one chunk (`size` bytes at `session.offset`) with PATCH; resolves to the next session. */
  async uploadChunk(repo: RepositoryLocation, session: UploadSession, size: number, body: () => Promise<Readable>, signal?: AbortSignal): Promise<UploadSession> {
    const res = await this.transport.send({
      method: 'PATCH', host: repo.host, path: session.location, scopes: [repositoryScope(repo.path, 'pull,push')], retry: false,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size), 'content-range': `${session.offset}-${session.offset + size - 1}` },
      body, ...(signal === undefined ? {} : { signal }),
    });
    if (res.status !== 202) await failResponse(res, what(repo, 'uploading a chunk to'));
    await dumpBody(res);
    const next = await this.sessionOf(repo, res, session.offset + size);
    return { ...next, ...(session.minChunk === undefined || next.minChunk !== undefined ? {} : { minChunk: session.minChunk }) };
  }

  /** Completes an upload with PUT `?digest=`, optionally carrying the (rest of the) content. */
  async finishUpload(repo: RepositoryLocation, session: UploadSession, digest: Digest, content?: { size: number; body: () => Promise<Readable> }, signal?: AbortSignal): Promise<void> {
    const url = new URL(session.location);
    url.searchParams.set('digest', digest);
    const res = await this.transport.send({
      method: 'PUT', host: repo.host, path: url.toString(), scopes: [repositoryScope(repo.path, 'pull,push')], retry: content === undefined,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(content?.size ?? 0) },
      ...(content === undefined ? {} : { body: content.body }), ...(signal === undefined ? {} : { signal }),
    });
    if (res.status !== 201 && res.status !== 204) await failResponse(res, what(repo, `completing the upload of ${digest} to`));
    await dumpBody(res);
  }
}

function lengthOf(res: RegistryResponse): number | undefined {
  const v = headerOf(res, 'content-length');
  return v === undefined ? undefined : Number(v);
}

/** Reads a body of at most `limit` bytes. Throws `REG_MANIFEST_TOO_LARGE` beyond (and stops reading). */
async function readLimited(res: RegistryResponse, limit: number, op: string): Promise<Buffer> {
  const declared = Number(headerOf(res, 'content-length') ?? '0');
  const tooLarge = (): TsbuildError => new TsbuildError('REG_MANIFEST_TOO_LARGE', `${op}: the manifest is larger than ${limit} bytes`);
  if (declared > limit) {
    res.body.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body) {
    n += (chunk as Buffer).length;
    if (n > limit) {
      res.body.destroy();
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
