/**
 * The temporal layers of the factorised space-time UNet (Ho et al. 2022, "Video Diffusion Models",
 * §3: space-only 2-D layers per frame interleaved with attention over time; Singer et al. 2022,
 * "Make-A-Video", §3.2: pseudo-3D conv and attention layers whose temporal parts are initialised
 * to the identity so training starts from the image model).
 *
 * Hidden states stay in the spatial layers' layout, frames folded into the batch:
 * [B·T, H, W, C] with the T frames of a clip consecutive. A temporal layer unfolds that to
 * [B, T, H·W, C] (a free reshape), works along T for every pixel, and adds its output to its input,
 * with its last projection zero-initialised: at initialisation every temporal layer is the identity.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../../errors.js';
import { silu } from '../activations.js';
import { getTimestepEmbedding } from '../embeddings.js';
import { MultiHeadProjections } from '../attention.js';
import { isRecordingGradients } from '../layers.js';
import { joinName, ParamRegistry, torchDefaultBound, type ParamSource, type ParamSpec } from '../modeling_utils.js';
import { GroupNorm } from '../normalization.js';

/**
 * A registry view that declares every parameter into `target` with a zero initialisation
 * (the temporal output projections: Make-A-Video's identity initialisation of temporal layers).
 */
export class ZeroInitRegistry extends ParamRegistry {
  constructor(private readonly target: ParamRegistry) {
    super();
  }

  override add(spec: ParamSpec): string {
    return this.target.add({ ...spec, init: { kind: 'constant', value: 0 } });
  }
}

/** Reshape [B·T,H,W,C] → [B, T·H, W, C]: GroupNorm statistics then span the whole clip (as a GroupNorm on [B,C,T,H,W]). */
function clipMajor(x: tf.Tensor4D, frames: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  return tf.reshape(x, [n / frames, frames * h, w, c]);
}

/** Options of {@link TemporalConvLayer}. */
export interface TemporalConvLayerOptions {
  channels: number;
  /** Number of (GroupNorm → SiLU → conv) stages, ≥ 1. */
  numConvs: number;
  /** Temporal kernel size (odd). */
  kernelSize: number;
  groups: number;
  eps: number;
}

/**
 * A residual stack of 1-D convolutions over time applied at every pixel (diffusers'
 * `TemporalConvLayer`, the "(2+1)-D" factorisation of a k×3×3 conv, Make-A-Video Eq. 3):
 *
 *   h₀ = x;  h_i = conv_i(SiLU(GN_i(h_{i−1})))  (k×1×1 kernels, zero padding in time)
 *   y = x + h_n,  with conv_n's weight and bias initialised to 0 (so y = x at init).
 *
 * Parameters: `norms.{i}.{weight,bias}`, `convs.{i}.{weight,bias}`; a conv weight is stored as a
 * torch `Conv2d` kernel [C, C, k, 1] over the (time, pixel) plane of [B, C, T, H·W].
 */
export class TemporalConvLayer {
  readonly norms: GroupNorm[] = [];
  readonly convWeights: string[] = [];
  readonly convBiases: string[] = [];
  private readonly pad: [[number, number], [number, number], [number, number], [number, number]];

  constructor(reg: ParamRegistry, readonly prefix: string, readonly opts: TemporalConvLayerOptions) {
    const { channels: c, numConvs, kernelSize: k } = opts;
    if (!Number.isInteger(numConvs) || numConvs < 1) throw new ConfigError(`${prefix}: numConvs must be a positive integer, got ${numConvs}`);
    if (!Number.isInteger(k) || k < 1 || k % 2 !== 1) throw new ConfigError(`${prefix}: temporal kernel size must be a positive odd integer, got ${k}`);
    const bound = torchDefaultBound(c * k);
    for (let i = 0; i < numConvs; i++) {
      this.norms.push(new GroupNorm(reg, joinName(prefix, `norms.${i}`), opts.groups, c, opts.eps));
      const init = i === numConvs - 1 ? ({ kind: 'constant', value: 0 } as const) : ({ kind: 'uniform', bound } as const);
      this.convWeights.push(reg.add({ name: joinName(prefix, `convs.${i}.weight`), shape: [c, c, k, 1], layout: 'conv2d', init, trainable: true }));
      this.convBiases.push(reg.add({ name: joinName(prefix, `convs.${i}.bias`), shape: [c], layout: 'plain', init, trainable: true }));
    }
    const half = (k - 1) / 2;
    this.pad = [[0, 0], [half, half], [0, 0], [0, 0]];
  }

