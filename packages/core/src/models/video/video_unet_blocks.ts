/**
 * The down, mid and up blocks of {@link VideoUNetModel}: core's `ResnetBlock2D`, `Attention`,
 * `Downsample2D` and `Upsample2D` applied per frame (frames folded into the batch), each resnet
 * followed by a {@link TemporalConvLayer} and each spatial attention by a {@link TemporalAttention}
 * (the layer order of diffusers' `CrossAttnDownBlock3D` / `UNetMidBlock3DCrossAttn`, without text
 * cross-attention). Spatial parameter names equal UNet2DModel's (`resnets.i`, `attentions.i`,
 * `downsamplers.0`, `upsamplers.0`); temporal ones are `temp_convs.i` and `temp_attentions.i`.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Attention } from '../attention.js';
import { Downsample2D } from '../downsampling.js';
import { joinName, type ParamRegistry, type ParamSource } from '../modeling_utils.js';
import { ResnetBlock2D } from '../resnet.js';
import { blockAttention, blockResnet, midBlockAttention, midBlockResnetOptions, type BlockOptions, type MidBlockOptions } from '../unet_2d_blocks.js';
import { Upsample2D } from '../upsampling.js';
import { TemporalAttention, TemporalConvLayer } from './temporal_layers.js';

/** Temporal settings shared by every block. */
export interface TemporalBlockOptions {
  /** Convolutions per temporal conv layer (0: none). */
  temporalConvLayers: number;
  temporalKernelSize: number;
  temporalAttention: boolean;
  temporalAttentionHeadDim: number | null;
  temporalPositionEmbedding: boolean;
}

/** Options of a space-time block: core's {@link BlockOptions} plus the temporal settings. */
export interface SpaceTimeBlockOptions extends BlockOptions, TemporalBlockOptions {}

function tempConv(reg: ParamRegistry, prefix: string, o: SpaceTimeBlockOptions, channels: number): TemporalConvLayer | null {
  if (o.temporalConvLayers === 0) return null;
  return new TemporalConvLayer(reg, prefix, {
    channels,
    numConvs: o.temporalConvLayers,
    kernelSize: o.temporalKernelSize,
    groups: o.resnetGroups,
    eps: o.resnetEps,
  });
}

function tempAttn(reg: ParamRegistry, prefix: string, o: SpaceTimeBlockOptions, channels: number): TemporalAttention | null {
  if (!o.temporalAttention) return null;
  return new TemporalAttention(reg, prefix, {
    channels,
    headDim: o.temporalAttentionHeadDim,
    groups: o.resnetGroups,
    eps: o.resnetEps,
    positionEmbedding: o.temporalPositionEmbedding,
  });
}

/** One layer of a block: resnet → temporal conv [→ spatial attention → temporal attention]. */
class SpaceTimeLayer {
  constructor(
    readonly resnet: ResnetBlock2D,
    readonly tempConv: TemporalConvLayer | null,
    readonly attention: Attention | null,
    readonly tempAttention: TemporalAttention | null,
  ) {}

  forward(p: ParamSource, x: tf.Tensor4D, temb: tf.Tensor2D, frames: number): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.resnet.forward(p, x, temb);
      if (this.tempConv) h = this.tempConv.forward(p, h, frames);
      if (this.attention) h = this.attention.forward(p, h);
      if (this.tempAttention) h = this.tempAttention.forward(p, h, frames);
      return h;
    });
  }
}

function layer(reg: ParamRegistry, prefix: string, i: number, o: SpaceTimeBlockOptions, inC: number, outC: number, withAttention: boolean): SpaceTimeLayer {
  // Declaration order = state-dict order: resnets.i, temp_convs.i, attentions.i, temp_attentions.i.
  const r = blockResnet(reg, joinName(prefix, `resnets.${i}`), o, inC, outC);
  const tc = tempConv(reg, joinName(prefix, `temp_convs.${i}`), o, outC);
  const attn = withAttention ? blockAttention(reg, joinName(prefix, `attentions.${i}`), o, outC) : null;
  const ta = withAttention ? tempAttn(reg, joinName(prefix, `temp_attentions.${i}`), o, outC) : null;
  return new SpaceTimeLayer(r, tc, attn, ta);
}

/** Options of {@link DownBlock3D}. */
export interface DownBlock3DOptions extends SpaceTimeBlockOptions {
  addDownsample: boolean;
  downsamplePadding: number;
}

/** A block made of space-time layers (the down and up blocks). */
abstract class SpaceTimeBlock {
  readonly layers: SpaceTimeLayer[] = [];

  /** Spatial attention modules (for legacy-name handling). */
  get attentions(): Attention[] {
    return this.layers.flatMap((l) => (l.attention ? [l.attention] : []));
  }
}

/**
 * `DownBlock3D` / `AttnDownBlock3D`: `numLayers` space-time layers, each output pushed as a skip;
 * then, unless last, a per-frame Downsample2D (stride-2 conv) whose output is pushed too.
 */
export class DownBlock3D extends SpaceTimeBlock {
  readonly downsampler: Downsample2D | null;

