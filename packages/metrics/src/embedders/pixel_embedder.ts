/**
 * The pixel-space frame descriptor of the reference note (§8, "a weight-free fallback, such as a
 * 32×32 grayscale … vector"): frames resized to a small grayscale grid, mean-centred and
 * L2-normalised, so the descriptor cosine is the normalised cross-correlation of the two frames.
 *
 * For synthetic data (moving digits on black) it is the stricter copy test: the learned-free
 * {@link CopyDescriptorEmbedder} is built for photographs and rates any two frames with a digit
 * blob at the same place as near-duplicates, whereas the cross-correlation also needs the same
 * strokes. Use it through the same {@link VideoReferenceIndex} / {@link contentScore} as any embedder.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, type ImageBatch } from '@diffmem/core';
import { resizeAntialiased } from './preprocess.js';
import type { Embedder } from './types.js';

/** Options of {@link PixelFrameEmbedder}. */
export interface PixelFrameEmbedderOptions {
  /** Side of the square grid frames are resized to (default 16). */
  size?: number;
}

/** Normalised cross-correlation descriptor: centred, L2-normalised grayscale pixels (dim size²). */
export class PixelFrameEmbedder implements Embedder {
  readonly name: string;
  readonly dim: number;
  readonly preprocess = null;
  readonly size: number;

  constructor(options: PixelFrameEmbedderOptions = {}) {
    const size = options.size ?? 16;
    if (!Number.isInteger(size) || size < 2) throw new ConfigError(`PixelFrameEmbedder: size must be an integer ≥ 2, got ${size}`);
    this.size = size;
    this.dim = size * size;
    this.name = `diffmem-pixel-ncc-${size}`;
  }

  embed(images: ImageBatch<'display'> | tf.Tensor4D): tf.Tensor2D {
    if (!(images instanceof tf.Tensor) || images.rank !== 4 || (images.shape[3] !== 1 && images.shape[3] !== 3)) {
      throw new ShapeError(`PixelFrameEmbedder: images must be [N,H,W,1|3], got ${images instanceof tf.Tensor ? `[${images.shape.join(',')}]` : typeof images}`);
    }
    return tf.tidy(() => {
      const gray = images.shape[3] === 1 ? images : (tf.sum(tf.mul(images, tf.tensor1d([0.299, 0.587, 0.114])), 3, true) as tf.Tensor4D);
      const small = resizeAntialiased(gray as tf.Tensor4D, this.size, this.size);
      const flat = tf.reshape(small, [images.shape[0], this.dim]);
      const centred = tf.sub(flat, tf.mean(flat, 1, true));
      // A flat frame has no pattern: its row is zero (cosine 0 with everything), not normalised round-off.
      const norm = tf.norm(centred, 2, 1, true);
      const inv = tf.where(tf.greater(norm, 1e-5), tf.div(1, tf.maximum(norm, 1e-12)), tf.zerosLike(norm));
      return tf.mul(centred, inv) as tf.Tensor2D;
    });
  }
}
