/**
 * The copy-detection embedder contract: images in, one L2-normalised descriptor per image out,
 * so similarity is a dot product (the SSCD convention of Somepalli et al. 2023 and AMG Eq. 9).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ImageBatch } from '@diffmem/core';
import type { PreprocessPresetName } from './preprocess.js';

/** A copy-detection descriptor. */
export interface Embedder {
  /** Identifies the model and version, e.g. `'sscd_disc_mixup'`, `'diffmem-copy-descriptor-v1'`. */
  readonly name: string;
  /** Descriptor length. */
  readonly dim: number;
  /**
   * The preprocessing preset the embedder applies (thresholds are only meaningful for a fixed
   * model *and* preprocessing), or null for embedders with their own fixed pipeline.
   */
  readonly preprocess: PreprocessPresetName | 'custom' | null;
  /**
   * Embeds display-space images [N,H,W,3|1] → [N, dim], each row L2-normalised. Returns a new
   * tensor (caller disposes) and never disposes its input; tidy-safe.
   */
  embed(images: ImageBatch<'display'> | tf.Tensor4D): tf.Tensor2D;
}

/** L2-normalises the rows of a [N, D] tensor (zero rows stay zero). Tidy-safe. */
export function l2NormalizeRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.maximum(tf.norm(x, 2, 1, true), 1e-12)) as tf.Tensor2D);
}
