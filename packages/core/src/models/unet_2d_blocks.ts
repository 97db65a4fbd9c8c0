/**
 * The down, mid and up blocks of UNet2DModel (`src/diffusers/models/unets/unet_2d_blocks.py`):
 * `DownBlock2D`, `AttnDownBlock2D`, `UNetMidBlock2D`, `UpBlock2D`, `AttnUpBlock2D`, and the
 * `get_down_block` / `get_up_block` factories, in NHWC.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Attention } from './attention.js';
import { Downsample2D } from './downsampling.js';
import { joinName, type ParamRegistry, type ParamSource } from './modeling_utils.js';
import { ResnetBlock2D } from './resnet.js';
import type { UNet2DActivation, UNet2DDownBlockType, UNet2DUpBlockType } from './unet_2d_config.js';
import { Upsample2D } from './upsampling.js';

/** Settings every block shares (what UNet2DModel passes to `get_down_block` / `get_up_block`). */
export interface BlockOptions {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  resnetEps: number;
  resnetActFn: UNet2DActivation;
  resnetGroups: number;
  resnetTimeScaleShift: 'default' | 'scale_shift';
  /** Channels per attention head (UNet2DModel substitutes the block width for `null`). */
  attentionHeadDim: number;
  outputScaleFactor?: number;
}

/** Options of a down block. */
export interface DownBlockOptions extends BlockOptions {
  addDownsample: boolean;
  downsamplePadding: number;
  downsampleType: 'conv' | 'resnet';
}

/** Options of an up block. */
export interface UpBlockOptions extends BlockOptions {
  /** Channels coming from the block below (`prev_output_channel`). */
  prevOutputChannel: number;
  addUpsample: boolean;
  upsampleType: 'conv' | 'resnet';
}

/** A down block: returns the new hidden state and every skip tensor it pushes. */
export interface DownBlock {
  readonly resnets: readonly ResnetBlock2D[];
  readonly attentions: readonly Attention[];
  forward(p: ParamSource, x: tf.Tensor4D, temb: tf.Tensor2D): { hidden: tf.Tensor4D; skips: tf.Tensor4D[] };
}

/** An up block: consumes one skip tensor per resnet (popped from the end of `skips`). */
export interface UpBlock {
  readonly resnets: readonly ResnetBlock2D[];
  readonly attentions: readonly Attention[];
  forward(p: ParamSource, x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D): tf.Tensor4D;
}

function resnet(reg: ParamRegistry, prefix: string, o: BlockOptions, inC: number, outC: number, extra: { up?: boolean; down?: boolean } = {}): ResnetBlock2D {
  return new ResnetBlock2D(reg, prefix, {
    inChannels: inC,
    outChannels: outC,
    tembChannels: o.tembChannels,
    groups: o.resnetGroups,
    eps: o.resnetEps,
    nonLinearity: o.resnetActFn,
    timeEmbeddingNorm: o.resnetTimeScaleShift,
    outputScaleFactor: o.outputScaleFactor ?? 1,
    ...extra,
  });
}

function attention(reg: ParamRegistry, prefix: string, o: BlockOptions, channels: number): Attention {
  return new Attention(reg, prefix, {
    channels,
    headDim: o.attentionHeadDim,
    normNumGroups: o.resnetGroups,
    eps: o.resnetEps,
    rescaleOutputFactor: o.outputScaleFactor ?? 1,
  });
}

/**
 * `DownBlock2D` / `AttnDownBlock2D`: `numLayers` × (ResnetBlock2D [→ Attention]), each output
 * pushed as a skip; then, unless last, a Downsample2D whose output is pushed too.
 */
export class DownBlock2D implements DownBlock {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Attention[] = [];
  readonly downsampler: Downsample2D | ResnetBlock2D | null;

  constructor(reg: ParamRegistry, readonly prefix: string, o: DownBlockOptions, readonly withAttention: boolean) {
    for (let i = 0; i < o.numLayers; i++) {
      const inC = i === 0 ? o.inChannels : o.outChannels;
      this.resnets.push(resnet(reg, joinName(prefix, `resnets.${i}`), o, inC, o.outChannels));
      if (withAttention) this.attentions.push(attention(reg, joinName(prefix, `attentions.${i}`), o, o.outChannels));
    }
    const dsPrefix = joinName(prefix, 'downsamplers.0');
    if (!o.addDownsample) this.downsampler = null;
    // DownBlock2D always downsamples with a conv; only AttnDownBlock2D honours downsample_type.
    else if (withAttention && o.downsampleType === 'resnet') this.downsampler = resnet(reg, dsPrefix, o, o.outChannels, o.outChannels, { down: true });
    else this.downsampler = new Downsample2D(reg, dsPrefix, o.outChannels, true, o.outChannels, o.downsamplePadding);
  }

  forward(p: ParamSource, x: tf.Tensor4D, temb: tf.Tensor2D): { hidden: tf.Tensor4D; skips: tf.Tensor4D[] } {
    const skips: tf.Tensor4D[] = [];
    let h = x;
    for (let i = 0; i < this.resnets.length; i++) {
      h = (this.resnets[i] as ResnetBlock2D).forward(p, h, temb);
      const attn = this.attentions[i];
      if (attn) h = attn.forward(p, h);
      skips.push(h);
    }
    if (this.downsampler) {
      h = this.downsampler instanceof ResnetBlock2D ? this.downsampler.forward(p, h, temb) : this.downsampler.forward(p, h);
      skips.push(h);
    }
    return { hidden: h, skips };
  }
}

