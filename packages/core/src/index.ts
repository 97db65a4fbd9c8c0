/**
 * @diffmem/core — the typed tensor contract, backends, noise schedules, schedulers, UNet2DModel,
 * safetensors and training shared by every diffmem package.
 * @packageDocumentation
 */
import './backend/gradients.js';

export * from './errors.js';
export * from './tensor/types.js';
export * from './tensor/validate.js';
export * from './tensor/convert.js';
export * from './random.js';
export * from './backend/select.js';
export * from './backend/kernels/index.js';
export * from './models/types.js';
// --- module exports added by feature work below (one line each) ---
export * from './io/image.js';
export * from './data/dataset.js';
export * from './parallel/pool.js';
export * from './models/empirical_denoiser.js';
export * from './schedulers/index.js';
export * from './pipelines/index.js';
export * from './training/optimizer.js';
export * from './training/ema.js';
export * from './training/loss.js';
export * from './training/trainer.js';
export * from './training/train_unet.js';
export * from './models/index.js';
export * from './safetensors/index.js';
export * from './data/moving_digits.js';
export * from './models/video/index.js';
