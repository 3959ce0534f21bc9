import { writeFile } from 'node:fs/promises';
import { availableParallelism, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { formatReference, MediaType, notSupportedYet, parseReference, TsbuildError, type BuildEvent, type Descriptor, type EventSink, type ImageConfig, type Platform } from '../core/index.js';
import type { Dockerfile } from '../dockerfile/index.js';
import { createIndex, formatPlatform, parsePlatform, serializeDocument } from '../image/index.js';
import type { CompressionTools } from '../layer/index.js';
import { baseImageKey, planBuild, type BuildGraph } from '../plan/index.js';
import { acquireLease, refNameOf, withName, type Store } from '../store/index.js';
import { exportImage, imageCreatedTime, findHostTools, resolveBaseImage, type Entitlement, type ExportedImage, type LazySolveDeps, type ResolvedBase, solveGraph } from '../solve/index.js';
import type { HttpRegistryClient } from '../registry/index.js';
import type { WrittenOutputs } from './build-export.js';
import { parseBuildOutputs, writesToStdout, type BuildOutput } from './build-output.js';
import type { CommandContext } from './command.js';
import { openBuildProgress, type BuildProgress } from './progress/select.js';
import { openCliStore } from './store-root.js';
import { loadSecrets, resolveSshAgents, startSshAgents } from './build-secrets.js';
import type { BuildCacheIo } from './build-cache-io.js';
import { parseBuildCacheFlags } from './build-cache-spec.js';

/** The build flags beyond planning. Unsupported ones are rejected by {@link runBuild}. */
export interface BuildRequest {
  readonly tags: readonly string[];
  readonly labels: readonly string[];
  readonly noCache: boolean;
  readonly noCacheFilter: readonly string[];
  readonly pull: boolean;
  readonly progress: string;
  readonly quiet: boolean;
  readonly outputs: readonly string[];
  readonly iidfile: string | undefined;
  readonly metadataFile: string | undefined;
  readonly secrets: readonly string[];
  readonly ssh: readonly string[];
  readonly network: string | undefined;
  /** `--allow`: the entitlements granted (absent: none). */
  readonly allow?: readonly Entitlement[];
  readonly cacheFrom: readonly string[];
  readonly cacheTo: readonly string[];
  readonly snapshotter: string | undefined;
  /** `--push`. */
  readonly push?: boolean;
  /**
   * Opens the registry client for pulls and pushes (the build closes it); default: anonymous, no
   * extra CAs. Called on first use only: a build that talks to no registry never loads its code.
   */
  readonly openRegistry?: () => HttpRegistryClient | Promise<HttpRegistryClient>;
}

/** What the front end has already parsed and checked. */
export interface ParsedBuild {
  readonly dockerfile: Dockerfile;
  readonly dockerfilePath: string | undefined;
  readonly contextDir: string;
  readonly planOptions: {
    readonly buildArgs: ReadonlyMap<string, string>;
    readonly target: string | undefined;
    readonly buildPlatform: Platform;
    /** The first of targetPlatforms. */
    readonly targetPlatform: Platform;
  };
  /** `--platform` (one or more, deduplicated), else the host's. Several make an image index. */
  readonly targetPlatforms: readonly Platform[];
  readonly formatWarning: (e: BuildEvent) => string | undefined;
}

/** Checks flag values the front end does not (exit 125). */
function checkFlags(req: BuildRequest): void {
  for (const l of req.labels) {
    if (!l.includes('=')) throw new TsbuildError('CLI_BAD_VALUE', `invalid --label "${l}": expected KEY=VALUE`, { exitCode: 125 });
  }
}

/** Directory for sandbox state (as `tsbuild run`): $TSBUILD_RUN_DIR, /run/tsbuild as root, else under the store. */
function parseSourceDateEpoch(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^[0-9]+$/.test(value)) throw new TsbuildError('CLI_BAD_VALUE', `SOURCE_DATE_EPOCH must be a number of seconds, not "${value}"`, { exitCode: 125 });
  return Number(value);
}

