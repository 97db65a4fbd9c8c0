/**
 * The spatial self-attention of UNet2DModel: diffusers' `Attention` built with
 * `_from_deprecated_attn_block=True, residual_connection=True, bias=True, upcast_softmax=True`
 * and run by `AttnProcessor2_0` (`src/diffusers/models/attention_processor.py`), in NHWC.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { Linear } from './layers.js';
import { joinName, legacyAttentionRenames, type ParamRegistry, type ParamSource } from './modeling_utils.js';
import { GroupNorm } from './normalization.js';

/**
 * [B,M,K] · [B,K,N]. A plain `tf.matMul`: core registers an XNNPACK-backed BatchMatMul for wasm
 * (backend/kernels/batch_mat_mul.ts) that handles batches and transposed operands; the built-in
 * one looped ~10x slower there.
 */
export function batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  return tf.matMul(a, b);
}

/** Options of {@link Attention}. */
export interface AttentionOptions {
  /** Channels of the feature map (`query_dim`). */
  channels: number;
  /** Channels per head; heads = ⌊channels / headDim⌋, inner width = heads · headDim. */
  headDim: number;
  /** GroupNorm groups before attention, or null for no norm. */
  normNumGroups: number | null;
  /** The config field `normNumGroups` came from (for error messages). */
  normField?: string;
  eps: number;
  /** Output is divided by this (`rescale_output_factor`). */
  rescaleOutputFactor: number;
}

/**
 * The projections of multi-head self-attention (Vaswani et al. 2017, Eq. 1): `to_q`, `to_k`,
 * `to_v` [C → heads·d] and `to_out.0` [heads·d → C], with heads = ⌊C / d⌋ and the 1/√d score
 * scale. Shared by the spatial {@link Attention} and the video UNet's temporal attention, which
 * differ in what a sequence is and in their norms.
 */
export abstract class MultiHeadProjections {
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;
  readonly heads: number;
  readonly headDim: number;
  readonly scale: number;

  /**
   * Declares the four projections under `prefix` (callers check that a whole head fits first);
   * `outRegistry` declares `to_out.0` (a zero-initialising view for identity-at-init layers).
   */
  protected constructor(reg: ParamRegistry, prefix: string, channels: number, headDim: number, outRegistry: ParamRegistry = reg) {
    this.heads = Math.floor(channels / headDim);
    this.headDim = headDim;
    this.scale = 1 / Math.sqrt(headDim);
    const inner = this.heads * headDim;
    this.toQ = new Linear(reg, joinName(prefix, 'to_q'), channels, inner);
    this.toK = new Linear(reg, joinName(prefix, 'to_k'), channels, inner);
    this.toV = new Linear(reg, joinName(prefix, 'to_v'), channels, inner);
    this.toOut = new Linear(outRegistry, joinName(prefix, 'to_out.0'), inner, channels);
  }
}

/**
 * Multi-head self-attention over the H·W positions (Vaswani et al. 2017, Eq. 1; DDPM's
 * attention block at 16×16):
 *
 *   r = x;  h = GN(x) → [N, HW, C];  q, k, v = to_q(h), to_k(h), to_v(h)
 *   o_head = softmax(q_head k_headᵀ / √d) v_head;  out = to_out.0(concat heads)
 *   y = (out + r) / rescale_output_factor
 *
 * Parameters: `group_norm`, `to_q`, `to_k`, `to_v`, `to_out.0` (legacy checkpoints name them
 * `query`, `key`, `value`, `proj_attn`; see {@link Attention.legacyRenames}).
 */
export class Attention extends MultiHeadProjections {
  readonly groupNorm: GroupNorm | null;

  constructor(reg: ParamRegistry, readonly prefix: string, readonly opts: AttentionOptions) {
    const { channels, headDim } = opts;
    if (Math.floor(channels / headDim) < 1) {
      throw new ConfigError(
        `UNet2DModel config: attention_head_dim = ${headDim} exceeds the ${channels} channels of ${prefix} (no whole head fits)`,
        { field: 'attention_head_dim', value: headDim, channels, module: prefix },
      );
    }
    // Declared before the projections: state-dict order.
    const groupNorm =
      opts.normNumGroups === null
        ? null
        : new GroupNorm(reg, joinName(prefix, 'group_norm'), opts.normNumGroups, channels, opts.eps, opts.normField ?? 'norm_num_groups');
    super(reg, prefix, channels, headDim);
    this.groupNorm = groupNorm;
  }

  /** Legacy → current parameter names of this module (`_fix_state_dict_keys_on_load`). */
  legacyRenames(): Array<[string, string]> {
    return legacyAttentionRenames(this.prefix);
  }

  forward(p: ParamSource, x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [n, h, w, c] = x.shape;
      const hw = h * w;
      const normed = this.groupNorm ? this.groupNorm.forward(p, x) : x;
      const seq = tf.reshape(normed, [n * hw, c]) as tf.Tensor2D;
      // Scaling q (HW·d values) instead of the HW×HW scores: same product, fewer multiplies.
      let q: tf.Tensor = tf.mul(this.toQ.forward(p, seq), this.scale);
      let k: tf.Tensor = this.toK.forward(p, seq);
      let v: tf.Tensor = this.toV.forward(p, seq);
      const heads = this.heads;
      const d = this.headDim;
      if (heads === 1) {
        q = tf.reshape(q, [n, hw, d]);
        k = tf.reshape(k, [n, hw, d]);
        v = tf.reshape(v, [n, hw, d]);
      } else {
        const split = (t: tf.Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [n, hw, heads, d]), [0, 2, 1, 3]), [n * heads, hw, d]);
        q = split(q);
        k = split(k);
        v = split(v);
      }
      const scores = batchMatMul(q as tf.Tensor3D, tf.transpose(k, [0, 2, 1]) as tf.Tensor3D);
      const probs = tf.softmax(scores, -1);
      let o: tf.Tensor = batchMatMul(probs, v as tf.Tensor3D);
      if (heads > 1) o = tf.transpose(tf.reshape(o, [n, heads, hw, d]), [0, 2, 1, 3]);
      const out = this.toOut.forward(p, tf.reshape(o, [n * hw, heads * d]) as tf.Tensor2D);
      let y: tf.Tensor = tf.add(tf.reshape(out, [n, h, w, c]), x);
      if (this.opts.rescaleOutputFactor !== 1) y = tf.div(y, this.opts.rescaleOutputFactor);
      return y as tf.Tensor4D;
    });
  }
}
