/**
 * `UNet2DModel` — a port of diffusers' pixel-space UNet (`src/diffusers/models/unets/unet_2d.py`,
 * the network of DDPM, Ho et al. 2020, and of google/ddpm-cifar10-32) to TensorFlow.js, NHWC.
 *
 * Built from a diffusers `config.json`, weights held as trainable `tf.Variable`s under diffusers'
 * state-dict names, loaded from / saved to torch layout (see `./pretrained.ts` for folders).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { DTypeError, ShapeError } from '../errors.js';
import { toGenerator } from '../random.js';
import { silu } from './activations.js';
import type { Attention } from './attention.js';
import { GaussianFourierProjection, TimestepEmbedding, Timesteps } from './embeddings.js';
import { Conv2d, Embedding } from './layers.js';
import {
  checkClassLabels,
  ModelWithWeights,
  timestepTensor,
  valuesFromStateDict,
  type ModelInitOptions,
  type ParamValues,
  type StateDictInput,
} from './model_with_weights.js';
import { initialValues, ParamRegistry, type ParamSource, type ParamSpec } from './modeling_utils.js';
import { GroupNorm } from './normalization.js';
import type { Denoiser, DenoiserInfo } from './types.js';
import {
  downBlockOptions,
  getDownBlock,
  getUpBlock,
  midBlockOptions,
  UNetMidBlock2D,
  unetAttentionModules,
  upBlockOptions,
  type DownBlock2D,
  type UpBlock2D,
} from './unet_2d_blocks.js';
import { parseUNet2DConfig, timeEmbedDim, type UNet2DConfig } from './unet_2d_config.js';

/**
 * The module tree of a UNet2DModel for one config. Building it declares every parameter (name,
 * torch shape, init) and allocates no tensors; `forward` reads weights from a {@link ParamSource}.
 */
export class UNet2DArchitecture {
  readonly registry = new ParamRegistry();
  readonly convIn: Conv2d;
  readonly timeProj: Timesteps | GaussianFourierProjection | Embedding;
  readonly timeEmbedding: TimestepEmbedding;
  readonly classEmbedding: Embedding | TimestepEmbedding | null;
  readonly downBlocks: DownBlock2D[] = [];
  readonly midBlock: UNetMidBlock2D | null;
  readonly upBlocks: UpBlock2D[] = [];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  /** @throws ConfigError for an invalid config (naming the field). */
  constructor(readonly config: UNet2DConfig) {
    const reg = this.registry;
    const c = config;
    const boc = c.block_out_channels;
    const c0 = boc[0] as number;
    const temb = timeEmbedDim(c);

    this.convIn = new Conv2d(reg, 'conv_in', c.in_channels, c0, 3, { padding: 1 });

    let timestepInputDim = c0;
    if (c.time_embedding_type === 'fourier') {
      this.timeProj = new GaussianFourierProjection(reg, 'time_proj', c0, 16);
      timestepInputDim = 2 * c0;
    } else if (c.time_embedding_type === 'learned') {
      this.timeProj = new Embedding(reg, 'time_proj', c.num_train_timesteps as number, c0);
    } else {
      this.timeProj = new Timesteps(c0, c.flip_sin_to_cos, c.freq_shift);
    }
    this.timeEmbedding = new TimestepEmbedding(reg, 'time_embedding', timestepInputDim, temb);

    if (c.class_embed_type === 'timestep') this.classEmbedding = new TimestepEmbedding(reg, 'class_embedding', timestepInputDim, temb);
    else if (c.num_class_embeds !== null) this.classEmbedding = new Embedding(reg, 'class_embedding', c.num_class_embeds, temb);
    else this.classEmbedding = null;

    c.down_block_types.forEach((type, i) => {
      this.downBlocks.push(getDownBlock(reg, `down_blocks.${i}`, type, { ...downBlockOptions(c, temb, i), downsampleType: c.downsample_type }));
    });
    this.midBlock = c.mid_block_type === null ? null : new UNetMidBlock2D(reg, 'mid_block', midBlockOptions(c, temb));
    c.up_block_types.forEach((type, i) => {
      this.upBlocks.push(getUpBlock(reg, `up_blocks.${i}`, type, { ...upBlockOptions(c, temb, i), upsampleType: c.upsample_type }));
    });

    this.convNormOut = new GroupNorm(reg, 'conv_norm_out', c.norm_num_groups, c0, c.norm_eps);
    this.convOut = new Conv2d(reg, 'conv_out', c0, c.out_channels, 3, { padding: 1 });
  }

