/**
 * Noise schedules and the DDPM-family schedulers (diffusers layout: one file per scheduler).
 * @module
 */
export * from './schedule.js';
export * from './scheduling_utils.js';
export * from './scheduling_ddpm.js';
export * from './scheduling_ddim.js';
export * from './scheduling_ddim_inverse.js';
export * from './auto.js';