/** The images a graph's source vertices name, with the platform each is needed for. */
function imageSourcesOf(graph: BuildGraph): { readonly key: string; readonly ref: string; readonly platform: string }[] {
  return graph.vertices.flatMap((v) => (v.op.type === 'source' && v.op.source === 'image' ? [{ key: baseImageKey(v.op.ref, v.op.platform), ref: v.op.ref, platform: v.op.platform }] : []));
}

function withLabels(graph: BuildGraph, labels: readonly string[]): BuildGraph {
  if (labels.length === 0) return graph;
  const add: Record<string, string> = {};
  for (const l of labels) add[l.slice(0, l.indexOf('='))] = l.slice(l.indexOf('=') + 1);
  const image: ImageConfig = { ...graph.image, config: { ...graph.image.config, Labels: { ...graph.image.config?.Labels, ...add } } };
  return { ...graph, image };
}

/**
 * Builds the image: resolves base images in the store, plans, solves (progress to stderr),
 * exports into the store under every `-t`, writes `--iidfile`/`--metadata-file`.
 * With `-q` only the image ID is printed (stdout).
 */
export async function runBuild(req: BuildRequest, parsed: ParsedBuild, ctx: CommandContext): Promise<number> {
  let opened: Promise<HttpRegistryClient> | undefined;
  const client = (): Promise<HttpRegistryClient> => (opened ??= (async () => (req.openRegistry === undefined ? (await import('../registry/index.js')).createRegistryClient() : req.openRegistry()))());
  const progress = openBuildProgress(req.progress, req.quiet, ctx.stderr);
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const code = await buildWith(client, req, parsed, ctx, progress, cleanups);
    progress.close('done');
    return code;
  } catch (err) {
    progress.close(ctx.signal.aborted ? 'cancelled' : 'error');
    throw err;
  } finally {
    for (const c of cleanups) await c().catch(() => undefined);
    if (opened !== undefined) await (await opened.catch(() => undefined))?.close();
  }
}