/**
 * `UpBlock2D` / `AttnUpBlock2D`: `numLayers` × (concat(h, pop skip) → ResnetBlock2D [→ Attention]),
 * then, unless last, an Upsample2D.
 */
export class UpBlock2D implements UpBlock {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Attention[] = [];
  readonly upsampler: Upsample2D | ResnetBlock2D | null;

  constructor(reg: ParamRegistry, readonly prefix: string, o: UpBlockOptions, readonly withAttention: boolean) {
    for (let i = 0; i < o.numLayers; i++) {
      const resSkipChannels = i === o.numLayers - 1 ? o.inChannels : o.outChannels;
      const resnetInChannels = i === 0 ? o.prevOutputChannel : o.outChannels;
      this.resnets.push(resnet(reg, joinName(prefix, `resnets.${i}`), o, resnetInChannels + resSkipChannels, o.outChannels));
      if (withAttention) this.attentions.push(attention(reg, joinName(prefix, `attentions.${i}`), o, o.outChannels));
    }
    const usPrefix = joinName(prefix, 'upsamplers.0');
    if (!o.addUpsample) this.upsampler = null;
    else if (withAttention && o.upsampleType === 'resnet') this.upsampler = resnet(reg, usPrefix, o, o.outChannels, o.outChannels, { up: true });
    else this.upsampler = new Upsample2D(reg, usPrefix, o.outChannels, true, o.outChannels);
  }

  forward(p: ParamSource, x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D): tf.Tensor4D {
    let h = x;
    for (let i = 0; i < this.resnets.length; i++) {
      const skip = skips.pop() as tf.Tensor4D;
      h = (this.resnets[i] as ResnetBlock2D).forward(p, tf.concat([h, skip], 3), temb);
      const attn = this.attentions[i];
      if (attn) h = attn.forward(p, h);
    }
    if (this.upsampler) {
      h = this.upsampler instanceof ResnetBlock2D ? this.upsampler.forward(p, h, temb) : this.upsampler.forward(p, h);
    }
    return h;
  }
}

/** Options of {@link UNetMidBlock2D}. */
export interface MidBlockOptions {
  inChannels: number;
  tembChannels: number;
  resnetEps: number;
  resnetActFn: UNet2DActivation;
  resnetGroups: number;
  resnetTimeScaleShift: 'default' | 'scale_shift';
  /** GroupNorm groups of the attention; null → `resnetGroups` for "default" time shift, none otherwise. */
  attnGroups: number | null;
  addAttention: boolean;
  attentionHeadDim: number;
  outputScaleFactor: number;
  numLayers?: number;
}

/** `UNetMidBlock2D`: resnet → (attention → resnet) × numLayers (1 in UNet2DModel). */
export class UNetMidBlock2D {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Attention[] = [];

  constructor(reg: ParamRegistry, readonly prefix: string, o: MidBlockOptions) {
    const c = o.inChannels;
    const attnGroups = o.attnGroups ?? (o.resnetTimeScaleShift === 'default' ? o.resnetGroups : null);
    const blockOpts: BlockOptions = {
      numLayers: 1,
      inChannels: c,
      outChannels: c,
      tembChannels: o.tembChannels,
      resnetEps: o.resnetEps,
      resnetActFn: o.resnetActFn,
      resnetGroups: o.resnetGroups,
      resnetTimeScaleShift: o.resnetTimeScaleShift,
      attentionHeadDim: o.attentionHeadDim,
      outputScaleFactor: o.outputScaleFactor,
    };
    this.resnets.push(resnet(reg, joinName(prefix, 'resnets.0'), blockOpts, c, c));
    for (let i = 0; i < (o.numLayers ?? 1); i++) {
      if (o.addAttention) {
        this.attentions.push(
          new Attention(reg, joinName(prefix, `attentions.${i}`), {
            channels: c,
            headDim: o.attentionHeadDim,
            normNumGroups: attnGroups,
            normField: o.attnGroups === null ? 'norm_num_groups' : 'attn_norm_num_groups',
            eps: o.resnetEps,
            rescaleOutputFactor: o.outputScaleFactor,
          }),
        );
      }
      this.resnets.push(resnet(reg, joinName(prefix, `resnets.${i + 1}`), blockOpts, c, c));
    }
  }

  forward(p: ParamSource, x: tf.Tensor4D, temb: tf.Tensor2D): tf.Tensor4D {
    let h = (this.resnets[0] as ResnetBlock2D).forward(p, x, temb);
    for (let i = 1; i < this.resnets.length; i++) {
      const attn = this.attentions[i - 1];
      if (attn) h = attn.forward(p, h);
      h = (this.resnets[i] as ResnetBlock2D).forward(p, h, temb);
    }
    return h;
  }
}

/** diffusers' `get_down_block` for the block types this port implements. */
export function getDownBlock(reg: ParamRegistry, prefix: string, type: UNet2DDownBlockType, o: DownBlockOptions): DownBlock2D {
  return new DownBlock2D(reg, prefix, o, type === 'AttnDownBlock2D');
}

/** diffusers' `get_up_block` for the block types this port implements. */
export function getUpBlock(reg: ParamRegistry, prefix: string, type: UNet2DUpBlockType, o: UpBlockOptions): UpBlock2D {
  return new UpBlock2D(reg, prefix, o, type === 'AttnUpBlock2D');
}
