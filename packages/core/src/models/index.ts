/**
 * Models: diffusers' UNet2DModel ported to TensorFlow.js (NHWC), its building blocks, and
 * diffusers-folder loading / saving. (`Denoiser` lives in `./types.ts`, exported by the package.)
 * @module
 */
export * from './unet_2d_config.js';
export * from './modeling_utils.js';
export * from './activations.js';
export * from './layers.js';
export * from './normalization.js';
export * from './embeddings.js';
export * from './downsampling.js';
export * from './upsampling.js';
export * from './resnet.js';
export * from './attention.js';
export * from './model_with_weights.js';
export * from './unet_2d_blocks.js';
export * from './unet_2d.js';
export * from './pretrained.js';
