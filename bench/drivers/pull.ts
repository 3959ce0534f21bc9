/**
 * The pull rows of bench/registry.ts, run in a child process of plain Node from an
 * esbuild bundle of this file (as the CLI runs), not under tsx: under tsx the same pull took
 * 1.3-1.4x the CPU (10x the mark-compact GCs: 60 against 6 per pull, 0.8 s of GC pauses against
 * 0.15 s; and esbuild's keepNames wraps every closure made per tar entry), so in-process rows
 * measured the loader, not tsbuild. Argument: JSON {mode, reference, root, layers}; prints JSON
 * {ms, cpuMs, peakMb}.
 *  - mode 'pull': pullImage with the CLI's unpack hook (download and unpack overlapped);
 *  - mode 'two-phase': pullImage of the blobs, then each layer into its snapshot from the store.
 */
import { parseReference, type Digest } from '../../src/core/index.js';
import { findCompressionTools } from '../../src/layer/index.js';
import { snapshotUnpacker } from '../../src/cli/pull-unpack.js';
import { HttpRegistryClient, pullImage, type PullLayer } from '../../src/registry/index.js';
import { openStore } from '../../src/store/index.js';

interface DriverArgs {
  readonly mode: 'pull' | 'two-phase';
  readonly reference: string;
  readonly root: string;
  readonly layers: readonly PullLayer[];
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as DriverArgs;
  const platform = { os: 'linux', architecture: 'amd64' };
  const tools = findCompressionTools(process.env.PATH);
  const store = await openStore(args.root);
  const client = new HttpRegistryClient();
  const ref = parseReference(args.reference);
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  if (args.mode === 'pull') {
    await pullImage(client, store, ref, { platform, unpack: (ls) => snapshotUnpacker(store, ls, { tools }) });
  } else {
    await pullImage(client, store, ref, { platform });
    const layers = args.layers.map((l) => ({ ...l, diffId: l.diffId as Digest }));
    const unpackLayer = snapshotUnpacker(store, layers, { tools });
    for (const l of layers) await unpackLayer(l, undefined);
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  clearInterval(timer);
  await client.close();
  process.stdout.write(`${JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000, peakMb: (peak - base) / 1e6 })}\n`);
}

void main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
