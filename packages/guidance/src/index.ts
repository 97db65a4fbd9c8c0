/**
 * @diffmem/guidance — Anti-Memorization Guidance (Chen, Liu & Xu, CVPR 2024) samplers,
 * inference-time mitigation baselines (GNI, Jain et al. CFG schedules) and the evaluation harness.
 * @packageDocumentation
 */
export * from './thresholds.js';
export * from './similarity.js';
export * from './terms.js';
export * from './amg_pipeline.js';
export * from './presets.js';
export * from './class_embedding.js';
export * from './baselines.js';
export * from './evaluate.js';
