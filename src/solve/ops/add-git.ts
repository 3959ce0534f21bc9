import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { sha256Of, TsbuildError, type Digest, type SourceLocation } from '../../core/index.js';
import { parseGitSource } from './add-remote-kind.js';
import type { HostTools } from './add-tools.js';
import type { CopySource } from './copy.js';
import { hostTreeEntries } from './copy-host.js';

/** A git checkout made for ADD, ready to copy. */
export interface ClonedGit {
  /** A directory source (its contents go into the destination), owned by root, mtimes = commit time. */
  readonly source: CopySource;
  /** Digest of the checked-out commit (the cache-key content). */
  readonly digest: Digest;
  readonly commit: string;
  readonly cleanup: () => Promise<void>;
}

/** Options of {@link cloneGit}. */
export interface CloneGitOptions {
  readonly tmpDir: string;
  readonly signal: AbortSignal;
  readonly hostTools: HostTools;
  /** `--keep-git-dir`: keep `.git` in the copied tree. */
  readonly keepGitDir: boolean;
  readonly loc?: SourceLocation;
}

function fail(message: string, loc: SourceLocation | undefined, cause?: unknown, hint?: string): TsbuildError {
  return new TsbuildError('SOLVE_ADD_GIT', message, { ...(loc === undefined ? {} : { loc }), ...(cause === undefined ? {} : { cause }), ...(hint === undefined ? {} : { hint }) });
}

/**
 * Checks out the submodules (recursively, as BuildKit): shallow first, then in full when the server
 * does not hand out the pinned commit shallowly. Their URLs pass the same protocol allow-list.
 * Returns the submodule paths, relative to the checkout.
 */
async function updateSubmodules(repo: string, run: (args: readonly string[]) => Promise<string>): Promise<string[]> {
  try {
    await run(['-C', repo, 'submodule', 'update', '-q', '--init', '--recursive', '--depth', '1']);
  } catch {
    await run(['-C', repo, 'submodule', 'update', '-q', '--init', '--recursive']);
  }
  const out = await run(['-C', repo, 'submodule', 'foreach', '--quiet', '--recursive', 'printf "%s\\0" "$displaypath"']);
  return out.split('\0').filter((p) => p !== '');
}

/**
 * Fetches one commit of a git source (`<url>[#<ref>][:<subdir>]`) with `git fetch --depth 1` into a
 * directory under `tmpDir` and checks it out, with its submodules. SECURITY: only the http, https, git and ssh
 * transports are allowed (no `ext::` commands, no local paths), git never prompts, the subdirectory
 * must stay inside the checkout. Errors: SOLVE_ADD_TOOL_MISSING without git, SOLVE_ADD_GIT.
 */
export async function cloneGit(src: string, options: CloneGitOptions): Promise<ClonedGit> {
  const { loc } = options;
  const git = options.hostTools.git;
  if (git === undefined) {
    throw new TsbuildError('SOLVE_ADD_TOOL_MISSING', `ADD ${src}: git was not found on the PATH`, { ...(loc === undefined ? {} : { loc }), hint: 'install git (apt-get install git)' });
  }
  const { remote, ref, subdir } = parseGitSource(src);
  const dir = mkdtempSync(join(options.tmpDir, `add-git-${process.pid}-`));
  const cleanup = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
  };
  const repo = join(dir, 'repo');
  const env: Record<string, string> = {
    ...options.hostTools.gitEnv,
    GIT_TERMINAL_PROMPT: '0',
    GIT_ALLOW_PROTOCOL: 'http:https:git:ssh',
    GIT_CONFIG_NOSYSTEM: '1',
    LC_ALL: 'C',
  };
  const run = (args: readonly string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(git, ['-c', 'advice.detachedHead=false', '-c', 'protocol.file.allow=never', ...args], { env, signal: options.signal, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
        if (err === null) resolve(stdout);
        else if (options.signal.aborted) reject(options.signal.reason);
        else reject(fail(`ADD ${src}: git ${args[0] === '-C' ? args[2] : args[0]} failed: ${stderr.trim().split('\n').slice(-3).join(' ') || err.message}`, loc, err));
      });
    });
  try {
    await run(['init', '-q', repo]);
    // `--` keeps a remote or ref starting with `-` from being read as an option.
    await run(['-C', repo, 'fetch', '-q', '--depth', '1', '--no-tags', '--', remote, ref ?? 'HEAD']);
    await run(['-C', repo, 'checkout', '-q', 'FETCH_HEAD']);
    const submodules = existsSync(join(repo, '.gitmodules')) ? await updateSubmodules(repo, run) : [];
    const commit = (await run(['-C', repo, 'rev-parse', 'HEAD'])).trim();
    const commitTime = Number((await run(['-C', repo, 'log', '-1', '--format=%ct'])).trim());
    let root = repo;
    const repoReal = realpathSync(repo);
    if (subdir !== '') {
      // SECURITY: a subdir (or a symlink in it) must not lead out of the checkout.
      let real: string;
      try {
        real = realpathSync(join(repo, subdir));
      } catch (e) {
        throw fail(`ADD ${src}: directory "${subdir}" not found in the repository`, loc, e);
      }
      if (real !== repoReal && !real.startsWith(`${repoReal}${sep}`)) throw fail(`ADD ${src}: "${subdir}" leads outside the repository`, loc);
      if (!statSync(real).isDirectory()) throw fail(`ADD ${src}: "${subdir}" is not a directory`, loc);
      root = real;
    }
    // The checkout's .git, and the `.git` file of each submodule (a pointer into it), unless kept.
    const gitPaths = ['.git', ...submodules.map((m) => `${m}/.git`)];
    // (Both sides resolved: the store's path may hold a symlink. A subdir that is the checkout itself has no prefix.)
    const rel = root === repo ? '' : relative(repoReal, root);
    const prefix = rel === '' ? '' : `${rel}/`;
    const skip = options.keepGitDir && subdir === '' ? new Set<string>()
      : new Set(gitPaths.flatMap((g) => (prefix === '' ? [g] : g.startsWith(prefix) ? [g.slice(prefix.length)] : [])));
    const entries = hostTreeEntries(root, {
      skip,
      owner: { uid: 0, gid: 0 },
      ...(Number.isFinite(commitTime) ? { mtime: commitTime } : {}),
      rootMeta: { mode: 0o755, uid: 0, gid: 0 },
    });
    // `+submodules`: a record made before submodules were checked out (same commit, without them) is not a hit.
    return { source: { name: src, entries }, digest: sha256Of(`git+submodules:${commit}`), commit, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
