/**
 * The unpack rows of bench/store.ts, run in a child process of plain Node from an esbuild bundle
 * of this file (as the CLI runs), not under tsx (which costs this unpack about 10% more CPU, and a
 * pull 30-40%: see bench/drivers/pull.ts). Arguments: the store root and the destination; unpacks
 * the bench image's layers in order (store blob -> gunzip -> applyLayer) and prints JSON
 * {ms, cpuMs, sysMs, maxRssKb}.
 */
import { readFile } from 'node:fs/promises';
import type { Descriptor } from '../../src/core/index.js';
import { applyLayer, decompress, findCompressionTools } from '../../src/layer/index.js';
import { openStore, resolveImage } from '../../src/store/index.js';

/** The image bench/store.ts generates. */
const IMAGE = 'docker.io/library/bench-unpack:latest';

/** This process's peak RSS (VmHWM; not getrusage, which Linux keeps across fork and exec). */
async function peakRssKb(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0);
}

async function main(): Promise<void> {
  const [root, dest] = process.argv.slice(2) as [string, string];
  const store = await openStore(root);
  const image = await resolveImage(store, IMAGE);
  const manifest = (await store.blobs.readJson<{ layers: Descriptor[] }>(image.descriptor.digest)).value;
  const tools = findCompressionTools(process.env.PATH);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (const l of manifest.layers) await applyLayer(decompress(await store.blobs.open(l.digest), { tools }), dest);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  // gzip is inflated in-process (zlib on the thread pool), so this is the whole unpack's CPU time.
  process.stdout.write(`${JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000, sysMs: cpu.system / 1000, maxRssKb: await peakRssKb() })}\n`);
}

void main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