  /** Every attention module (the ones whose legacy names diffusers renames on load). */
  attentionModules(): Attention[] {
    return unetAttentionModules(this);
  }

  /**
   * `UNet2DModel.forward`: ε̂ (or x̂₀ / v̂ per the training target) for NHWC `sample` at
   * timesteps `t` [N]. Validated inputs only (see {@link UNet2DModel.predict}).
   */
  forward(p: ParamSource, sample: tf.Tensor4D, t: tf.Tensor1D, classLabels: tf.Tensor1D | null): tf.Tensor4D {
    return tf.tidy(() => {
      const c = this.config;
      let x = sample;
      // 0. center input
      if (c.center_input_sample) x = tf.sub(tf.mul(x, 2), 1);
      // 1. time (+ class) embedding
      const tEmb = this.timeProj.forward(p, t);
      let emb = this.timeEmbedding.forward(p, tEmb);
      if (this.classEmbedding) {
        const labels = classLabels as tf.Tensor1D;
        const classEmb =
          this.classEmbedding instanceof TimestepEmbedding
            ? this.classEmbedding.forward(p, this.timeProj.forward(p, labels))
            : this.classEmbedding.forward(p, labels);
        emb = tf.add(emb, classEmb);
      }
      // 2. pre-process
      let h = this.convIn.forward(p, x);
      // 3. down: the skip stack starts with conv_in's output
      const skips: tf.Tensor4D[] = [h];
      for (const block of this.downBlocks) {
        const out = block.forward(p, h, emb);
        h = out.hidden;
        skips.push(...out.skips);
      }
      // 4. mid
      if (this.midBlock) h = this.midBlock.forward(p, h, emb);
      // 5. up: each block pops one skip per resnet
      for (const block of this.upBlocks) h = block.forward(p, h, skips, emb);
      // 6. post-process (always SiLU, whatever act_fn is)
      let out = this.convOut.forward(p, silu(this.convNormOut.forward(p, h)));
      if (c.time_embedding_type === 'fourier') out = tf.div(out, tf.reshape(tf.cast(t, 'float32'), [-1, 1, 1, 1]));
      return out;
    });
  }
}

// The weight-loading types live with the shared weight holder; re-exported under their old home.
export type { StateDictInput, LoadWeightsOptions, LoadWeightsReport } from './model_with_weights.js';

/** Options of {@link UNet2DModel.fromConfig}. */
export type UNet2DFromConfigOptions = ModelInitOptions;

/**
 * diffusers' UNet2DModel in TensorFlow.js (NHWC). Implements {@link Denoiser}.
 *
 * ```ts
 * const unet = UNet2DModel.fromConfig(config, { seed: 0 });   // random init, PyTorch-style
 * unet.loadWeights(readSafetensors(bytes).tensors);           // strict names + shapes
 * const eps = tf.tidy(() => unet.predict(xt, 999));            // [N,H,W,C]
 * unet.dispose();
 * ```
 */
export class UNet2DModel extends ModelWithWeights<UNet2DArchitecture> implements Denoiser {
  readonly config: UNet2DConfig;
  readonly info: DenoiserInfo;

  private constructor(config: UNet2DConfig, values: ParamValues) {
    const architecture = new UNet2DArchitecture(config);
    super(architecture, values, 'UNet2DModel', legacyMap(architecture));
    this.config = config;
    this.info = {
      sampleSize: config.sample_size,
      inChannels: config.in_channels,
      outChannels: config.out_channels,
      numClassEmbeds: config.class_embed_type === null ? config.num_class_embeds : null,
    };
  }

