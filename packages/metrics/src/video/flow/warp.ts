/**
 * Backward warping by a dense flow with bilinear sampling: `out(x) = image(x + F(x))`.
 *
 * TF.js has no `grid_sample`, so the four neighbours are fetched with one `tf.gather` each on the
 * flattened batch (the same sampling rule as `torch.nn.functional.grid_sample(mode='bilinear',
 * padding_mode='border', align_corners=True)` in pixel coordinates).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '@diffmem/core';
import { gradients } from './ops.js';

/** Result of {@link warpBilinear}. */
export interface WarpResult {
  /** The warped batch [N,H,W,C]. */
  warped: tf.Tensor4D;
  /**
   * [N,H,W,1] float mask: 1 where `x + F(x)` falls inside the image, 0 where the sample was
   * taken from the replicated border (data terms there carry no information).
   */
  valid: tf.Tensor4D;
}

/**
 * Samples `image` [N,H,W,C] at `x + flow(x)` (flow [N,H,W,2], (dx, dy) in pixels) with bilinear
 * interpolation; positions outside the image read the nearest border pixel and are marked invalid.
 */
export function warpBilinear(image: tf.Tensor4D, flow: tf.Tensor4D): WarpResult {
  const [n, h, w, c] = image.shape;
  if (flow.rank !== 4 || flow.shape[0] !== n || flow.shape[1] !== h || flow.shape[2] !== w || flow.shape[3] !== 2) {
    throw new ShapeError(
      `warp: flow must have shape [${n},${h},${w},2] to match the image [${image.shape.join(',')}], got [${flow.shape.join(',')}]`,
      { image: image.shape, flow: flow.shape },
    );
  }
  return tf.tidy(() => {
    const [u, v] = tf.split(flow, 2, 3) as [tf.Tensor4D, tf.Tensor4D];
    const gx = tf.reshape(tf.range(0, w, 1, 'float32'), [1, 1, w, 1]);
    const gy = tf.reshape(tf.range(0, h, 1, 'float32'), [1, h, 1, 1]);
    const sx = tf.add(gx, u);
    const sy = tf.add(gy, v);
    // A small tolerance so sub-ulp overshoots of exact border positions stay valid.
    const eps = 1e-3;
    const valid = tf.cast(
      tf.logicalAnd(
        tf.logicalAnd(tf.greaterEqual(sx, -eps), tf.lessEqual(sx, w - 1 + eps)),
        tf.logicalAnd(tf.greaterEqual(sy, -eps), tf.lessEqual(sy, h - 1 + eps)),
      ),
      'float32',
    ) as tf.Tensor4D;
    const cx = tf.clipByValue(sx, 0, w - 1);
    const cy = tf.clipByValue(sy, 0, h - 1);
    // x0 ≤ W−2 so that x1 = x0 + 1 is in range; the weight then reaches 1 at the last column.
    const x0f = tf.clipByValue(tf.floor(cx), 0, Math.max(w - 2, 0));
    const y0f = tf.clipByValue(tf.floor(cy), 0, Math.max(h - 2, 0));
    const wx = tf.sub(cx, x0f);
    const wy = tf.sub(cy, y0f);
    const x0 = tf.cast(x0f, 'int32');
    const y0 = tf.cast(y0f, 'int32');
    // Index arithmetic stays in int32 (scalars made explicitly int32: a bare JS number would
    // promote the op to float32, which loses exactness past 2^24 pixels).
    const int = (v: number): tf.Scalar => tf.scalar(v, 'int32');
    const x1 = tf.minimum(tf.add(x0, int(1)), int(w - 1));
    const y1 = tf.minimum(tf.add(y0, int(1)), int(h - 1));
    const base = tf.reshape(tf.mul(tf.range(0, n, 1, 'int32'), int(h * w)), [n, 1, 1, 1]);
    // A 1-D gather is several times faster than gathering rows of a [P, 1] matrix on wasm.
    const flat = c === 1 ? tf.reshape(image, [n * h * w]) : tf.reshape(image, [n * h * w, c]);
    const fetch = (yy: tf.Tensor, xx: tf.Tensor): tf.Tensor4D =>
      tf.reshape(tf.gather(flat, tf.reshape(tf.add(base, tf.add(tf.mul(yy, int(w)), xx)), [-1])), [n, h, w, c]);
    const top = tf.add(tf.mul(fetch(y0, x0), tf.sub(1, wx)), tf.mul(fetch(y0, x1), wx));
    const bottom = tf.add(tf.mul(fetch(y1, x0), tf.sub(1, wx)), tf.mul(fetch(y1, x1), wx));
    const warped = tf.add(tf.mul(top, tf.sub(1, wy)), tf.mul(bottom, wy)) as tf.Tensor4D;
    return { warped, valid };
  });
}

/** The brightness-constancy derivatives of {@link linearizeAtFlow}, zero where the warp left the image. */
export interface LinearizedFrames {
  /** I_x, the mean of both frames' x-derivatives [N,H,W,1]. */
  ix: tf.Tensor4D;
  /** I_y [N,H,W,1]. */
  iy: tf.Tensor4D;
  /** I_t = I₁(x + u₀) − I₀(x) [N,H,W,1]. */
  it: tf.Tensor4D;
}

/**
 * Linearises brightness constancy around the flow u₀ (the warping step of coarse-to-fine flow,
 * Brox et al. 2004; Sun, Roth & Black 2010): warps `i1` by u₀, averages the spatial derivatives of
 * `i0` (given as `grad0`, computed once per level) and of the warped frame, and takes
 * I_t = I₁(x + u₀) − I₀(x); all three are zeroed where x + u₀ left the image. Call inside `tf.tidy`.
 */
export function linearizeAtFlow(i0: tf.Tensor4D, grad0: readonly [tf.Tensor4D, tf.Tensor4D], i1: tf.Tensor4D, flow: tf.Tensor4D): LinearizedFrames {
  const { warped, valid } = warpBilinear(i1, flow);
  const [g1x, g1y] = gradients(warped);
  return {
    ix: tf.mul(tf.mul(tf.add(grad0[0], g1x), 0.5), valid),
    iy: tf.mul(tf.mul(tf.add(grad0[1], g1y), 0.5), valid),
    it: tf.mul(tf.sub(warped, i0), valid),
  };
}
