import * as tf from '@tensorflow/tfjs-core';
import { Generator, type ImageBatch } from '@diffmem/core';

/** Smooth random display images in [lo, hi]: a 4×4 uniform grid per channel, upsampled bilinearly. */
export function smoothImages(n: number, size: number, channels: number, seed: number, lo = 0, hi = 1): ImageBatch<'display'> {
  const g = new Generator(seed);
  return tf.tidy(() => {
    const small = tf.tensor4d(Float32Array.from(g.uniformArray(n * 16 * channels), (v) => lo + (hi - lo) * v), [n, 4, 4, channels]);
    return tf.image.resizeBilinear(small, [size, size], true);
  }) as ImageBatch<'display'>;
}

/** Display [0,1] → model [−1,1]. */
export function toModel(x: tf.Tensor): ImageBatch<'model'> {
  return tf.tidy(() => tf.sub(tf.mul(x, 2), 1)) as ImageBatch<'model'>;
}

/** Model → display. */
export function toDisplay(x: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => tf.mul(tf.add(x, 1), 0.5)) as tf.Tensor4D;
}

/** Fraction of values with |v| ≥ 0.999 (clipped pixels). */
export function saturation(x: tf.Tensor): number {
  return tf.tidy(() => tf.mean(tf.cast(tf.greaterEqual(tf.abs(x), 0.999), 'float32')).dataSync()[0] as number);
}

/** Max |a − b|. */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}
