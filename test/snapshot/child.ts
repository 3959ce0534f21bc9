/**
 * A second process for the snapshot concurrency tests (not a test file).
 * `unpack <snapshots> <tmp> <kind> <tarFile> <diffId> <chunkDelayMs>`: unpacks a layer read slowly from a file.
 * `prepare <snapshots> <tmp> <kind> <key> [persistent]`: prepares an empty active snapshot and exits.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseDigest } from '../../src/core/index.js';
import { NaiveSnapshotter, OverlaySnapshotter } from '../../src/snapshot/index.js';

const [cmd, snapshots, tmp, kind, a, b, c] = process.argv.slice(2) as string[];
const dirs = { snapshots: snapshots as string, tmp: tmp as string };
const s = kind === 'naive' ? new NaiveSnapshotter(dirs) : new OverlaySnapshotter(dirs);

async function* slowly(file: string, delayMs: number): AsyncGenerator<Buffer> {
  for await (const chunk of createReadStream(file, { highWaterMark: 64 * 1024 })) {
    yield chunk as Buffer;
    if (delayMs > 0) await sleep(delayMs);
  }
}

if (cmd === 'unpack') {
  const info = await s.unpack(undefined, parseDigest(b as string), () => Readable.from(slowly(a as string, Number(c))));
  process.stdout.write(`${JSON.stringify(info)}\n`);
} else if (cmd === 'prepare') {
  await s.prepare(a as string, undefined, { persistent: b === 'persistent' });
  process.stdout.write('prepared\n');
}