  /** `x` [B·T,H,W,C] (clips' frames consecutive) → same shape. */
  forward(p: ParamSource, x: tf.Tensor4D, frames: number): tf.Tensor4D {
    return tf.tidy(() => {
      const [n, h, w, c] = x.shape;
      const b = n / frames;
      let y = clipMajor(x, frames);
      for (let i = 0; i < this.norms.length; i++) {
        const act = tf.reshape(silu((this.norms[i] as GroupNorm).forward(p, y)), [b, frames, h * w, c]) as tf.Tensor4D;
        const filter = p.get(this.convWeights[i] as string) as tf.Tensor4D;
        const bias = p.get(this.convBiases[i] as string);
        // Same fused/unfused split as Conv2d: unfused ops get per-input gradients under a tape.
        const conv = isRecordingGradients()
          ? tf.add(tf.conv2d(act, filter, 1, this.pad), bias)
          : tf.fused.conv2d({ x: act, filter, strides: 1, pad: this.pad, bias });
        y = tf.reshape(conv, [b, frames * h, w, c]);
      }
      return tf.add(x, tf.reshape(y, [n, h, w, c])) as tf.Tensor4D;
    });
  }
}

/** Options of {@link TemporalAttention}. */
export interface TemporalAttentionOptions {
  channels: number;
  /** Channels per head; null → one head of all channels. */
  headDim: number | null;
  groups: number;
  eps: number;
  /** Add the sinusoidal frame-index embedding before the projections. */
  positionEmbedding: boolean;
}

/**
 * Multi-head self-attention over the T frames at each pixel (Ho et al. 2022 §3, "temporal
 * attention"; diffusers' `TransformerTemporalModel` reduced to one attention layer):
 *
 *   h = GN(x) (+ PE(frame));  q, k, v = to_q(h), to_k(h), to_v(h)  per pixel, a sequence of T
 *   o_head = softmax(q k_headᵀ/√d) v_head;  y = x + to_out.0(concat heads)
 *
 * `to_out.0` is zero-initialised (y = x at init). The GroupNorm statistics span the whole clip.
 * PE is the DDPM/Transformer sinusoid of the frame index 0…T−1 (no parameters), so sampling may use
 * other clip lengths than training.
 */
export class TemporalAttention extends MultiHeadProjections {
  readonly groupNorm: GroupNorm;

  constructor(reg: ParamRegistry, readonly prefix: string, readonly opts: TemporalAttentionOptions) {
    const c = opts.channels;
    const d = opts.headDim ?? c;
    if (Math.floor(c / d) < 1) {
      throw new ConfigError(`VideoUNetModel config: temporal_attention_head_dim = ${d} exceeds the ${c} channels of ${prefix}`, {
        field: 'temporal_attention_head_dim',
        value: d,
      });
    }
    // Declared before the projections: state-dict order.
    const groupNorm = new GroupNorm(reg, joinName(prefix, 'group_norm'), opts.groups, c, opts.eps);
    super(reg, prefix, c, d, new ZeroInitRegistry(reg));
    this.groupNorm = groupNorm;
  }

  /** `x` [B·T,H,W,C] (clips' frames consecutive) → same shape. */
  forward(p: ParamSource, x: tf.Tensor4D, frames: number): tf.Tensor4D {
    return tf.tidy(() => {
      const [n, h, w, c] = x.shape;
      const b = n / frames;
      const hw = h * w;
      let normed: tf.Tensor = tf.reshape(this.groupNorm.forward(p, clipMajor(x, frames)), [b, frames, hw, c]);
      if (this.opts.positionEmbedding) {
        const pe = getTimestepEmbedding(tf.range(0, frames, 1, 'float32') as tf.Tensor1D, c, false, 0);
        normed = tf.add(normed, tf.reshape(pe, [1, frames, 1, c]));
      }
      // Rows ordered (clip, pixel, frame): each pixel's T frames form one sequence.
      const seq = tf.reshape(tf.transpose(normed, [0, 2, 1, 3]), [b * hw * frames, c]) as tf.Tensor2D;
      const heads = this.heads;
      const d = this.headDim;
      const split = (t: tf.Tensor): tf.Tensor3D =>
        heads === 1
          ? (tf.reshape(t, [b * hw, frames, d]) as tf.Tensor3D)
          : (tf.reshape(tf.transpose(tf.reshape(t, [b * hw, frames, heads, d]), [0, 2, 1, 3]), [b * hw * heads, frames, d]) as tf.Tensor3D);
      const q = split(tf.mul(this.toQ.forward(p, seq), this.scale));
      const k = split(this.toK.forward(p, seq));
      const v = split(this.toV.forward(p, seq));
      const probs = tf.softmax(tf.matMul(q, k, false, true), -1);
      let o: tf.Tensor = tf.matMul(probs, v);
      if (heads > 1) o = tf.transpose(tf.reshape(o, [b * hw, heads, frames, d]), [0, 2, 1, 3]);
      const out = this.toOut.forward(p, tf.reshape(o, [b * hw * frames, heads * d]) as tf.Tensor2D);
      const back = tf.reshape(tf.transpose(tf.reshape(out, [b, hw, frames, c]), [0, 2, 1, 3]), [n, h, w, c]);
      return tf.add(x, back) as tf.Tensor4D;
    });
  }
}
