/**
 * `VideoUNetModel` — a small factorised space-time UNet for video diffusion (Ho et al. 2022,
 * "Video Diffusion Models", §3; Singer et al. 2022, "Make-A-Video", §3.2), built from core's
 * UNet2DModel blocks.
 *
 * Every spatial layer (conv_in, ResnetBlock2D, spatial Attention, Down/Upsample2D, conv_out) runs
 * per frame, frames folded into the batch ([B·T,H,W,C]); a temporal conv layer follows every resnet
 * and a temporal attention layer every spatial attention. Temporal layers are residual with
 * zero-initialised output projections, so a fresh model *is* its spatial UNet2DModel applied frame
 * by frame ({@link VideoUNetModel.fromImageModel} inflates a trained image model that way).
 * The whole clip shares one timestep and one class label.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { DTypeError, ShapeError, WeightsError } from '../../errors.js';
import { toGenerator } from '../../random.js';
import type { SafetensorsTensor } from '../../safetensors/safetensors.js';
import { silu } from '../activations.js';
import type { Attention } from '../attention.js';
import { TimestepEmbedding, Timesteps } from '../embeddings.js';
import { Conv2d, Embedding } from '../layers.js';
import {
  checkClassLabels,
  ModelWithWeights,
  timestepTensor,
  valuesFromStateDict,
  type LoadWeightsReport,
  type ModelInitOptions,
  type ParamValues,
  type StateDictInput,
} from '../model_with_weights.js';
import { initialValues, ParamRegistry, type ParamSource } from '../modeling_utils.js';
import { GroupNorm } from '../normalization.js';
import type { UNet2DModel } from '../unet_2d.js';
import { downBlockOptions, midBlockOptions, unetAttentionModules, upBlockOptions } from '../unet_2d_blocks.js';
import { timeEmbedDim } from '../unet_2d_config.js';
import { DownBlock3D, UNetMidBlock3D, UpBlock3D, type TemporalBlockOptions } from './video_unet_blocks.js';
import {
  parseVideoUNetConfig,
  spatialUNet2DConfig,
  videoUNetConfigToJSON,
  type VideoUNetConfig,
  type VideoUNetTemporalConfig,
} from './video_unet_config.js';

/** Static facts about a video denoiser (the video analogue of `DenoiserInfo`). */
export interface VideoDenoiserInfo {
  /** Frame height = width. */
  readonly sampleSize: number;
  /** Frames per clip the model was trained on. */
  readonly numFrames: number;
  readonly inChannels: number;
  readonly outChannels: number;
  /** Rows of the class table (the last usually the CFG "null" class), or null when unconditional. */
  readonly numClassEmbeds: number | null;
}

/**
 * A video denoising network ε_θ(x_t, t[, y]) on clips [B,T,H,W,C] in model space — the video
 * analogue of core's `Denoiser`. `predict` is synchronous and tidy-safe, does not dispose its
 * inputs and returns a new [B,T,H,W,outChannels] tensor; `timestep` is one number for the batch or
 * a [B] tensor (one timestep per clip); `classLabels` [B] int32 for class-conditional models.
 */
export interface VideoDenoiser {
  readonly info: VideoDenoiserInfo;
  predict(sample: tf.Tensor5D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor5D;
}

/** A video denoiser whose weights can be trained (named `tf.Variable`s). */
export interface TrainableVideoDenoiser extends VideoDenoiser {
  readonly variables: ReadonlyMap<string, tf.Variable>;
}

/** True for the state-dict names of temporal layers. */
export function isTemporalParam(name: string): boolean {
  return /(^|\.)temp_(convs|attentions)\./.test(name);
}

/** The module tree of a {@link VideoUNetModel} (declares parameters, allocates nothing). */
export class VideoUNetArchitecture {
  readonly registry = new ParamRegistry();
  readonly convIn: Conv2d;
  readonly timeProj: Timesteps;
  readonly timeEmbedding: TimestepEmbedding;
  readonly classEmbedding: Embedding | null;
  readonly downBlocks: DownBlock3D[] = [];
  readonly midBlock: UNetMidBlock3D | null;
  readonly upBlocks: UpBlock3D[] = [];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(readonly config: VideoUNetConfig) {
    const reg = this.registry;
    const c = config;
    const boc = c.block_out_channels;
    const c0 = boc[0] as number;
    const temb = timeEmbedDim(spatialUNet2DConfig(c));
    const temporal: TemporalBlockOptions = {
      temporalConvLayers: c.temporal_conv_layers,
      temporalKernelSize: c.temporal_kernel_size,
      temporalAttention: c.temporal_attention,
      temporalAttentionHeadDim: c.temporal_attention_head_dim,
      temporalPositionEmbedding: c.temporal_position_embedding,
    };

    this.convIn = new Conv2d(reg, 'conv_in', c.in_channels, c0, 3, { padding: 1 });
    this.timeProj = new Timesteps(c0, c.flip_sin_to_cos, c.freq_shift);
    this.timeEmbedding = new TimestepEmbedding(reg, 'time_embedding', c0, temb);
    this.classEmbedding = c.num_class_embeds === null ? null : new Embedding(reg, 'class_embedding', c.num_class_embeds, temb);

    c.down_block_types.forEach((type, i) => {
      this.downBlocks.push(new DownBlock3D(reg, `down_blocks.${i}`, { ...downBlockOptions(c, temb, i), ...temporal }, type === 'AttnDownBlock3D'));
    });
    this.midBlock = c.mid_block_type === null ? null : new UNetMidBlock3D(reg, 'mid_block', { ...midBlockOptions(c, temb), ...temporal });
    c.up_block_types.forEach((type, i) => {
      this.upBlocks.push(new UpBlock3D(reg, `up_blocks.${i}`, { ...upBlockOptions(c, temb, i), ...temporal }, type === 'AttnUpBlock3D'));
    });

    this.convNormOut = new GroupNorm(reg, 'conv_norm_out', c.norm_num_groups, c0, c.norm_eps);
    this.convOut = new Conv2d(reg, 'conv_out', c0, c.out_channels, 3, { padding: 1 });
  }

