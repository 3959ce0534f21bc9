/**
 * layer: deterministic layer tars (pack), safe extraction with OCI whiteouts (apply) and
 * (de)compression. Errors are TsbuildErrors with `LAYER_*` codes.
 */
export { packLayer, type PackMode, type PackOptions, type PackResult, type PackedLayer } from './pack.js';
export { applyLayer, type ApplyOptions, type ApplyReport, type WhiteoutMode } from './apply.js';
export { readTar, type TarEntry, type TarReadLimits } from './tar-reader.js';
export type { EntryType, TarHeader, TarXattr } from './tar-header.js';
export {
  compressGzip, decompress, detectCompression, findCompressionTools,
  type Compression, type CompressionTools, type CompressOptions, type DecompressOptions,
} from './compress.js';
