/**
 * Object-motion profiles for clips filmed by a static camera on an untextured background — the
 * moving-digits setting — for OFS-k through {@link MotionReferenceIndex}.
 *
 * {@link MotionAnalyzer} compensates camera motion by removing the best affine flow field and
 * treats pairs whose residual is small as camera-only motion (NMF, `video-memorization.md` §3). On
 * a black background every dense estimator fills the untextured area with the object's motion
 * (Horn–Schunck by smoothness, pyramidal Lucas–Kanade by propagation from coarse levels), so a lone
 * moving digit yields an almost affine field (residual ratio ≈ 0.01–0.05) and MotionAnalyzer rightly
 * calls it camera motion: every moving-digits clip gets an undefined motion score.
 *
 * Here the camera is static by construction, so no camera term is removed; instead the flow is
 * weighted by the image support w = max(I_t, I_{t+s}) (untextured pixels carry no motion evidence —
 * the aperture problem), pooled to the analyser's descriptor grid and L2-normalised:
 *
 * ```
 * d_i = pool(w_i ⊙ F_i) / ‖pool(w_i ⊙ F_i)‖₂
 * ```
 *
 * so the cosine compares where things move and in which direction. The analyser's flow estimator,
 * grids, stride and NMF static gates (data-juicer mean magnitude, VBench dynamic degree) are used
 * unchanged; the camera rule is off (every pair's residual ratio is reported as 1). The profiles
 * are ordinary {@link MotionProfile}s: OFS-k and its three readings apply as is.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Video } from '@diffmem/core';
import { resizeAntialiased } from '../../embedders/preprocess.js';
import { clipFlow, toLuma } from '../flow/estimator.js';
import type { MotionAnalyzer, MotionProfile } from '../motion.js';
import { flowMagnitudeStats, naturalMotionDecision, vbenchDynamic } from '../natural_motion.js';
import { checkClip, readTensor } from '../validate.js';

/**
 * The object-motion profile of a display-space clip [T,H,W,C] on `analyzer`'s grids (see the module
 * documentation). Clips with ≤ stride frames get a profile with no pairs and a reason.
 */
export function objectMotionProfile(analyzer: MotionAnalyzer, frames: Video<'display'> | tf.Tensor4D): MotionProfile {
  const { clip } = checkClip(frames, 'clip');
  const c = analyzer.config;
  const [h, w] = c.size;
  const [dh, dw] = c.descriptorSize;
  const t = clip.shape[0];
  const base = {
    frames: t,
    sourceFrames: t,
    fps: c.fps,
    stride: c.stride,
    size: c.size,
    descriptorSize: c.descriptorSize,
    dim: analyzer.dim,
    estimator: c.estimator.name,
  };
  if (t <= c.stride) {
    return {
      ...base,
      pairs: 0,
      meanMagnitude: [],
      residualRatio: [],
      naturalMotion: null,
      undefinedReason: t === 1 ? 'single-frame' : 'too-few-frames',
      descriptors: new Float32Array(0),
    };
  }
  const gray = tf.tidy(() => tf.clipByValue(resizeAntialiased(toLuma(clip), h, w), 0, 1) as tf.Tensor4D);
  let flows: tf.Tensor4D | null = null;
  try {
    flows = clipFlow(gray as Video<'display'>, c.estimator, { stride: c.stride });
    const pairs = flows.shape[0];
    const stats = flowMagnitudeStats(flows);
    const vb = c.naturalMotion.vbenchDynamic ? vbenchDynamic(stats.topMean, c.fps ?? 8, h, w) : null;
    const ones = new Array<number>(pairs).fill(1);
    const nmf = naturalMotionDecision(stats.mean, ones, vb, h, w, c.naturalMotion);
    const keep = nmf.pairStatus.map((s) => (!nmf.static && s === 'moving' ? 1 : 0));
    const f = flows;
    const descriptors = readTensor(() => {
      const support = tf.maximum(tf.slice(gray, [0, 0, 0, 0], [pairs, h, w, 1]), tf.slice(gray, [c.stride, 0, 0, 0], [pairs, h, w, 1]));
      const pooled = tf.reshape(resizeAntialiased(tf.mul(f, support) as tf.Tensor4D, dh, dw), [pairs, 2 * dh * dw]);
      const unit = tf.div(pooled, tf.maximum(tf.norm(pooled, 2, 1, true), 1e-12));
      return tf.mul(unit, tf.tensor2d(keep, [pairs, 1]));
    });
    let undefinedReason: MotionProfile['undefinedReason'] = null;
    if (nmf.static) undefinedReason = 'static';
    else if (keep.every((k) => k === 0)) undefinedReason = 'natural-motion';
    return { ...base, pairs, meanMagnitude: stats.mean, residualRatio: ones, naturalMotion: nmf, undefinedReason, descriptors };
  } finally {
    gray.dispose();
    flows?.dispose();
  }
}