  /** Every spatial attention module. */
  attentionModules(): Attention[] {
    return unetAttentionModules(this);
  }

  /**
   * The forward pass on validated inputs: `sample` [B,T,H,W,C], timesteps `t` [B] (float32),
   * labels [B] or null → [B,T,H,W,out_channels].
   */
  forward(p: ParamSource, sample: tf.Tensor5D, t: tf.Tensor1D, classLabels: tf.Tensor1D | null): tf.Tensor5D {
    return tf.tidy(() => {
      const c = this.config;
      const [b, frames, h, w, ch] = sample.shape;
      let x = tf.reshape(sample, [b * frames, h, w, ch]) as tf.Tensor4D;
      if (c.center_input_sample) x = tf.sub(tf.mul(x, 2), 1);
      let emb: tf.Tensor2D = this.timeEmbedding.forward(p, this.timeProj.forward(p, t));
      if (this.classEmbedding) emb = tf.add(emb, this.classEmbedding.forward(p, classLabels as tf.Tensor1D));
      // One embedding per clip, repeated for each of its frames (frames are consecutive rows).
      const e = emb.shape[1];
      const frameEmb = tf.reshape(tf.broadcastTo(tf.reshape(emb, [b, 1, e]), [b, frames, e]), [b * frames, e]) as tf.Tensor2D;

      let hidden = this.convIn.forward(p, x);
      const skips: tf.Tensor4D[] = [hidden];
      for (const block of this.downBlocks) {
        const out = block.forward(p, hidden, frameEmb, frames);
        hidden = out.hidden;
        skips.push(...out.skips);
      }
      if (this.midBlock) hidden = this.midBlock.forward(p, hidden, frameEmb, frames);
      for (const block of this.upBlocks) hidden = block.forward(p, hidden, skips, frameEmb, frames);
      const out = this.convOut.forward(p, silu(this.convNormOut.forward(p, hidden)));
      return tf.reshape(out, [b, frames, h, w, c.out_channels]) as tf.Tensor5D;
    });
  }
}

/** Tensors accepted by {@link VideoUNetModel.loadWeights}: torch layout, by state-dict name. */
export type VideoStateDictInput = StateDictInput;

/** What {@link VideoUNetModel.loadWeights} did (`renamed` is always empty: no legacy names). */
export type VideoLoadWeightsReport = LoadWeightsReport;

/** Options of {@link VideoUNetModel.fromConfig}. */
export type VideoUNetFromConfigOptions = ModelInitOptions;

/**
 * The factorised space-time video UNet. Implements {@link TrainableVideoDenoiser}; weights are
 * `tf.Variable`s under state-dict names (UNet2DModel's names for the spatial layers).
 *
 * ```ts
 * const model = VideoUNetModel.fromConfig(smallVideoUNetConfig({ sampleSize: 16, numFrames: 8, channels: 1 }), { seed: 0 });
 * const eps = tf.tidy(() => model.predict(xt, 500));   // xt [B,8,16,16,1] → [B,8,16,16,1]
 * await saveVideoUNetToFolder(model, 'out/vdm');
 * model.dispose();
 * ```
 */
export class VideoUNetModel extends ModelWithWeights<VideoUNetArchitecture> implements TrainableVideoDenoiser {
  readonly config: VideoUNetConfig;
  readonly info: VideoDenoiserInfo;

  private constructor(config: VideoUNetConfig, values: ParamValues) {
    super(new VideoUNetArchitecture(config), values, 'VideoUNetModel');
    this.config = config;
    this.info = {
      sampleSize: config.sample_size,
      numFrames: config.num_frames,
      inChannels: config.in_channels,
      outChannels: config.out_channels,
      numClassEmbeds: config.num_class_embeds,
    };
  }

