/**
 * `Upsample2D` (`src/diffusers/models/upsampling.py`) in NHWC.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Conv2d } from './layers.js';
import { joinName, type ParamRegistry, type ParamSource } from './modeling_utils.js';

/**
 * Nearest-neighbour ×2 (`F.interpolate(scale_factor=2, mode="nearest")`: output pixel i reads
 * input floor(i/2)). Forward is TF.js' `resizeNearestNeighbor`; the gradient is the sum of each
 * 2×2 output block, given explicitly because tfjs-backend-cpu 4.22's `ResizeNearestNeighborGrad`
 * is wrong for batch > 1 (and a tile-based forward, which has a correct built-in gradient, is ~25×
 * slower on wasm).
 */
export const upsampleNearest2x: (x: tf.Tensor4D) => tf.Tensor4D = tf.customGrad((...inputs) => {
  const x = inputs[0] as tf.Tensor4D;
  const [n, h, w, c] = x.shape;
  const value = tf.image.resizeNearestNeighbor(x, [2 * h, 2 * w], false, false);
  return {
    value,
    gradFunc: (dy: tf.Tensor) => tf.sum(tf.reshape(dy, [n, h, 2, w, 2, c]), [2, 4]),
  };
}) as (x: tf.Tensor4D) => tf.Tensor4D;

/**
 * `Upsample2D`: {@link upsampleNearest2x}, then, with `useConv`, a 3×3 conv with padding 1
 * (state-dict name `conv`).
 */
export class Upsample2D {
  readonly conv: Conv2d | null;

  constructor(
    reg: ParamRegistry,
    readonly prefix: string,
    readonly channels: number,
    readonly useConv: boolean,
    outChannels: number = channels,
  ) {
    this.conv = useConv ? new Conv2d(reg, joinName(prefix, 'conv'), channels, outChannels, 3, { padding: 1 }) : null;
  }

  forward(p: ParamSource, x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const up = upsampleNearest2x(x);
      return this.conv ? this.conv.forward(p, up) : up;
    });
  }
}