  /**
   * Builds a randomly initialised model from a diffusers `config.json` object, with PyTorch's
   * default initialisation (conv/linear: kaiming-uniform(a=√5) → U(±1/√fan_in), biases the same;
   * GroupNorm γ=1, β=0; embeddings N(0,1); Fourier features N(0,16²)), drawn from `seed`.
   * @throws ConfigError naming the invalid field.
   */
  static fromConfig(config: unknown, options: UNet2DFromConfigOptions): UNet2DModel {
    const parsed = parseUNet2DConfig(config);
    const gen = toGenerator(options.seed);
    return new UNet2DModel(parsed, (spec) => initialValues(spec, gen));
  }

  /**
   * Builds a model directly from torch-layout weights (strict: names, shapes and finiteness are
   * checked before anything is allocated).
   * @throws ConfigError for the config, WeightsError naming the offending tensor.
   */
  static fromWeights(config: unknown, tensors: StateDictInput): UNet2DModel {
    const parsed = parseUNet2DConfig(config);
    const arch = new UNet2DArchitecture(parsed);
    return new UNet2DModel(parsed, valuesFromStateDict(arch.registry.specs, legacyMap(arch), tensors));
  }

  /** The parameter table of a config (torch shapes), computed without allocating any tensor. */
  static parameterSpecs(config: unknown): ParamSpec[] {
    return new UNet2DArchitecture(parseUNet2DConfig(config)).registry.specs;
  }

  /**
   * Predicts the network output for an NHWC `sample` at `timestep` (a number for the whole batch,
   * or [N] / [1]); `classLabels` [N] int32 for class-conditional models. Synchronous, tidy-safe,
   * does not dispose its inputs.
   * @throws ShapeError / DTypeError for bad inputs, ValueRangeError for out-of-range labels,
   *   InputError when labels are missing (conditional model) or given (unconditional model).
   */
  predict(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor4D {
    this.assertAlive();
    const n = this.checkSample(sample);
    const labels = checkClassLabels(classLabels, n, this.architecture.classEmbedding, { model: 'UNet2DModel', batch: 'N', item: 'sample' });
    return tf.tidy(() => {
      const t = timestepTensor(timestep, n);
      return this.architecture.forward(this.source, sample, t, labels);
    });
  }

  private checkSample(sample: tf.Tensor4D): number {
    if (!(sample instanceof tf.Tensor)) throw new ShapeError('sample must be a tf.Tensor [N,H,W,C]');
    if (sample.rank !== 4) throw new ShapeError(`sample must have rank 4 [N,H,W,C], got shape [${sample.shape.join(',')}]`, { actual: sample.shape });
    if (sample.dtype !== 'float32') throw new DTypeError(`sample must be float32, got ${sample.dtype}`);
    const [n, h, w, ch] = sample.shape;
    if (ch !== this.config.in_channels) {
      throw new ShapeError(`sample must have ${this.config.in_channels} channels (NHWC), got shape [${sample.shape.join(',')}]`, {
        actual: sample.shape,
      });
    }
    const f = 2 ** (this.config.block_out_channels.length - 1);
    if (n === 0 || h === 0 || h % f !== 0 || w % f !== 0) {
      throw new ShapeError(`sample height and width must be positive multiples of ${f} (2^(blocks − 1)), got [${sample.shape.join(',')}]`, {
        actual: sample.shape,
      });
    }
    return n;
  }
}

/** Legacy → current names of every attention parameter (diffusers' `_fix_state_dict_keys_on_load`). */
function legacyMap(arch: UNet2DArchitecture): Map<string, string> {
  const m = new Map<string, string>();
  for (const attn of arch.attentionModules()) for (const [legacy, cur] of attn.legacyRenames()) m.set(legacy, cur);
  return m;
}
