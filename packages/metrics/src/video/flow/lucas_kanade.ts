/**
 * Dense pyramidal Lucas–Kanade optical flow in TF.js.
 *
 * Lucas & Kanade (IJCAI 1981) solve, in a window around every pixel, the 2×2 normal equations of
 * the linearised brightness constancy `I_x du + I_y dv + I_t = 0`:
 *
 * ```
 * [Σ I_x²   Σ I_x I_y] [du]     [Σ I_x I_t]
 * [Σ I_x I_y  Σ I_y² ] [dv] = − [Σ I_y I_t]
 * ```
 *
 * Here every pixel gets its own window (a Gaussian-weighted sum computed for all pixels at once
 * with separable convolutions, as the reference note proposes for TF.js), the system is solved in
 * closed form, and pixels whose smaller eigenvalue λ_min is below `minEigenvalue` (untextured or
 * aperture-limited windows, OpenCV's `minEigThreshold` idea) keep the flow propagated from the
 * coarser level. Large motions use Bouguet's pyramidal scheme ("Pyramidal implementation of the
 * Lucas Kanade feature tracker", Intel 2000): coarse-to-fine, with `iterations` warps per level.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '@diffmem/core';
import {
  CoarseToFineFlow,
  DEFAULT_PYRAMID_CONFIG,
  validateIterationCount,
  validateMedianSize,
  validatePyramidConfig,
  type PyramidConfig,
} from './estimator.js';
import { gaussianBlur, gradients, replaceByMedian } from './ops.js';
import { linearizeAtFlow } from './warp.js';

/** Configuration of {@link LucasKanadeFlow}. */
export interface LucasKanadeConfig extends PyramidConfig {
  /** σ (pixels) of the Gaussian integration window (default 2, ≈ a 13×13 window). */
  windowSigma: number;
  /** Warp-and-solve iterations per pyramid level (default 5). */
  iterations: number;
  /**
   * Minimum λ_min of the window's mean structure tensor, in (intensity/pixel)² for intensities in
   * [0, 1] (default 1e-6); smaller windows get no update.
   */
  minEigenvalue: number;
  /** Median filter size applied to the flow after each level (default 5; 0 or 1 = off). */
  medianSize: number;
}

/** Default {@link LucasKanadeConfig}. */
export const DEFAULT_LUCAS_KANADE_CONFIG: Readonly<LucasKanadeConfig> = {
  ...DEFAULT_PYRAMID_CONFIG,
  windowSigma: 2,
  iterations: 5,
  minEigenvalue: 1e-6,
  medianSize: 5,
};

/** Dense pyramidal Lucas–Kanade flow (see the module documentation). */
export class LucasKanadeFlow extends CoarseToFineFlow<LucasKanadeConfig> {
  readonly name = 'lucas-kanade';

  constructor(config: Partial<LucasKanadeConfig> = {}) {
    const c = { ...DEFAULT_LUCAS_KANADE_CONFIG, ...config };
    validatePyramidConfig(c, 'LucasKanadeFlow');
    if (!(c.windowSigma > 0 && Number.isFinite(c.windowSigma))) {
      throw new ConfigError(`LucasKanadeFlow: windowSigma must be > 0, got ${c.windowSigma}`);
    }
    validateIterationCount(c.iterations, 'iterations', 'LucasKanadeFlow');
    if (!(c.minEigenvalue >= 0 && Number.isFinite(c.minEigenvalue))) {
      throw new ConfigError(`LucasKanadeFlow: minEigenvalue must be a finite number ≥ 0, got ${c.minEigenvalue}`);
    }
    validateMedianSize(c.medianSize, 'LucasKanadeFlow');
    super(c, 'LucasKanadeFlow');
  }

  protected refineLevel(i0: tf.Tensor4D, i1: tf.Tensor4D, init: tf.Tensor4D): tf.Tensor4D {
    const c = this.config;
    let flow = tf.clone(init);
    const grad0 = gradients(i0);
    try {
      for (let k = 0; k < c.iterations; k++) {
        const next = tf.tidy(() => {
          const { ix, iy, it } = linearizeAtFlow(i0, grad0, i1, flow);
          // Window sums of the five products in one blur of a 5-channel stack.
          const s = gaussianBlur(
            tf.concat([tf.square(ix), tf.mul(ix, iy), tf.square(iy), tf.mul(ix, it), tf.mul(iy, it)], 3) as tf.Tensor4D,
            c.windowSigma,
          );
          const [sxx, sxy, syy, sxt, syt] = tf.split(s, 5, 3) as tf.Tensor4D[] as [
            tf.Tensor4D,
            tf.Tensor4D,
            tf.Tensor4D,
            tf.Tensor4D,
            tf.Tensor4D,
          ];
          const det = tf.sub(tf.mul(sxx, syy), tf.square(sxy));
          const halfTrace = tf.mul(tf.add(sxx, syy), 0.5);
          const disc = tf.sqrt(tf.add(tf.square(tf.mul(tf.sub(sxx, syy), 0.5)), tf.square(sxy)));
          const lambdaMin = tf.sub(halfTrace, disc);
          const ok = tf.logicalAnd(tf.greater(lambdaMin, c.minEigenvalue), tf.greater(det, 0));
          const safeDet = tf.where(ok, det, tf.onesLike(det));
          const du = tf.div(tf.add(tf.neg(tf.mul(syy, sxt)), tf.mul(sxy, syt)), safeDet);
          const dv = tf.div(tf.sub(tf.mul(sxy, sxt), tf.mul(sxx, syt)), safeDet);
          const zero = tf.zerosLike(du);
          const delta = tf.concat([tf.where(ok, du, zero), tf.where(ok, dv, zero)], 3);
          return tf.add(flow, delta) as tf.Tensor4D;
        });
        flow.dispose();
        flow = next;
      }
      flow = replaceByMedian(flow, c.medianSize);
    } catch (e) {
      flow.dispose();
      throw e;
    } finally {
      tf.dispose(grad0);
    }
    return flow;
  }
}
