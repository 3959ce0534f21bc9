import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { parseReference, repositoryOf, TsbuildError, type BuildEvent, type Descriptor, type EventSink, type ImageManifest } from '../core/index.js';
import { applyLayer, decompressFile, packLayer, type ApplyReport, type CompressionTools } from '../layer/index.js';
import { pushImage, type HttpRegistryClient } from '../registry/index.js';
import { acquireLease, saveArchive, type Store } from '../store/index.js';
import { namesOf, type BuildOutput } from './build-output.js';

/** What {@link writeBuildOutputs} writes from. */
export interface OutputContext {
  readonly store: Store;
  /** The exported image (a manifest of the store) and the -t names it was tagged with. */
  readonly image: Descriptor;
  readonly tags: readonly string[];
  readonly client: HttpRegistryClient;
  readonly tools: CompressionTools;
  readonly events: EventSink;
  readonly cwd: string;
  readonly stdout: Writable;
  readonly sourceDateEpoch: number | undefined;
  readonly signal?: AbortSignal;
}

/** One push of a build: the name and the manifest as the registry has it (layers gzip-compressed). */
export interface PushedImage {
  readonly name: string;
  readonly manifest: Descriptor;
}

/** What {@link writeBuildOutputs} did. */
export interface WrittenOutputs {
  /** Every name the image has in the store (the -t names and the `name=` of image outputs). */
  readonly names: readonly string[];
  readonly pushed: readonly PushedImage[];
}

/**
 * Writes every output of a finished build, in order: image names (and pushes), archives, root
 * file system tars and directories. Progress goes to `events` (`info` lines, `transfer` events).
 * Throws CLI_IO for files that cannot be written, and the REG_/STORE_/LAYER_ errors below.
 */
export async function writeBuildOutputs(outputs: readonly BuildOutput[], ctx: OutputContext): Promise<WrittenOutputs> {
  const names = new Set(ctx.tags);
  const pushed: PushedImage[] = [];
  for (const o of outputs) {
    switch (o.type) {
      case 'image': {
        for (const name of o.names) {
          await ctx.store.refs.set(name, ctx.image);
          names.add(name);
        }
        if (o.push) for (const name of namesOf(o, ctx.tags)) pushed.push({ name, manifest: await pushTo(ctx, name) });
        break;
      }
      case 'oci':
      case 'docker': {
        const archiveNames = namesOf(o, ctx.tags);
        await toDestination(ctx, o.dest, `${o.type} archive`, (out) =>
          saveArchive(ctx.store, [{ descriptor: ctx.image, names: archiveNames }], out, { format: o.type, gzipLayers: true, ...signalOf(ctx) }));
        break;
      }
      case 'tar':
        await withRootfs(ctx, async (dir) => {
          await toDestination(ctx, o.dest, 'root file system tar', (out) => pipeline(packRootfs(dir, ctx), out, signalOf(ctx)));
        });
        break;
      case 'local': {
        const dest = resolve(ctx.cwd, o.dest);
        await withRootfs(ctx, async (dir) => {
          // SECURITY: the flattened tree is applied like a layer: nothing is written outside dest,
          // even through symlinks already in dest or in the image.
          warn(ctx, await applyLayer(packRootfs(dir, ctx), dest, { whiteouts: 'delete', ...signalOf(ctx) }));
        });
        ctx.events({ type: 'info', message: `copying files to ${dest} done` });
        break;
      }
    }
  }
  return { names: [...names], pushed };
}

/** Reports what an unpack skipped (device nodes without privileges, refused xattrs) as warnings. */
function warn(ctx: OutputContext, report: ApplyReport): void {
  for (const message of report.warnings) ctx.events({ type: 'warning', message: `output: ${message}` });
}

function signalOf(ctx: OutputContext): { signal?: AbortSignal } {
  return ctx.signal === undefined ? {} : { signal: ctx.signal };
}

/** Pushes the image to `name` with the build's registry client; byte progress is left out of the events. */
async function pushTo(ctx: OutputContext, name: string): Promise<Descriptor> {
  const dest = parseReference(name);
  ctx.events({ type: 'info', message: `pushing ${name} to ${repositoryOf(dest)}` });
  let r;
  try {
    r = await pushImage(ctx.client, ctx.store, ctx.image, dest, {
      ...signalOf(ctx),
      onEvent: (e: BuildEvent) => {
        if (e.type === 'transfer' && e.current !== e.total) return;
        ctx.events(e);
      },
    });
  } catch (err) {
    // Same code and hint, naming the destination; the image stays in the local store.
    if (!(err instanceof TsbuildError)) throw err;
    throw new TsbuildError(err.code, `pushing ${name}: ${err.message}`, {
      cause: err, exitCode: err.exitCode, hint: err.hint ?? `the image is in the local store; retry with "tsbuild push ${name}"`,
    });
  }
  ctx.events({ type: 'info', message: `pushing ${name}: digest ${r.digest} size ${r.size} (${r.uploaded} uploaded, ${r.mounted} mounted, ${r.existing} present)` });
  return { mediaType: r.mediaType, digest: r.digest, size: r.size };
}

/** The root file system of `dir` as a deterministic tar (mtimes clamped to SOURCE_DATE_EPOCH when set). */
function packRootfs(dir: string, ctx: OutputContext): Readable {
  return packLayer(dir, { mode: 'tree', ...(ctx.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: ctx.sourceDateEpoch }) }).stream;
}

/** Unpacks the image's layers into a fresh directory under the store's tmp/, runs `use`, removes it. */
async function withRootfs(ctx: OutputContext, use: (dir: string) => Promise<void>): Promise<void> {
  const manifest = (await ctx.store.blobs.readJson<ImageManifest>(ctx.image.digest)).value;
  // tmp/ entries are named kind-<pid>-<random>: prune removes them only once this process is gone.
  const dir = join(ctx.store.paths.tmp, `output-${process.pid}-${randomBytes(6).toString('hex')}`);
  await mkdir(dir, { mode: 0o700 });
  try {
    for (const layer of manifest.layers) {
      warn(ctx, await applyLayer(decompressFile(ctx.store.blobs.pathOf(layer.digest), { tools: ctx.tools }), dir, { whiteouts: 'delete', ...signalOf(ctx) }));
    }
    await use(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `write` into `dest`: stdout for `-`, else a temporary file next to it renamed into place
 * (an interrupted build leaves no truncated file). Errors become CLI_IO naming the file.
 */
async function toDestination(ctx: OutputContext, dest: string, what: string, write: (out: Writable) => Promise<void>): Promise<void> {
  const lease = await acquireLease(ctx.store);
  try {
    if (dest === '-') {
      await write(ctx.stdout);
      ctx.events({ type: 'info', message: `writing ${what} to stdout done` });
      return;
    }
    const path = resolve(ctx.cwd, dest);
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const fh = await open(tmp, 'wx', 0o644).catch((err: NodeJS.ErrnoException) => {
      throw new TsbuildError('CLI_IO', `cannot write ${what} ${path}: ${err.code ?? err.message}`, { cause: err });
    });
    const file = fh.createWriteStream();
    try {
      await write(file);
      if (!file.writableFinished) {
        file.end();
        await finished(file);
      }
      await rename(tmp, path);
    } catch (err) {
      file.destroy();
      await unlink(tmp).catch(() => undefined);
      if (err instanceof TsbuildError) throw err;
      throw new TsbuildError('CLI_IO', `cannot write ${what} ${path}: ${(err as Error).message}`, { cause: err });
    }
    ctx.events({ type: 'info', message: `writing ${what} to ${path} done` });
  } finally {
    await lease.release();
  }
}