  /**
   * A randomly initialised model: PyTorch's default initialisation for every spatial layer (as
   * `UNet2DModel.fromConfig`), and zeros for the temporal output projections (identity temporal
   * layers). @throws ConfigError naming the invalid field.
   */
  static fromConfig(config: unknown, options: VideoUNetFromConfigOptions): VideoUNetModel {
    const parsed = parseVideoUNetConfig(config);
    const gen = toGenerator(options.seed);
    return new VideoUNetModel(parsed, (spec) => initialValues(spec, gen));
  }

  /**
   * A model with the given torch-layout weights (strict: every parameter, nothing else).
   * @throws ConfigError, WeightsError naming the offending tensor.
   */
  static fromWeights(config: unknown, tensors: VideoStateDictInput): VideoUNetModel {
    const parsed = parseVideoUNetConfig(config);
    const specs = new VideoUNetArchitecture(parsed).registry.specs;
    return new VideoUNetModel(parsed, valuesFromStateDict(specs, new Map(), tensors));
  }

  /**
   * Inflates a trained image model (Make-A-Video §3.2, "we initialise the spatial layers from the
   * image model"): the spatial weights are copied from `image`, temporal layers are drawn from
   * `seed` with zero output projections, so the result reproduces `image` on every frame until
   * it is fine-tuned on video. `temporal` gives `num_frames` and optionally the other temporal fields.
   */
  static fromImageModel(
    image: UNet2DModel,
    temporal: Partial<VideoUNetTemporalConfig> & { num_frames: number },
    options: VideoUNetFromConfigOptions,
  ): VideoUNetModel {
    const c = image.config;
    const raw = {
      ...c,
      ...temporal,
      down_block_types: c.down_block_types.map((d) => d.replace('2D', '3D')),
      up_block_types: c.up_block_types.map((u) => u.replace('2D', '3D')),
    };
    const model = VideoUNetModel.fromConfig(raw, options);
    try {
      const report = model.loadWeights(image.stateDict(), { strict: false });
      const missingSpatial = report.missing.filter((n) => !isTemporalParam(n));
      if (missingSpatial.length > 0 || report.unexpected.length > 0) {
        throw new WeightsError('WEIGHTS_MISSING', `the image model does not match the spatial network: missing ${missingSpatial.slice(0, 3).join(', ')}; unexpected ${report.unexpected.slice(0, 3).join(', ')}`, {
          missing: missingSpatial,
          unexpected: report.unexpected,
        });
      }
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }

  /**
   * ε̂ (or x̂₀ / v̂, per the training target) for clips `sample` [B,T,H,W,C] at `timestep` (a
   * number, or [B] / [1]); `classLabels` [B] int32 for class-conditional models.
   * @throws ShapeError / DTypeError for bad inputs, ValueRangeError for out-of-range labels,
   *   NonFiniteError for a non-finite timestep, InputError for missing/unexpected labels.
   */
  predict(sample: tf.Tensor5D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor5D {
    this.assertAlive();
    const b = this.checkSample(sample);
    const labels = checkClassLabels(classLabels, b, this.architecture.classEmbedding, { model: 'VideoUNetModel', batch: 'B', item: 'clip' });
    return tf.tidy(() => this.architecture.forward(this.source, sample, timestepTensor(timestep, b), labels));
  }

  private checkSample(sample: tf.Tensor5D): number {
    if (!(sample instanceof tf.Tensor)) throw new ShapeError('sample must be a tf.Tensor [B,T,H,W,C]');
    if (sample.rank !== 5) {
      throw new ShapeError(`sample must be a batch of clips [B,T,H,W,C] (rank 5), got shape [${sample.shape.join(',')}]`, { actual: sample.shape });
    }
    if (sample.dtype !== 'float32') throw new DTypeError(`sample must be float32, got ${sample.dtype}`);
    const [b, t, h, w, ch] = sample.shape;
    if (ch !== this.config.in_channels) {
      throw new ShapeError(`sample must have ${this.config.in_channels} channels, got shape [${sample.shape.join(',')}]`, { actual: sample.shape });
    }
    const f = 2 ** (this.config.block_out_channels.length - 1);
    if (b === 0 || t === 0 || h === 0 || h % f !== 0 || w % f !== 0) {
      throw new ShapeError(`sample needs ≥ 1 clip and frame, and height and width positive multiples of ${f}; got [${sample.shape.join(',')}]`, {
        actual: sample.shape,
      });
    }
    return b;
  }

  /**
   * The spatial weights only: a state dict `UNet2DModel.fromWeights(spatialUNet2DConfig(config), …)`
   * loads — the per-frame image model inside the video model.
   */
  spatialStateDict(): Map<string, SafetensorsTensor> {
    const all = this.stateDict();
    for (const k of [...all.keys()]) if (isTemporalParam(k)) all.delete(k);
    return all;
  }

  /** The config as written to `config.json`. */
  toJSON(): Record<string, unknown> {
    return videoUNetConfigToJSON(this.config);
  }
}

// Kept under its old home (now shared with UNet2DModel).
export { timestepTensor } from '../model_with_weights.js';
