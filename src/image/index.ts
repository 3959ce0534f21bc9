export * from './changes.js';
export * from './config.js';
export * from './manifest.js';
export * from './platform.js';
export * from './validate.js';
