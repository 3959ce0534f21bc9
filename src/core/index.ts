export * from './digest.js';
export * from './errors.js';
export * from './events.js';
export * from './oci.js';
export * from './suggest.js';
export * from './reference.js';
