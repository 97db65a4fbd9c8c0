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
import type { UNet2DActivation, UNet2DConfig, UNet2DDownBlockType, UNet2DUpBlockType } from './unet_2d_config.js';
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

/**
 * The `ResnetBlock2D` of a block (`resnets.i` / a resnet up/down-sampler), configured from the
 * block's settings as diffusers' blocks do.
 */
export function blockResnet(reg: ParamRegistry, prefix: string, o: BlockOptions, inC: number, outC: number, extra: { up?: boolean; down?: boolean } = {}): ResnetBlock2D {
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

/** The spatial self-attention of a down/up block (`attentions.i`), over `channels` channels. */
export function blockAttention(reg: ParamRegistry, prefix: string, o: BlockOptions, channels: number): Attention {
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
      this.resnets.push(blockResnet(reg, joinName(prefix, `resnets.${i}`), o, inC, o.outChannels));
      if (withAttention) this.attentions.push(blockAttention(reg, joinName(prefix, `attentions.${i}`), o, o.outChannels));
    }
    const dsPrefix = joinName(prefix, 'downsamplers.0');
    if (!o.addDownsample) this.downsampler = null;
    // DownBlock2D always downsamples with a conv; only AttnDownBlock2D honours downsample_type.
    else if (withAttention && o.downsampleType === 'resnet') this.downsampler = blockResnet(reg, dsPrefix, o, o.outChannels, o.outChannels, { down: true });
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
      this.resnets.push(blockResnet(reg, joinName(prefix, `resnets.${i}`), o, resnetInChannels + resSkipChannels, o.outChannels));
      if (withAttention) this.attentions.push(blockAttention(reg, joinName(prefix, `attentions.${i}`), o, o.outChannels));
    }
    const usPrefix = joinName(prefix, 'upsamplers.0');
    if (!o.addUpsample) this.upsampler = null;
    else if (withAttention && o.upsampleType === 'resnet') this.upsampler = blockResnet(reg, usPrefix, o, o.outChannels, o.outChannels, { up: true });
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

/** A mid block's settings as the {@link BlockOptions} of its resnets (one layer, width in → in). */
export function midBlockResnetOptions(o: MidBlockOptions): BlockOptions {
  return {
    numLayers: 1,
    inChannels: o.inChannels,
    outChannels: o.inChannels,
    tembChannels: o.tembChannels,
    resnetEps: o.resnetEps,
    resnetActFn: o.resnetActFn,
    resnetGroups: o.resnetGroups,
    resnetTimeScaleShift: o.resnetTimeScaleShift,
    attentionHeadDim: o.attentionHeadDim,
    outputScaleFactor: o.outputScaleFactor,
  };
}

/**
 * The mid block's attention (`attentions.i`): diffusers' `UNetMidBlock2D` normalises with
 * `attn_groups`, which defaults to `resnet_groups` for the "default" time shift and to no norm
 * for "scale_shift".
 */
export function midBlockAttention(reg: ParamRegistry, prefix: string, o: MidBlockOptions): Attention {
  return new Attention(reg, prefix, {
    channels: o.inChannels,
    headDim: o.attentionHeadDim,
    normNumGroups: o.attnGroups ?? (o.resnetTimeScaleShift === 'default' ? o.resnetGroups : null),
    normField: o.attnGroups === null ? 'norm_num_groups' : 'attn_norm_num_groups',
    eps: o.resnetEps,
    rescaleOutputFactor: o.outputScaleFactor,
  });
}

/** `UNetMidBlock2D`: resnet → (attention → resnet) × numLayers (1 in UNet2DModel). */
export class UNetMidBlock2D {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Attention[] = [];

