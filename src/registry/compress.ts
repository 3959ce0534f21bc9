/**
 * The per-diffID gzip memo moved to the store (src/store/layer-gzip.ts) so that `tsbuild save`
 * and the build's archive outputs reuse it; push and the registry cache import it from here.
 */
export { compressedLayer, isUncompressedLayer, withCompressedLayers } from '../store/index.js';
