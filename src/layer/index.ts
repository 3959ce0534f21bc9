/**
 * layer: deterministic layer tars (pack), safe extraction with OCI whiteouts (apply) and
 * (de)compression. Errors are TsbuildErrors with `LAYER_*` codes.
 *
 * Typical use:
 * - build: `const { stream, done } = packLayer(upperdir, { mode: 'changeset', sourceDateEpoch })`,
 *   store `stream` as the uncompressed blob, then `(await done).diffId`.
 * - push/save: `compressGzipFile(blobPath, { tools: findCompressionTools(PATH) })` (or `compressGzip(stream)`).
 * - unpack: `await applyLayer(decompressFile(blobPath, { tools }), snapshotDir, { whiteouts: 'overlay' })`
 *   (or `decompress(stream, { tools })` for a stream).
 *
 * Layer tars are read and written by our own small tar codec (tar-header.ts, tar-reader.ts):
 * tar-stream decodes PAX values as UTF-8 and would corrupt binary xattrs such as security.capability.
 */
export { packLayer, type PackMode, type PackOptions, type PackResult, type PackedLayer } from './pack.js';
export { applyLayer, type ApplyOptions, type ApplyReport, type WhiteoutMode } from './apply.js';
export { readTar, type TarEntry, type TarReadLimits } from './tar-reader.js';
export { StreamHasher } from './hasher.js';
export type { EntryType, TarHeader, TarXattr } from './tar-header.js';
export { encodeHeader as encodeTarHeader } from './tar-header.js';
export { Batcher as TarBatcher } from './batcher.js';
export {
  compressGzip, compressGzipFile, decompress, decompressFile, detectCompression, findCompressionTools,
  type Compression, type CompressionTools, type CompressOptions, type DecompressOptions,
} from './compress.js';
