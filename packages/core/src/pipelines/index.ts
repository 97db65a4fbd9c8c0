/**
 * Sampling pipelines (DDPM, DDIM), DDIM inversion and closed-form test denoisers.
 * @module
 */
export * from './pipeline_utils.js';
export * from './pipeline_ddpm.js';
export * from './pipeline_ddim.js';
export * from './ddim_inversion.js';
export * from './analytic_denoisers.js';