/** Builds; what must be undone when the build ends (agents started for --ssh key files) is added to `cleanups`. */
async function buildWith(client: () => Promise<HttpRegistryClient>, req: BuildRequest, parsed: ParsedBuild, ctx: CommandContext, progress: BuildProgress, cleanups: (() => Promise<void>)[]): Promise<number> {
  const events = progress.events;
  checkFlags(req);
  // Rootless: the whole build runs again as root of a user namespace over the user's sub-ids (rootless-build.ts).
  if (process.getuid?.() !== 0) {
    const stdinText = parsed.dockerfilePath === undefined ? [...ctx.sources.values()][0] : undefined;
    const { runBuildInUserNamespace } = await import('./rootless-build.js');
    return runBuildInUserNamespace(ctx, { execPath: process.execPath, execArgv: process.execArgv }, stdinText);
  }
  const tags = req.tags.map((t) => formatReference(parseReference(t)));
  const outputs = parseBuildOutputs(req.outputs, { push: req.push === true, tags });
  if (req.quiet && writesToStdout(outputs)) throw new TsbuildError('CLI_BAD_VALUE', '-q prints the image ID on stdout, where an --output with dest=- writes', { exitCode: 125 });
  const cacheFlags = parseBuildCacheFlags(req.cacheFrom, req.cacheTo, ctx.cwd);
  const sourceDateEpoch = parseSourceDateEpoch(ctx.env.SOURCE_DATE_EPOCH);
  const secrets = loadSecrets(req.secrets, ctx.env, ctx.cwd);
  const sshSources = resolveSshAgents(req.ssh, ctx.env, ctx.cwd);
  const contextDir = resolve(ctx.cwd, parsed.contextDir);
  const store = await openCliStore(ctx);
  const ssh = await startSshAgents(sshSources);
  cleanups.push(() => ssh.close());

  const platforms = parsed.targetPlatforms;
  const multi = platforms.length > 1;
  if (multi) checkMultiPlatform(outputs, cacheFlags.to.length > 0);

  const choice = req.snapshotter ?? 'auto';
  if (choice !== 'auto' && choice !== 'overlay' && choice !== 'naive') {
    throw new TsbuildError('CLI_BAD_VALUE', `--snapshotter takes overlay or naive, not "${choice}"`, { exitCode: 125 });
  }
  let tools: Promise<CompressionTools> | undefined;
  const compressionTools = (): Promise<CompressionTools> => (tools ??= import('../layer/index.js').then((m) => m.findCompressionTools(ctx.env.PATH)));
  const cacheIo: BuildCacheIo = cacheFlags.from.length === 0 && cacheFlags.to.length === 0 ? { cacheImport: undefined, exportAll: async () => undefined }
    : await (await import('./build-cache-io.js')).openBuildCache(cacheFlags, { store, client: await client(), events, tools: await compressionTools(), signal: ctx.signal });

  // Base images by ref and platform (shared by the platforms of a multi-platform build).
  const bases = new Map<string, ResolvedBase>();
  /** Plans, solves and exports the build for one target platform (tagged with `names`; without names and `record` false: not recorded in index.json). */
  const buildFor = async (targetPlatform: Platform, names: readonly string[], record = true): Promise<ExportedImage> => {
    // Base images: resolved in the local store, planned again until ONBUILD triggers name no new
    // image; the last plan (every image it names resolved) is the build's.
    let planned: ReturnType<typeof planBuild>;
    for (;;) {
      planned = planBuild(parsed.dockerfile, { ...parsed.planOptions, targetPlatform, baseImages: new Map([...bases].map(([k, v]) => [k, v.config] as const)) });
      const missing = imageSourcesOf(planned.graph).filter((r) => !bases.has(r.key));
      if (missing.length === 0) break;
      const puller = { client, always: req.pull, events, signal: ctx.signal };
      for (const m of missing) if (!bases.has(m.key)) bases.set(m.key, await resolveBaseImage(store, m.ref, parsePlatform(m.platform), puller));
    }
    for (const w of planned.warnings) {
      const line = parsed.formatWarning(w);
      if (line !== undefined) progress.print(line);
    }
    const graph = withLabels(planned.graph, req.labels);
    const noCacheStages = new Set<number>();
    for (const name of req.noCacheFilter) {
      const stage = graph.stages.find((st) => st.name === name.toLowerCase() || String(st.index) === name);
      if (stage === undefined) {
        const known = graph.stages.flatMap((st) => (st.name === undefined ? [] : [st.name]));
        throw new TsbuildError('CLI_BAD_VALUE', `--no-cache-filter: no stage "${name}" in the build`, { exitCode: 125, ...(known.length === 0 ? {} : { hint: `stages: ${known.join(', ')}` }) });
      }
      noCacheStages.add(stage.index);
    }
    const deps: LazySolveDeps = {
      store, hostTools: findHostTools(ctx.env), events,
      openStepDeps: async () => ({ ...(await openStepEffects(ctx, store, choice, progress)), compressionTools: await compressionTools() }),
    };
    const result = await solveGraph(graph, deps, {
      contextDir,
      dockerfilePath: parsed.dockerfilePath,
      baseImages: bases,
      noCache: req.noCache,
      noCacheStages,
      network: req.network === 'none' ? 'none' : 'host',
      ...(req.allow === undefined || req.allow.length === 0 ? {} : { entitlements: req.allow }),
      concurrency: availableParallelism(),
      // mode=max exports every step, so every step needs a record: a hit, or a run when nothing needed it.
      solveAll: cacheFlags.to.some((spec) => spec.mode === 'max'),
      sourceDateEpoch,
      signal: ctx.signal,
      secrets,
      sshAgents: ssh.sockets,
      ...(cacheIo.cacheImport === undefined ? {} : { cacheImport: cacheIo.cacheImport }),
    });
    const created = (sourceDateEpoch === undefined ? await imageCreatedTime(store, result, new Date()) : new Date(sourceDateEpoch * 1000)).toISOString().replace(/\.000Z$/, 'Z');
    const image = await exportImage(store, graph, result.output, { tags: names, created, record });
    events({ type: 'info', message: `writing image ${image.configDigest} done${multi ? ` (${formatPlatform(targetPlatform)})` : ''}` });
    await cacheIo.exportAll(graph, result);
    return image;
  };

  let image: { readonly manifest: Descriptor; readonly names: readonly string[]; readonly id: string; readonly configDigest?: string };
  if (!multi) {
    const one = await buildFor(platforms[0] as Platform, tags);
    image = { ...one, id: one.configDigest };
  } else {
    // The platform manifests get no index.json entries of their own: the lease keeps gc off them until the index names them.
    const lease = await acquireLease(store);
    let index: Descriptor;
    try {
      const built: { readonly platform: Platform; readonly image: ExportedImage }[] = [];
      for (const platform of platforms) {
        events({ type: 'info', message: `building for ${formatPlatform(platform)}` });
        built.push({ platform, image: await buildFor(platform, [], false) });
      }
      index = await exportPlatformIndex(store, built, tags);
    } finally {
      await lease.release();
    }
    image = { manifest: index, names: tags, id: index.digest };
    events({ type: 'info', message: `writing image index ${index.digest} done` });
  }
  for (const name of image.names) events({ type: 'info', message: `naming to ${name} done` });
  const written: WrittenOutputs = outputs.length === 0 ? { names: [...image.names], pushed: [] } : await (await import('./build-export.js')).writeBuildOutputs(outputs, {
    store, image: image.manifest, tags: image.names, client: await client(), tools: await compressionTools(), events, cwd: ctx.cwd, stdout: ctx.stdout, sourceDateEpoch, signal: ctx.signal,
  });
  if (req.iidfile !== undefined) await writeOut(resolve(ctx.cwd, req.iidfile), image.id);
  if (req.metadataFile !== undefined) {
    const metadata = {
      ...(image.configDigest === undefined ? {} : { 'containerimage.config.digest': image.configDigest }),
      // As BuildKit: after a push, the digest of the manifest the registry has (its layers are gzip).
      'containerimage.digest': written.pushed[0]?.manifest.digest ?? image.manifest.digest,
      'containerimage.descriptor': written.pushed[0]?.manifest ?? image.manifest,
      ...(written.names.length === 0 ? {} : { 'image.name': written.names.join(',') }),
    };
    await writeOut(resolve(ctx.cwd, req.metadataFile), `${JSON.stringify(metadata, null, 2)}\n`);
  }
  if (req.quiet) ctx.stdout.write(`${image.id}\n`);
  return 0;
}

