/**
 * A pixel-space descriptor: the image resized to s×s grayscale, mean-centred and L2-normalised,
 * so the cosine of two descriptors is their Pearson correlation at that resolution.
 *
 * For synthetic or very simple data (digits on black, moving-digit clips) the weight-free copy
 * descriptor — built for photographs — sees every image as "dark with a few strokes" and rates
 * unrelated digits as near-copies; pixel correlation separates them. It is not robust to crops or
 * flips, so it is no substitute for a copy-detection model on natural images.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '@diffmem/core';
import type { ImageBatch } from '@diffmem/core';
import { l2NormalizeRows, type Embedder } from './types.js';

/** See the module docs. */
export class PixelEmbedder implements Embedder {
  readonly name: string;
  readonly dim: number;
  readonly preprocess = 'custom' as const;

  /** @param size side of the grayscale grid (default 16). */
  constructor(readonly size = 16) {
    if (!Number.isInteger(size) || size < 2) throw new ConfigError(`PixelEmbedder size must be an integer >= 2, got ${size}`);
    this.name = `pixel-correlation-${size}`;
    this.dim = size * size;
  }

  embed(images: ImageBatch<'display'> | tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const c = images.shape[3];
      const gray = c === 1 ? images : tf.mean(images, 3, true);
      const small = tf.image.resizeBilinear(gray as tf.Tensor4D, [this.size, this.size], false, true);
      const flat = tf.reshape(small, [images.shape[0], this.dim]) as tf.Tensor2D;
      return l2NormalizeRows(tf.sub(flat, tf.mean(flat, 1, true)) as tf.Tensor2D);
    });
  }
}
