/**
 * Shared fixtures of the SolidMark tests: schedulers, a small real dataset (the MNIST digits
 * embedded in core) and two reference denoisers with known answers.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  DDIMScheduler,
  DDPMScheduler,
  EmpiricalDenoiser,
  loadEmbeddedDigits,
  type Denoiser,
  type DenoiserInfo,
  type ImageBatch,
  type ImageDataset,
} from '@diffmem/core';
import type { RePaintScheduler } from '../index.js';

// Compile-time check: core's schedulers satisfy the structural scheduler type of outpainting.
export const schedulerTypeCheck: Array<(s: DDPMScheduler | DDIMScheduler) => RePaintScheduler> = [(s) => s];

/** A DDIM scheduler over the default linear schedule (T = 1000). */
export function ddim(): DDIMScheduler {
  return new DDIMScheduler();
}

/** A DDPM scheduler over the default linear schedule (T = 1000). */
export function ddpm(): DDPMScheduler {
  return new DDPMScheduler();
}

/** `perClass` MNIST digits per class (28 px, 1 channel, display space), images owned by the caller. */
export function digits(perClass: number, classes?: number[]): ImageDataset {
  return loadEmbeddedDigits({ perClass, ...(classes ? { classes } : {}) });
}

/** The closed-form optimal denoiser of `images` (a perfect memorizer). */
export function memorizer(images: ImageBatch<'model'>, alphas: Float32Array, labels?: Int32Array, numClasses?: number): EmpiricalDenoiser {
  return new EmpiricalDenoiser(images, { alphasCumprod: alphas, ...(labels ? { labels, numClasses } : {}) });
}

/** ε̂ ≡ 0: a model that knows nothing (its outpainted border is unrelated to any key). */
export class ZeroEpsDenoiser implements Denoiser {
  readonly info: DenoiserInfo;
  constructor(sampleSize: number, channels: number, numClassEmbeds: number | null = null) {
    this.info = { sampleSize, inChannels: channels, outChannels: channels, numClassEmbeds };
  }
  predict(sample: tf.Tensor4D): tf.Tensor4D {
    return tf.zerosLike(sample);
  }
}