/** What a multi-platform build cannot write (a docker archive) or not yet (a root file system per platform, a cache per platform). */
function checkMultiPlatform(outputs: readonly BuildOutput[], cacheTo: boolean): void {
  const no = (what: string): never => {
    const e = notSupportedYet(`${what} of a build for several platforms`, 'build each platform with its own --platform');
    throw new TsbuildError(e.code, e.message, { exitCode: 125, ...(e.hint === undefined ? {} : { hint: e.hint }) });
  };
  for (const o of outputs) {
    if (o.type === 'tar' || o.type === 'local') no(`--output type=${o.type}`);
    if (o.type === 'docker') throw new TsbuildError('CLI_BAD_VALUE', '--output type=docker holds single-platform images; a build for several platforms makes an index', { exitCode: 125, hint: 'use --output type=oci' });
  }
  if (cacheTo) no('--cache-to');
}

/**
 * Writes the image index of a multi-platform build (one manifest per platform, each with its
 * platform, as buildx) and names it with `tags` (untagged without), in one index.json update; a
 * fully cached rebuild, whose names already point at the same index, writes nothing.
 */
async function exportPlatformIndex(store: Store, built: readonly { readonly platform: Platform; readonly image: ExportedImage }[], tags: readonly string[]): Promise<Descriptor> {
  const index = createIndex(built.map((b) => ({ ...b.image.manifest, platform: b.platform })));
  const blob = await store.blobs.putBytes(serializeDocument(index));
  const descriptor: Descriptor = { mediaType: MediaType.ociIndex, digest: blob.digest, size: blob.size };
  const current = await store.refs.list();
  const recorded = tags.length === 0 ? current.some((e) => e.descriptor.digest === descriptor.digest)
    : tags.every((name) => current.some((e) => e.name === name && e.descriptor.digest === descriptor.digest));
  if (recorded) return descriptor;
  await store.refs.update((entries) => {
    const drop = (keep: (e: Descriptor) => boolean): void => {
      for (let i = entries.length - 1; i >= 0; i--) if (!keep(entries[i] as Descriptor)) entries.splice(i, 1);
    };
    if (tags.length === 0) {
      if (!entries.some((e) => e.digest === descriptor.digest)) entries.push(withName(descriptor, undefined));
      return;
    }
    // As refs.set for each name: the name moves here, an untagged entry of the index goes.
    drop((e) => !tags.includes(refNameOf(e) as string) && !(refNameOf(e) === undefined && e.digest === descriptor.digest));
    for (const name of tags) entries.push(withName(descriptor, name));
  });
  return descriptor;
}

