/**
 * Group normalisation (`torch.nn.GroupNorm`) for NHWC tensors. TF.js has no GroupNorm op, so it
 * is built from a reshape to [N, H·W, G, C/G] and moments over axes (1, 3).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { joinName, type ParamRegistry, type ParamSource } from './modeling_utils.js';

/**
 * `nn.GroupNorm(num_groups, num_channels, eps, affine=True)`:
 * y = (x − μ_g) / √(σ²_g + eps) · γ + β, with μ_g, σ²_g the mean and biased variance over the
 * channels of group g and all pixels of one sample. γ = 1, β = 0 at init.
 */
export class GroupNorm {
  readonly weight: string;
  readonly bias: string;

  /**
   * @param field the config field the group count came from, named in the error when
   *   `numChannels` is not divisible by `numGroups`.
   */
  constructor(
    reg: ParamRegistry,
    readonly prefix: string,
    readonly numGroups: number,
    readonly numChannels: number,
    readonly eps: number,
    field = 'norm_num_groups',
  ) {
    if (!Number.isInteger(numGroups) || numGroups <= 0 || numChannels % numGroups !== 0) {
      throw new ConfigError(
        `UNet2DModel config: ${field} = ${numGroups} does not divide the ${numChannels} channels of ${prefix} (GroupNorm needs channels % groups == 0)`,
        { field, value: numGroups, channels: numChannels, module: prefix },
      );
    }
    this.weight = reg.add({ name: joinName(prefix, 'weight'), shape: [numChannels], layout: 'plain', init: { kind: 'constant', value: 1 }, trainable: true });
    this.bias = reg.add({ name: joinName(prefix, 'bias'), shape: [numChannels], layout: 'plain', init: { kind: 'constant', value: 0 }, trainable: true });
  }

  forward(p: ParamSource, x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [n, h, w, c] = x.shape;
      const g = this.numGroups;
      const cg = c / g;
      const grouped = tf.reshape(x, [n, h * w, g, cg]);
      // tf.moments would subtract the mean twice; reuse the centred tensor instead (6 passes, not 8).
      const centred = tf.sub(grouped, tf.mean(grouped, [1, 3], true));
      const variance = tf.mean(tf.square(centred), [1, 3], true); // biased, as torch
      // Fold 1/√(σ²+eps) into γ on the small [N,1,G,C/G] tensor: one full-size multiply.
      const scale = tf.mul(tf.rsqrt(tf.add(variance, this.eps)), tf.reshape(p.get(this.weight), [1, 1, g, cg]));
      const y = tf.add(tf.mul(centred, scale), tf.reshape(p.get(this.bias), [1, 1, g, cg]));
      return tf.reshape(y, [n, h, w, c]) as tf.Tensor4D;
    });
  }
}
