/**
 * A small factorised space-time video diffusion model (VideoUNetModel) built from core's UNet2D
 * blocks, its training through core's trainer, DDIM clip sampling and folder save/load.
 * @module
 */
export * from './video_unet_config.js';
export * from './temporal_layers.js';
export * from './video_unet_blocks.js';
export * from './video_unet.js';
export * from './pretrained.js';
export * from './train_video.js';
export * from './pipeline_video_ddim.js';
