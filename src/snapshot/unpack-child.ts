/**
 * Child process entry of {@link applyLayerAsSubIds} (unpack-userns.ts), run as root of a user namespace
 * over the caller's sub-ids: applies the uncompressed layer tar on stdin into `argv[2]` with the JSON
 * ApplyOptions of `argv[3]` (owners restored: uid 1000 becomes the mapped host id), then writes one JSON
 * result line on stdout: `{"ok":true}` or `{"ok":false,"code":...,"message":...}`.
 */
import { isTsbuildError } from '../core/index.js';
import { applyLayer, type ApplyOptions } from '../layer/index.js';

const [dest, json] = process.argv.slice(2);
try {
  if (dest === undefined || json === undefined) throw new Error('usage: unpack-child DEST OPTIONS_JSON');
  await applyLayer(process.stdin, dest, { ...(JSON.parse(json) as ApplyOptions), privileged: true });
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
} catch (err) {
  const e = err as Error & { hint?: unknown };
  process.stdout.write(`${JSON.stringify({ ok: false, code: isTsbuildError(err) ? err.code : 'SNAPSHOT_IO', message: e.message, hint: typeof e.hint === 'string' ? e.hint : undefined })}\n`);
  process.exitCode = 1;
}
