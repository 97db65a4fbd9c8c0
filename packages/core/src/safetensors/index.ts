/**
 * safetensors reading and writing.
 * @module
 */
export * from './dtypes.js';
export * from './safetensors.js';
export * from './files.js';
