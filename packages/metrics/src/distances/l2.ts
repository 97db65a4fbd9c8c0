/**
 * Root-mean-square ℓ2 distance between images, the pixel distance of Carlini et al. (2023,
 * "Extracting Training Data from Diffusion Models", ℓ2(x, x̂) = sqrt(Σ(x − x̂)² / d)) and of the AMG
 * code (`mem_util.L2`: `sqrt(mean((a−b)²))/2` on [−1,1] images, i.e. the same RMS in [0,1] units).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '@diffmem/core';
import { checkTensor } from '../internal/checks.js';

/** Options of {@link rmsL2}. */
export interface RmsL2Options {
  /**
   * Added inside the square root (default 0). Use a tiny value (e.g. 1e-12) when differentiating:
   * d sqrt(u)/du is infinite at u = 0 (an exact copy).
   */
  eps?: number;
}

/** Checks that `b` matches `a` item-wise, with b's batch either N or 1 (broadcast). */
export function checkPair(a: tf.Tensor, b: tf.Tensor, nameA = 'a', nameB = 'b'): void {
  checkTensor(a, nameA);
  checkTensor(b, nameB);
  const ia = a.shape.slice(1);
  const ib = b.shape.slice(1);
  if (ia.length !== ib.length || ia.some((d, i) => d !== ib[i])) {
    throw new ShapeError(`${nameA} items have shape [${ia.join(',')}] but ${nameB} items have [${ib.join(',')}]`, {
      expected: ia,
      actual: ib,
    });
  }
  if (b.shape[0] !== a.shape[0] && b.shape[0] !== 1) {
    throw new ShapeError(`${nameB} must have ${a.shape[0]} items (or 1, broadcast), got ${b.shape[0]}`, {
      expected: a.shape[0],
      actual: b.shape[0],
    });
  }
}

/**
 * Per-item RMS distance sqrt(mean over all non-batch axes of (a − b)²): a Tensor1D of length N.
 * For display images ([N,H,W,C] in [0,1]) the result is in [0,1] units. Pure tf ops: usable
 * inside `tf.grad` (with `eps > 0`). Inputs are not disposed.
 */
export function rmsL2(a: tf.Tensor, b: tf.Tensor, options: RmsL2Options = {}): tf.Tensor1D {
  checkPair(a, b);
  const eps = options.eps ?? 0;
  return tf.tidy(() => {
    const n = a.shape[0] as number;
    const d = tf.reshape(tf.sub(a, b), [n, -1]);
    const ms = tf.mean(tf.square(d), 1);
    return tf.sqrt(eps > 0 ? tf.add(ms, eps) : ms) as tf.Tensor1D;
  });
}

/**
 * All-pairs RMS distance [Na, Nb] between two sets (flattened per item) via
 * ‖a‖² − 2a·b + ‖b‖² (both centred on b's mean first to limit float32 cancellation; remaining
 * error is ≈1e-4 of the typical distance). For searches against a large set use
 * `ReferenceIndex`, which also re-scores neighbours exactly.
 */
export function pairwiseRmsL2(a: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  checkTensor(a, 'a');
  checkTensor(b, 'b');
  const da = a.size / (a.shape[0] as number);
  const db = b.size / (b.shape[0] as number);
  if (da !== db) throw new ShapeError(`a items have ${da} values but b items have ${db}`, { expected: da, actual: db });
  return tf.tidy(() => {
    const A0 = tf.reshape(a, [a.shape[0] as number, da]);
    const B0 = tf.reshape(b, [b.shape[0] as number, db]);
    const mu = tf.mean(B0, 0, true);
    const A = tf.sub(A0, mu);
    const B = tf.sub(B0, mu);
    const na = tf.sum(tf.square(A), 1, true); // [Na,1]
    const nb = tf.reshape(tf.sum(tf.square(B), 1), [1, -1]); // [1,Nb]
    // Explicit transpose: matMul's transposeB flag is ~10x slower on the wasm backend.
    const d2 = tf.add(tf.sub(na, tf.mul(tf.matMul(A, tf.transpose(B)), 2)), nb);
    return tf.sqrt(tf.div(tf.relu(d2), da)) as tf.Tensor2D;
  });
}
