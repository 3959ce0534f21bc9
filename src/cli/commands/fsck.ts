import { parseImageConfig, parseImageDocument, validateImage } from '../../image/index.js';
import { checkStore, type FsckProblem, type Store } from '../../store/index.js';
import { optBool } from '../args.js';
import type { Command } from '../command.js';
import { openCliStore } from '../store-root.js';
import { humanSize } from './image-info.js';

/** Checks each stored image manifest against its config (diff_ids, history, config digest). */
async function checkImages(store: Store): Promise<FsckProblem[]> {
  const problems: FsckProblem[] = [];
  const seen = new Set<string>();
  for (const e of await store.refs.list()) {
    const d = e.descriptor;
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    const via = e.name ?? d.digest;
    try {
      const doc = parseImageDocument((await store.blobs.readJson(d.digest)).value, d.mediaType, `manifest of ${via}`);
      if (doc.kind !== 'manifest') continue;
      const { value, bytes } = await store.blobs.readJson(doc.manifest.config.digest);
      const config = parseImageConfig(value, `config of ${via}`);
      for (const p of validateImage({ manifest: doc.manifest, config, configBytes: bytes })) {
        problems.push({ kind: 'invalid-image', digest: d.digest, via, message: `image ${via}: ${p}` });
      }
    } catch {
      // Missing or corrupt blobs are reported by the blob check.
    }
  }
  return problems;
}

/** `tsbuild fsck`: verifies every blob digest, every reference and every image; exit 1 when damage is found. */
export const fsckCommand: Command = {
  name: 'fsck',
  summary: 'Verify every blob, reference and image of the store',
  usage: 'fsck [OPTIONS]',
  options: [{ name: 'json', type: 'bool', help: 'Print the report as JSON' }],
  async run(args, ctx) {
    const store = await openCliStore(ctx);
    const base = await checkStore(store, { signal: ctx.signal });
    const report = { ...base, problems: [...base.problems, ...(await checkImages(store))] };
    if (optBool(args, 'json')) {
      ctx.stdout.write(`${JSON.stringify({ ...report, consistent: report.problems.length === 0, root: store.paths.root })}\n`);
      return report.problems.length === 0 ? 0 : 1;
    }
    for (const p of report.problems) ctx.stdout.write(`${p.kind}: ${p.message}\n`);
    const garbage = report.unreferenced + report.tmpLeftovers > 0
      ? ` (${report.unreferenced} unreferenced blobs, ${report.tmpLeftovers} leftovers in tmp/: "tsbuild prune" removes them)`
      : '';
    ctx.stdout.write(`checked ${report.blobs} blobs (${humanSize(report.bytes)}) and ${report.references} references in ${store.paths.root}: `
      + `${report.problems.length === 0 ? 'consistent' : `${report.problems.length} problems`}${garbage}\n`);
    return report.problems.length === 0 ? 0 : 1;
  },
};
