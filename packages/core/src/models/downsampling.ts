/**
 * `Downsample2D` (`src/diffusers/models/downsampling.py`) in NHWC.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Conv2d } from './layers.js';
import { joinName, type ParamRegistry, type ParamSource } from './modeling_utils.js';

/**
 * Halves H and W. With `useConv`: a 3×3 stride-2 conv (state-dict name `conv`); `padding = 0`
 * means diffusers' asymmetric `F.pad(x, (0, 1, 0, 1))` (right and bottom by one) then a valid conv,
 * as the original DDPM TF code did. Without: 2×2 average pooling (no parameters).
 */
export class Downsample2D {
  readonly conv: Conv2d | null;

  constructor(
    reg: ParamRegistry,
    readonly prefix: string,
    readonly channels: number,
    readonly useConv: boolean,
    outChannels: number = channels,
    readonly padding = 1,
  ) {
    this.conv = useConv
      ? new Conv2d(reg, joinName(prefix, 'conv'), channels, outChannels, 3, {
          stride: 2,
          padding: padding === 0 ? [0, 1, 0, 1] : padding,
        })
      : null;
  }

  forward(p: ParamSource, x: tf.Tensor4D): tf.Tensor4D {
    if (this.conv) return this.conv.forward(p, x);
    return tf.avgPool(x, 2, 2, 'valid');
  }
}
