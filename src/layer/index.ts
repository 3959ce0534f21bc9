/**
 * layer: deterministic layer tars (pack), safe extraction with OCI whiteouts (apply) and
 * (de)compression. Errors are TsbuildErrors with `LAYER_*` codes.
 */
export { packLayer, type PackMode, type PackOptions, type PackResult, type PackedLayer } from './pack.js';