  constructor(reg: ParamRegistry, readonly prefix: string, o: MidBlockOptions) {
    const c = o.inChannels;
    const blockOpts = midBlockResnetOptions(o);
    this.resnets.push(blockResnet(reg, joinName(prefix, 'resnets.0'), blockOpts, c, c));
    for (let i = 0; i < (o.numLayers ?? 1); i++) {
      if (o.addAttention) this.attentions.push(midBlockAttention(reg, joinName(prefix, `attentions.${i}`), o));
      this.resnets.push(blockResnet(reg, joinName(prefix, `resnets.${i + 1}`), blockOpts, c, c));
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

/** The config fields that size and configure a UNet's blocks (UNet2DModel's, shared by the video UNet). */
export type UNetBlocksConfig = Pick<
  UNet2DConfig,
  | 'block_out_channels'
  | 'layers_per_block'
  | 'norm_eps'
  | 'act_fn'
  | 'norm_num_groups'
  | 'resnet_time_scale_shift'
  | 'attention_head_dim'
  | 'attn_norm_num_groups'
  | 'add_attention'
  | 'mid_block_scale_factor'
  | 'downsample_padding'
>;

function sharedBlockOptions(c: UNetBlocksConfig, tembChannels: number) {
  return {
    numLayers: c.layers_per_block,
    tembChannels,
    resnetEps: c.norm_eps,
    resnetActFn: c.act_fn,
    resnetGroups: c.norm_num_groups,
    resnetTimeScaleShift: c.resnet_time_scale_shift,
  };
}

/**
 * The options of down block `i` as UNet2DModel's `__init__` builds them: block i maps
 * `block_out_channels[i−1]` (conv_in's width for i = 0) to `block_out_channels[i]` and
 * downsamples unless it is the last. `downsampleType` is the caller's.
 */
export function downBlockOptions(c: UNetBlocksConfig, tembChannels: number, i: number): Omit<DownBlockOptions, 'downsampleType'> {
  const boc = c.block_out_channels;
  const outChannels = boc[i] as number;
  return {
    ...sharedBlockOptions(c, tembChannels),
    inChannels: boc[Math.max(i - 1, 0)] as number,
    outChannels,
    attentionHeadDim: c.attention_head_dim ?? outChannels,
    addDownsample: i !== boc.length - 1,
    downsamplePadding: c.downsample_padding,
  };
}

/**
 * The options of up block `i` as UNet2DModel's `__init__` builds them, over the reversed widths:
 * `layers_per_block + 1` resnets, output width `reversed[i]`, skips of width `reversed[i+1]`
 * (clamped), input from the block below (`prev_output_channel`); upsamples unless last.
 * `upsampleType` is the caller's.
 */
export function upBlockOptions(c: UNetBlocksConfig, tembChannels: number, i: number): Omit<UpBlockOptions, 'upsampleType'> {
  const boc = c.block_out_channels;
  const rev = [...boc].reverse();
  const outChannels = rev[i] as number;
  return {
    ...sharedBlockOptions(c, tembChannels),
    numLayers: c.layers_per_block + 1,
    inChannels: rev[Math.min(i + 1, boc.length - 1)] as number,
    outChannels,
    prevOutputChannel: rev[Math.max(i - 1, 0)] as number,
    attentionHeadDim: c.attention_head_dim ?? outChannels,
    addUpsample: i !== boc.length - 1,
  };
}

/** The mid block's options as UNet2DModel's `__init__` builds them (at the last, widest level). */
export function midBlockOptions(c: UNetBlocksConfig, tembChannels: number): MidBlockOptions {
  const last = c.block_out_channels[c.block_out_channels.length - 1] as number;
  return {
    inChannels: last,
    tembChannels,
    resnetEps: c.norm_eps,
    resnetActFn: c.act_fn,
    resnetGroups: c.norm_num_groups,
    resnetTimeScaleShift: c.resnet_time_scale_shift,
    attnGroups: c.attn_norm_num_groups,
    addAttention: c.add_attention,
    attentionHeadDim: c.attention_head_dim ?? last,
    outputScaleFactor: c.mid_block_scale_factor,
  };
}

/** A block that may hold spatial attention modules. */
interface WithAttentions {
  readonly attentions: readonly Attention[];
}

/** Every spatial attention module of a UNet's blocks, in state-dict order (down, mid, up). */
export function unetAttentionModules(unet: { downBlocks: readonly WithAttentions[]; midBlock: WithAttentions | null; upBlocks: readonly WithAttentions[] }): Attention[] {
  const mods: Attention[] = [];
  for (const b of unet.downBlocks) mods.push(...b.attentions);
  if (unet.midBlock) mods.push(...unet.midBlock.attentions);
  for (const b of unet.upBlocks) mods.push(...b.attentions);
  return mods;
}