  constructor(reg: ParamRegistry, readonly prefix: string, o: DownBlock3DOptions, readonly withAttention: boolean) {
    super();
    for (let i = 0; i < o.numLayers; i++) {
      this.layers.push(layer(reg, prefix, i, o, i === 0 ? o.inChannels : o.outChannels, o.outChannels, withAttention));
    }
    this.downsampler = o.addDownsample
      ? new Downsample2D(reg, joinName(prefix, 'downsamplers.0'), o.outChannels, true, o.outChannels, o.downsamplePadding)
      : null;
  }

  forward(p: ParamSource, x: tf.Tensor4D, temb: tf.Tensor2D, frames: number): { hidden: tf.Tensor4D; skips: tf.Tensor4D[] } {
    const skips: tf.Tensor4D[] = [];
    let h = x;
    for (const l of this.layers) {
      h = l.forward(p, h, temb, frames);
      skips.push(h);
    }
    if (this.downsampler) {
      h = this.downsampler.forward(p, h);
      skips.push(h);
    }
    return { hidden: h, skips };
  }
}

/** Options of {@link UpBlock3D}. */
export interface UpBlock3DOptions extends SpaceTimeBlockOptions {
  prevOutputChannel: number;
  addUpsample: boolean;
}

/**
 * `UpBlock3D` / `AttnUpBlock3D`: `numLayers` × (concat(h, pop skip) → space-time layer), then,
 * unless last, a per-frame Upsample2D (nearest ×2 then 3×3 conv).
 */
export class UpBlock3D extends SpaceTimeBlock {
  readonly upsampler: Upsample2D | null;

  constructor(reg: ParamRegistry, readonly prefix: string, o: UpBlock3DOptions, readonly withAttention: boolean) {
    super();
    for (let i = 0; i < o.numLayers; i++) {
      const skipC = i === o.numLayers - 1 ? o.inChannels : o.outChannels;
      const inC = i === 0 ? o.prevOutputChannel : o.outChannels;
      this.layers.push(layer(reg, prefix, i, o, inC + skipC, o.outChannels, withAttention));
    }
    this.upsampler = o.addUpsample ? new Upsample2D(reg, joinName(prefix, 'upsamplers.0'), o.outChannels, true, o.outChannels) : null;
  }

  forward(p: ParamSource, x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, frames: number): tf.Tensor4D {
    let h = x;
    for (const l of this.layers) {
      const skip = skips.pop() as tf.Tensor4D;
      h = l.forward(p, tf.concat([h, skip], 3), temb, frames);
    }
    return this.upsampler ? this.upsampler.forward(p, h) : h;
  }
}

/** Options of {@link UNetMidBlock3D}: UNet2DModel's mid-block options (one layer) plus the temporal settings. */
export interface MidBlock3DOptions extends Omit<MidBlockOptions, 'numLayers'>, TemporalBlockOptions {}

/**
 * `UNetMidBlock3D`: resnet → temporal conv → [spatial attention → temporal attention] → resnet →
 * temporal conv (diffusers' `UNetMidBlock3DCrossAttn` order; UNet2DModel's mid block in space).
 */
export class UNetMidBlock3D {
  readonly resnets: ResnetBlock2D[] = [];
  readonly tempConvs: Array<TemporalConvLayer | null> = [];
  readonly attentions: Attention[] = [];
  readonly tempAttentions: TemporalAttention[] = [];

  constructor(reg: ParamRegistry, readonly prefix: string, o: MidBlock3DOptions) {
    const c = o.inChannels;
    const blockOpts: SpaceTimeBlockOptions = { ...o, ...midBlockResnetOptions(o) };
    this.resnets.push(blockResnet(reg, joinName(prefix, 'resnets.0'), blockOpts, c, c));
    this.tempConvs.push(tempConv(reg, joinName(prefix, 'temp_convs.0'), blockOpts, c));
    if (o.addAttention) {
      this.attentions.push(midBlockAttention(reg, joinName(prefix, 'attentions.0'), o));
      const ta = tempAttn(reg, joinName(prefix, 'temp_attentions.0'), blockOpts, c);
      if (ta) this.tempAttentions.push(ta);
    }
    this.resnets.push(blockResnet(reg, joinName(prefix, 'resnets.1'), blockOpts, c, c));
    this.tempConvs.push(tempConv(reg, joinName(prefix, 'temp_convs.1'), blockOpts, c));
  }

  forward(p: ParamSource, x: tf.Tensor4D, temb: tf.Tensor2D, frames: number): tf.Tensor4D {
    return tf.tidy(() => {
      let h = (this.resnets[0] as ResnetBlock2D).forward(p, x, temb);
      const tc0 = this.tempConvs[0];
      if (tc0) h = tc0.forward(p, h, frames);
      const attn = this.attentions[0];
      if (attn) h = attn.forward(p, h);
      const ta = this.tempAttentions[0];
      if (ta) h = ta.forward(p, h, frames);
      h = (this.resnets[1] as ResnetBlock2D).forward(p, h, temb);
      const tc1 = this.tempConvs[1];
      if (tc1) h = tc1.forward(p, h, frames);
      return h;
    });
  }
}
