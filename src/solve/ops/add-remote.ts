import type { Digest, SourceLocation } from '../../core/index.js';
import type { CopyOp } from '../../plan/index.js';
import { remoteKindOf } from './add-remote-kind.js';
import type { HostTools } from './add-tools.js';
import type { CopySource } from './copy.js';

/** The URL and git sources of one ADD, fetched for its cache key (or lazily with --checksum). */
export interface RemoteSources {
  /** Cache-key content: the `--checksum`, else the content digest of each download / the commit of each clone. */
  readonly digests: readonly Digest[];
  /** The sources to copy, in the order the ADD names them (downloads the file now with `--checksum`). */
  load(): Promise<CopySource[]>;
  /** Removes every downloaded file and checkout (safe to call more than once). */
  cleanup(): Promise<void>;
}

/** Options of {@link prepareRemoteSources}. */
export interface RemoteOptions {
  readonly tmpDir: string;
  readonly signal: AbortSignal;
  readonly hostTools: HostTools;
  /** mtime (seconds) of a download without Last-Modified. */
  readonly fallbackMtime: number;
  readonly loc?: SourceLocation;
}

/**
 * Fetches the http(s) and git sources of an ADD before cache keys are computed, as BuildKit does:
 * a URL without `--checksum` is downloaded on every build and keyed by its content digest; a git
 * source is fetched and keyed by its commit. A URL with `--checksum` is keyed by the checksum and
 * downloaded (and verified) only when the step runs. Returns undefined for an op without them.
 */
export async function prepareRemoteSources(op: CopyOp, options: RemoteOptions): Promise<RemoteSources | undefined> {
  if (op.instruction !== 'ADD') return undefined;
  const urls = op.sources.filter((s) => remoteKindOf(s) !== undefined);
  if (urls.length === 0) return undefined;
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async (): Promise<void> => {
    const all = cleanups.splice(0);
    await Promise.all(all.map((c) => c().catch(() => undefined)));
  };
  // Loaded only for an ADD with remote sources (node:http, node:https, child_process): a build without one never needs them.
  const [{ cloneGit }, { downloadUrl }] = await Promise.all([import('./add-git.js'), import('./add-url.js')]);
  const common = { tmpDir: options.tmpDir, signal: options.signal, ...(options.loc === undefined ? {} : { loc: options.loc }), ...(options.hostTools.extraCaFile === undefined ? {} : { extraCaFile: options.hostTools.extraCaFile }) };
  if (op.checksum !== undefined) {
    const checksum = op.checksum;
    const url = urls[0] as string;
    return {
      digests: [checksum as Digest],
      async load() {
        const d = await downloadUrl(url, { ...common, checksum, fallbackMtime: options.fallbackMtime });
        cleanups.push(d.cleanup);
        return [d.source];
      },
      cleanup,
    };
  }
  const sources: CopySource[] = [];
  const digests: Digest[] = [];
  try {
    for (const url of urls) {
      if (remoteKindOf(url) === 'git') {
        const c = await cloneGit(url, { ...common, hostTools: options.hostTools, keepGitDir: op.keepGitDir });
        cleanups.push(c.cleanup);
        sources.push(c.source);
        digests.push(c.digest);
      } else {
        const d = await downloadUrl(url, { ...common, fallbackMtime: options.fallbackMtime });
        cleanups.push(d.cleanup);
        sources.push(d.source);
        digests.push(d.digest);
      }
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { digests, load: async () => sources, cleanup };
}
