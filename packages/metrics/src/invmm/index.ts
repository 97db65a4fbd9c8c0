/**
 * InvMM, the inversion-based memorization measure (Ma et al., ICCV 2025): per-image KL of the
 * noise distribution that makes a diffusion model replicate the image. See `docs/invmm.md`.
 * @module
 */
export * from './presets.js';
export * from './schedule.js';
export * from './model.js';
export * from './objective.js';
export * from './sampler.js';
export * from './replication.js';
export * from './invert.js';
export * from './record_io.js';
export * from './audit.js';
export * from './auc.js';
export * from './empirical_model.js';
export * from './evaluate.js';
export type { InvMMImageTaskArg } from './worker_task.js';
export * from './executor.js';
export * from './parallel.js';
export type {
  InvMMConditionData,
  InvMMGradShardData,
  InvMMGradShardResult,
  InvMMGradShardTaskArg,
  InvMMProbeResult,
  InvMMProbeTaskArg,
  InvMMSampleShardData,
  InvMMSampleShardTaskArg,
} from './shard_task.js';
