/**
 * `ResnetBlock2D` (`src/diffusers/models/resnet.py`) in NHWC.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { getActivation, type Activation } from './activations.js';
import { Downsample2D } from './downsampling.js';
import { Conv2d, Linear } from './layers.js';
import { joinName, type ParamRegistry, type ParamSource } from './modeling_utils.js';
import { GroupNorm } from './normalization.js';
import type { UNet2DActivation } from './unet_2d_config.js';
import { upsampleNearest2x } from './upsampling.js';

/** Options of {@link ResnetBlock2D} (diffusers' constructor arguments used by UNet2DModel). */
export interface ResnetBlock2DOptions {
  inChannels: number;
  outChannels: number;
  /** Width of the time embedding, or null for no time conditioning. */
  tembChannels: number | null;
  groups: number;
  eps: number;
  nonLinearity: UNet2DActivation;
  timeEmbeddingNorm: 'default' | 'scale_shift';
  outputScaleFactor: number;
  /** Nearest ×2 of both paths after norm1 (upsample_type "resnet"). */
  up?: boolean;
  /** 2×2 average pooling of both paths after norm1 (downsample_type "resnet"). */
  down?: boolean;
}

/**
 * The DDPM residual block (Ho et al. 2020, Appendix B; diffusers `ResnetBlock2D.forward`):
 *
 *   h = conv1(act(GN₁(x)));  e = time_emb_proj(act(temb))
 *   default:     h = GN₂(h + e)            scale_shift: h = GN₂(h)·(1 + s) + b, [s, b] = e
 *   h = conv2(dropout(act(h)));  out = (shortcut(x) + h) / output_scale_factor
 *
 * `shortcut` is a 1×1 conv (`conv_shortcut`) when in ≠ out channels, else the identity.
 */
export class ResnetBlock2D {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly timeEmbProj: Linear | null;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | null;
  private readonly act: Activation;
  private readonly downsample: Downsample2D | null;

  constructor(reg: ParamRegistry, readonly prefix: string, readonly opts: ResnetBlock2DOptions) {
    const { inChannels, outChannels, groups, eps } = opts;
    this.act = getActivation(opts.nonLinearity);
    this.norm1 = new GroupNorm(reg, joinName(prefix, 'norm1'), groups, inChannels, eps);
    this.conv1 = new Conv2d(reg, joinName(prefix, 'conv1'), inChannels, outChannels, 3, { padding: 1 });
    this.timeEmbProj =
      opts.tembChannels === null
        ? null
        : new Linear(reg, joinName(prefix, 'time_emb_proj'), opts.tembChannels, opts.timeEmbeddingNorm === 'scale_shift' ? 2 * outChannels : outChannels);
    this.norm2 = new GroupNorm(reg, joinName(prefix, 'norm2'), groups, outChannels, eps);
    this.conv2 = new Conv2d(reg, joinName(prefix, 'conv2'), outChannels, outChannels, 3, { padding: 1 });
    this.convShortcut = inChannels !== outChannels ? new Conv2d(reg, joinName(prefix, 'conv_shortcut'), inChannels, outChannels, 1) : null;
    this.downsample = opts.down ? new Downsample2D(reg, joinName(prefix, 'downsample'), inChannels, false) : null;
  }

  forward(p: ParamSource, input: tf.Tensor4D, temb: tf.Tensor2D | null): tf.Tensor4D {
    return tf.tidy(() => {
      let x = input;
      let h = this.act(this.norm1.forward(p, x));
      if (this.opts.up) {
        x = upsampleNearest2x(x);
        h = upsampleNearest2x(h);
      } else if (this.downsample) {
        x = this.downsample.forward(p, x);
        h = this.downsample.forward(p, h);
      }
      h = this.conv1.forward(p, h);
      const c = this.opts.outChannels;
      let e: tf.Tensor2D | null = null;
      if (this.timeEmbProj && temb) e = this.timeEmbProj.forward(p, this.act(temb));
      if (this.opts.timeEmbeddingNorm === 'scale_shift') {
        if (!e) throw new Error('scale_shift resnet needs a time embedding');
        const [n] = e.shape;
        const scale = tf.reshape(tf.slice(e, [0, 0], [n, c]), [n, 1, 1, c]);
        const shift = tf.reshape(tf.slice(e, [0, c], [n, c]), [n, 1, 1, c]);
        h = tf.add(tf.mul(this.norm2.forward(p, h), tf.add(scale, 1)), shift);
      } else {
        if (e) h = tf.add(h, tf.reshape(e, [e.shape[0], 1, 1, c]));
        h = this.norm2.forward(p, h);
      }
      h = this.conv2.forward(p, this.act(h)); // dropout is the identity at inference
      if (this.convShortcut) x = this.convShortcut.forward(p, x);
      const out = tf.add(x, h) as tf.Tensor4D;
      return this.opts.outputScaleFactor === 1 ? out : (tf.div(out, this.opts.outputScaleFactor) as tf.Tensor4D);
    });
  }
}
