/**
 * Conditioning attribution of Wen et al. (ICLR 2024 §4, `get_text_cond_grad`): how strongly each
 * part of the conditioning drives the memorization signal, measured as the gradient norm of the
 * detection magnitude with respect to the conditioning embedding,
 *
 *   a = (1/|T'|) Σ_t ‖∂ L_t / ∂e‖,   L_t = ‖ε_θ(x_t, e) − ε_θ(x_t, e_∅)‖₂,
 *
 * with L_t the norm over the whole batch of generations (as the official code) and, for a
 * sequence embedding [L, d] (text tokens), one norm per row (Wen's per-token significance; the
 * official code averages the per-step row norms over steps — so do we).
 *
 * For class-conditional models the conditioning is the class-embedding row: pass that row (read
 * from the model's class-embedding table) as `embedding`, the null row as `nullEmbedding`, and a
 * `predict` that runs the model with an embedding vector in place of the table lookup. The
 * core `Denoiser` interface takes class ids, not vectors, so this function takes that
 * embedding-level forward pass from the caller.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '@diffmem/core';
import type { TrajectoryStep } from './wen.js';

/** A model forward pass with the conditioning given as an embedding: [N, ...embShape] per sample. */
export type EmbeddingDenoiserFn = (sample: tf.Tensor4D, timestep: number, embedding: tf.Tensor) => tf.Tensor4D;

/** Options of {@link conditioningAttribution}. */
export interface AttributionOptions {
  /** The conditioning embedding e: [d] (a class-embedding row) or [L, d] (token embeddings). */
  embedding: tf.Tensor;
  /** The unconditional embedding e_∅, same shape. */
  nullEmbedding: tf.Tensor;
  /** x_t at the steps to use (Wen: the sampling trajectory; `target_steps`). */
  trajectory: Iterable<TrajectoryStep>;
}

/** What {@link conditioningAttribution} returns. */
export interface AttributionResult {
  /** Mean over steps of ∂L_t/∂e (shape of `embedding`; caller disposes). */
  gradient: tf.Tensor;
  /** Mean over steps of ‖∂L_t/∂e‖ (whole embedding). */
  gradientNorm: number;
  /** For a [L, d] embedding: mean over steps of the per-row gradient norms (token significance). */
  rowNorms: number[] | null;
  /** L_t per step. */
  magnitudes: number[];
}

/** Gradient-norm attribution of the Wen et al. magnitude to the conditioning embedding. */
export function conditioningAttribution(predict: EmbeddingDenoiserFn, options: AttributionOptions): AttributionResult {
  const { embedding, nullEmbedding } = options;
  if (!(embedding instanceof tf.Tensor) || !(nullEmbedding instanceof tf.Tensor)) throw new ConfigError('embedding and nullEmbedding must be tensors');
  if (embedding.shape.join(',') !== nullEmbedding.shape.join(',')) {
    throw new ShapeError(`embedding [${embedding.shape.join(',')}] and nullEmbedding [${nullEmbedding.shape.join(',')}] differ in shape`);
  }
  if (embedding.rank < 1 || embedding.rank > 2) throw new ShapeError(`embedding must be [d] or [L, d], got [${embedding.shape.join(',')}]`);
  const rank = embedding.rank;
  let gradSum: tf.Tensor | null = null;
  let normSum = 0;
  let rowSum: Float64Array | null = rank === 2 ? new Float64Array(embedding.shape[0] as number) : null;
  const magnitudes: number[] = [];
  let steps = 0;
  try {
    for (const st of options.trajectory) {
      const n = st.sample.shape[0];
      const tileTo = (e: tf.Tensor) => tf.tile(tf.expandDims(e, 0), [n, ...e.shape.map(() => 1)]);
      const f = (e: tf.Tensor) =>
        tf.tidy(() => {
          const cond = predict(st.sample, st.timestep, tileTo(e));
          const uncond = predict(st.sample, st.timestep, tileTo(nullEmbedding));
          return tf.norm(tf.sub(cond, uncond)) as tf.Scalar;
        });
      const { value, grad } = tf.valueAndGrad(f)(embedding);
      magnitudes.push(value.dataSync()[0] as number);
      value.dispose();
      const gn = tf.tidy(() => tf.norm(grad));
      normSum += gn.dataSync()[0] as number;
      gn.dispose();
      if (rowSum) {
        const rn = tf.tidy(() => tf.norm(grad, 2, 1));
        const v = rn.dataSync();
        rn.dispose();
        for (let i = 0; i < rowSum.length; i++) rowSum[i] = (rowSum[i] as number) + (v[i] as number);
      }
      if (gradSum === null) gradSum = grad;
      else {
        const next: tf.Tensor = tf.add(gradSum, grad);
        gradSum.dispose();
        grad.dispose();
        gradSum = next;
      }
      steps++;
    }
  } catch (err) {
    gradSum?.dispose();
    throw err;
  }
  if (steps === 0 || gradSum === null) throw new ConfigError('the trajectory is empty: give at least one {timestep, sample} step');
  const gradient = tf.div(gradSum, steps);
  gradSum.dispose();
  const rows = rowSum ? Array.from(rowSum, (v) => v / steps) : null;
  rowSum = null;
  return { gradient, gradientNorm: normSum / steps, rowNorms: rows, magnitudes };
}
