/**
 * Group normalisation (`torch.nn.GroupNorm`) for NHWC tensors.
 *
 * TF.js has no GroupNorm op. On 'wasm' and 'cpu' it runs diffmem's fused `DiffmemGroupNorm`
 * kernel with an analytic gradient (backend/kernels/group_norm.ts, registered on first use);
 * elsewhere (webgl, tfjs-node) the composite below: a reshape to [N, H·W, G, C/G] and moments
 * over axes (1, 3), differentiated by tfjs' autodiff.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { DiffmemGroupNorm, type GroupNormAttrs } from '../backend/kernels/group_norm.js';
import { fusedKernelAvailable } from '../backend/kernels/fused_ops.js';
import { ConfigError, DTypeError, ShapeError, ValueRangeError } from '../errors.js';
import { joinName, type ParamRegistry, type ParamSource } from './modeling_utils.js';

/**
 * `torch.nn.functional.group_norm(x, numGroups, gamma, beta, eps)` on an NHWC tensor (Wu & He
 * 2018, eq. 1–3 with per-channel affine): y = (x − μ_g)/√(σ²_g + eps)·γ_c + β_c, with μ_g, σ²_g the
 * mean and biased variance over the channels of group g and all pixels of one sample.
 *
 * Runs the fused `DiffmemGroupNorm` kernel when the active backend has it (float64 statistics),
 * else {@link groupNormComposite}. Differentiable in x, gamma and beta either way.
 *
 * @param x [N, H, W, C] float32.
 * @param gamma [C] float32 scale γ.
 * @param beta [C] float32 shift β.
 * @param numGroups G, dividing C.
 * @param eps finite, ≥ 0.
 * @throws ShapeError, DTypeError, ValueRangeError naming the bad argument.
 */
export function groupNorm(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, numGroups: number, eps: number): tf.Tensor4D {
  if (x.rank !== 4) throw new ShapeError(`groupNorm: x must be NHWC (rank 4), got shape [${x.shape.join(',')}]`, { shape: x.shape });
  const c = x.shape[3];
  for (const [name, t] of [['x', x], ['gamma', gamma], ['beta', beta]] as const) {
    if (t.dtype !== 'float32') throw new DTypeError(`groupNorm: ${name} must be float32, got ${t.dtype}`, { name, dtype: t.dtype });
  }
  for (const [name, t] of [['gamma', gamma], ['beta', beta]] as const) {
    if (t.rank !== 1 || t.shape[0] !== c) {
      throw new ShapeError(`groupNorm: ${name} must have shape [${c}] (one value per channel of x), got [${t.shape.join(',')}]`, { name, shape: t.shape, channels: c });
    }
  }
  if (!Number.isInteger(numGroups) || numGroups <= 0 || c % numGroups !== 0) {
    throw new ValueRangeError(`groupNorm: numGroups = ${numGroups} must be a positive integer dividing the ${c} channels`, { numGroups, channels: c });
  }
  if (!Number.isFinite(eps) || eps < 0) throw new ValueRangeError(`groupNorm: eps must be finite and >= 0, got ${eps}`, { eps });
  if (fusedKernelAvailable(DiffmemGroupNorm, tf.getBackend())) {
    const attrs: GroupNormAttrs = { numGroups, eps };
    return tf.engine().runKernel(DiffmemGroupNorm, { x, gamma, beta }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
  }
  return groupNormComposite(x, gamma, beta, numGroups, eps);
}

/**
 * The composite GroupNorm {@link groupNorm} falls back to on backends without the fused kernel:
 * moments over a [N, H·W, G, C/G] view, in float32, differentiated by tfjs' autodiff. No
 * argument checks (see {@link groupNorm}).
 */
export function groupNormComposite(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, numGroups: number, eps: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const g = numGroups;
    const cg = c / g;
    const grouped = tf.reshape(x, [n, h * w, g, cg]);
    // tf.moments would subtract the mean twice; reuse the centred tensor instead (6 passes, not 8).
    const centred = tf.sub(grouped, tf.mean(grouped, [1, 3], true));
    const variance = tf.mean(tf.square(centred), [1, 3], true); // biased, as torch
    // Fold 1/√(σ²+eps) into γ on the small [N,1,G,C/G] tensor: one full-size multiply.
    const scale = tf.mul(tf.rsqrt(tf.add(variance, eps)), tf.reshape(gamma, [1, 1, g, cg]));
    const y = tf.add(tf.mul(centred, scale), tf.reshape(beta, [1, 1, g, cg]));
    return tf.reshape(y, [n, h, w, c]) as tf.Tensor4D;
  });
}

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
    return groupNorm(x, p.get(this.weight), p.get(this.bias), this.numGroups, this.eps);
  }
}