/**
 * Opens what running a step needs: the snapshotter (overlay unless unavailable or `choice` says
 * otherwise) and the sandbox. Called by the solver when the first step runs; their modules load here.
 */
async function openStepEffects(ctx: CommandContext, store: Store, choice: 'auto' | 'overlay' | 'naive', progress: BuildProgress): Promise<Omit<Awaited<ReturnType<LazySolveDeps['openStepDeps']>>, 'compressionTools'>> {
  const [{ readEnclosingIdMaps, Sandbox }, { openSnapshotter }, { launcherPathFor, stateDirFor }] = await Promise.all([
    import('../sandbox/index.js'), import('../snapshot/index.js'), import('./container-deps.js'),
  ]);
  const enclosingIdMaps = await readEnclosingIdMaps();
  if (enclosingIdMaps !== undefined && ctx.global.debug) {
    ctx.stderr.write('DEBUG: building in a user namespace (rootless): overlay with userxattr, RUN steps in nested user namespaces without cgroup limits\n');
  }
  const uid = process.getuid?.() ?? 0;
  const { snapshotter, fallbackReason } = await openSnapshotter({ snapshots: store.paths.snapshots, tmp: store.paths.tmp }, { choice, userxattr: enclosingIdMaps !== undefined || uid !== 0 });
  if (fallbackReason !== undefined) progress.print(`WARNING: using the naive snapshotter: ${fallbackReason}`);
  const sandbox = new Sandbox({
    launcherPath: launcherPathFor(ctx),
    stateDir: stateDirFor(ctx, uid),
    host: { uid, gid: process.getgid?.() ?? 0, user: userInfo().username },
    ownerPid: process.pid,
    ...(enclosingIdMaps === undefined ? {} : { enclosingIdMaps }),
    onWarning: (m) => progress.events({ type: 'warning', message: m }),
    zygote: true, // RUN steps fork their launchers from a zygote; the solver closes the sandbox at the end
  });
  return { snapshotter, sandbox };
}

async function writeOut(path: string, text: string): Promise<void> {
  try {
    await writeFile(path, text);
  } catch (err) {
    throw new TsbuildError('CLI_WRITE_FAILED', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}
