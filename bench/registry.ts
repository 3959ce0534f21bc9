/**
 * Registry client throughput, run by `npm run bench -- registry`, against skopeo in the same run:
 *  - cold push of a generated 3-layer image (incompressible, already "gzip" media type: nothing
 *    is compressed, the wire is measured) to an empty local docker-registry;
 *  - cold pull of it into an empty store (download + verify + store);
 *  - no-op push and pull when everything is present (in-process, and as CLI processes);
 *  - push to a new repository of the same registry (cross-repository mount).
 * skopeo: `skopeo copy oci:STORE:REF docker://...` (push) and `docker://... oci:DIR` (pull).
 * Peak RSS is sampled in-process. Flags: --mb=N (image size, default 340), --dir=PATH, --keep.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MediaType, parseReference, type Descriptor } from '../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../src/image/index.js';
import { HttpRegistryClient, pullImage, pushImage } from '../src/registry/index.js';
import { openStore } from '../src/store/index.js';

const exec = promisify(execFile);
const REPO = fileURLToPath(new URL('../', import.meta.url));
const MB = 1e6;
const PLATFORM = { os: 'linux', architecture: 'amd64' };

function flag(args: string[], name: string): string | undefined {
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function startRegistry(dir: string): Promise<{ host: string; child: ChildProcess }> {
  const port = await freePort();
  await writeFile(join(dir, 'config.yml'), `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then(() => true, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: `127.0.0.1:${port}`, child };
}

/** Runs `fn`, returning its wall time in ms and the peak RSS growth sampled meanwhile. */
async function measure<T>(fn: () => Promise<T>): Promise<{ ms: number; peakMb: number; value: T }> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const t0 = performance.now();
  try {
    const value = await fn();
    return { ms: performance.now() - t0, peakMb: (peak - base) / MB, value };
  } finally {
    clearInterval(timer);
  }
}

async function timeProcess(cmd: string, args: readonly string[]): Promise<number> {
  const t0 = performance.now();
  await exec(cmd, args, { cwd: REPO, maxBuffer: 1 << 24 });
  return performance.now() - t0;
}

/** Benchmark entry point. */
export async function run(args: string[]): Promise<void> {
  const total = Number(flag(args, 'mb') ?? '340') * MB;
  const work = await mkdtemp(join(flag(args, 'dir') ?? '/var/tmp', 'tsbuild-bench-registry-'));
  const children: ChildProcess[] = [];
  try {
    const root = join(work, 'src');
    const store = await openStore(root);
    let config = createEmptyConfig(PLATFORM, '2024-01-01T00:00:00Z');
    const layers: Descriptor[] = [];
    for (const share of [0.5, 0.3, 0.2]) {
      const size = Math.floor(total * share);
      const chunks = (function* () {
        for (let left = size; left > 0; left -= 1 << 20) yield randomBytes(Math.min(left, 1 << 20));
      })();
      const info = await store.blobs.put(Readable.from(chunks));
      layers.push({ mediaType: MediaType.ociLayerGzip, digest: info.digest, size: info.size });
      config = addLayer(config, info.digest);
    }
    const c = await store.blobs.putBytes(serializeDocument(config));
    const m = await store.blobs.putBytes(serializeDocument(createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, layers)));
    const manifest = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
    await store.refs.set('bench', manifest);
    await store.refs.set('docker.io/library/bench:latest', manifest);
    const bytes = layers.reduce((n, l) => n + l.size, 0);
    const rate = (ms: number): string => `${(bytes / MB / (ms / 1000)).toFixed(0)} MB/s`;
    process.stdout.write(`image: 3 layers, ${(bytes / MB).toFixed(0)} MB\n`);

    const regA = await startRegistry(await mkdtemp(join(work, 'reg-a-')));
    const regB = await startRegistry(await mkdtemp(join(work, 'reg-b-')));
    children.push(regA.child, regB.child);
    const client = new HttpRegistryClient();
    const dest = parseReference(`${regA.host}/bench/img:1`);

    const push = await measure(() => pushImage(client, store, manifest, dest));
    process.stdout.write(`tsbuild cold push:   ${push.ms.toFixed(0)} ms  ${rate(push.ms)}  peak +${push.peakMb.toFixed(0)} MB RSS\n`);
    const skPush = await timeProcess('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${root}:bench`, `docker://${regB.host}/bench/img:1`]);
    process.stdout.write(`skopeo cold push:    ${skPush.toFixed(0)} ms  ${rate(skPush)}\n`);

    const dst = await openStore(join(work, 'dst'));
    const pull = await measure(() => pullImage(client, dst, dest, { platform: PLATFORM }));
    process.stdout.write(`tsbuild cold pull:   ${pull.ms.toFixed(0)} ms  ${rate(pull.ms)}  peak +${pull.peakMb.toFixed(0)} MB RSS\n`);
    const skPull = await timeProcess('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${regA.host}/bench/img:1`, `oci:${join(work, 'sk-layout')}:img`]);
    process.stdout.write(`skopeo cold pull:    ${skPull.toFixed(0)} ms  ${rate(skPull)}\n`);

    const noopPush = await measure(() => pushImage(client, store, manifest, dest));
    const noopPull = await measure(() => pullImage(client, dst, dest, { platform: PLATFORM }));
    process.stdout.write(`tsbuild no-op push:  ${noopPush.ms.toFixed(1)} ms (in-process)\ntsbuild no-op pull:  ${noopPull.ms.toFixed(1)} ms (in-process)\n`);
    const cli = ['--import', 'tsx', 'src/cli/main.ts', '--root', root];
    const cliPush = await timeProcess(process.execPath, [...cli, 'push', '-q', 'bench', `${regA.host}/bench/img:1`]);
    const cliPull = await timeProcess(process.execPath, [...cli.slice(0, 3), '--root', join(work, 'dst'), 'pull', '-q', `${regA.host}/bench/img:1`]);
    const nodeStart = await timeProcess(process.execPath, [...cli.slice(0, 3), '--version']);
    process.stdout.write(`tsbuild no-op push:  ${cliPush.toFixed(0)} ms (CLI process via tsx; --version alone takes ${nodeStart.toFixed(0)} ms)\n`);
    process.stdout.write(`tsbuild no-op pull:  ${cliPull.toFixed(0)} ms (CLI process via tsx)\n`);
    const skNoop = await timeProcess('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${root}:bench`, `docker://${regB.host}/bench/img:1`]);
    process.stdout.write(`skopeo no-op push:   ${skNoop.toFixed(0)} ms\n`);

    const mount = await measure(() => pushImage(client, store, manifest, parseReference(`${regA.host}/other/img:1`)));
    process.stdout.write(`tsbuild mount push:  ${mount.ms.toFixed(0)} ms (${mount.value.mounted} mounted, ${mount.value.uploaded} uploaded)\n`);
    await client.close();
  } finally {
    for (const c of children) c.kill('SIGTERM');
    if (!args.includes('--keep')) await rm(work, { recursive: true, force: true });
  }
}
