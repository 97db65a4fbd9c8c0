/**
 * Object-level similarity to the training set: the cosine between copy-detection embeddings of a
 * generated image and of its nearest training image.
 * - Somepalli et al. (CVPR 2023) replication score: max over the training set of
 *   cos(SSCD(g), SSCD(x)) (`diff_retrieval.py`: L2-normalised descriptors, dot product).
 * - AMG (CVPR 2024) Eq. 9: σ_t = E(x̂0)ᵀE(n0) with n0 the nearest neighbour under that metric.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '@diffmem/core';
import type { ReferenceId, ReferenceIndex } from '../reference_index.js';

/** Per-query best cosine similarity and the matching reference. */
export interface NearestCosineResult {
  similarity: number[];
  nearestIndex: number[];
  nearestId: ReferenceId[];
}

function checkEmbeddings(e: tf.Tensor, index: ReferenceIndex): void {
  if (e.rank !== 2 || e.shape[1] !== index.dim) {
    throw new ShapeError(`embeddings must be [N, ${index.dim}] to match the index, got [${e.shape.join(',')}]`, {
      expected: [null, index.dim],
      actual: e.shape,
    });
  }
}

/** The replication score (max cosine over the index) of every embedding row [N, D]. */
export function nearestCosine(embeddings: tf.Tensor, index: ReferenceIndex): NearestCosineResult {
  checkEmbeddings(embeddings, index);
  const res = index.search(embeddings, { k: 1, metric: 'cosine' });
  return {
    similarity: res.values.map((v) => v[0] as number),
    nearestIndex: res.indices.map((v) => v[0] as number),
    nearestId: res.ids.map((v) => v[0] as ReferenceId),
  };
}

/**
 * AMG Eq. 9 as a differentiable function of the embeddings (for guidance through an embedder):
 * σ = cos(e, E(n0)) with n0 found on a detached copy. `sigma` is a new tensor (caller disposes).
 */
export function nearestCosineDifferentiable(
  embeddings: tf.Tensor,
  index: ReferenceIndex,
): NearestCosineResult & { sigma: tf.Tensor1D } {
  const info = nearestCosine(embeddings, index);
  const refs = index.gather(info.nearestIndex);
  try {
    const sigma = tf.tidy(() => {
      const rn = tf.div(refs, tf.maximum(tf.norm(refs, 2, 1, true), 1e-12));
      const en = tf.div(embeddings, tf.maximum(tf.norm(embeddings, 2, 1, true), 1e-12));
      return tf.sum(tf.mul(en, rn), 1) as tf.Tensor1D;
    });
    return { ...info, sigma };
  } finally {
    refs.dispose();
  }
}
