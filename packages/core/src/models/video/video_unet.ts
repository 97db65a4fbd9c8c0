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
import { DTypeError, InputError, NonFiniteError, ShapeError, ValueRangeError, WeightsError } from '../../errors.js';
import { toGenerator, type RandomSource } from '../../random.js';
import type { SafetensorsTensor } from '../../safetensors/safetensors.js';
import { silu } from '../activations.js';
import type { Attention } from '../attention.js';
import { TimestepEmbedding, Timesteps } from '../embeddings.js';
import { Conv2d, Embedding } from '../layers.js';
import { initialValues, nativeShape, nativeToTorch, numel, torchToNative, ParamRegistry, type ParamSource, type ParamSpec } from '../modeling_utils.js';
import { GroupNorm } from '../normalization.js';
import type { UNet2DModel } from '../unet_2d.js';
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

    const common = {
      ...temporal,
      numLayers: c.layers_per_block,
      tembChannels: temb,
      resnetEps: c.norm_eps,
      resnetActFn: c.act_fn,
      resnetGroups: c.norm_num_groups,
      resnetTimeScaleShift: c.resnet_time_scale_shift,
    };
    let outC = c0;
    c.down_block_types.forEach((type, i) => {
      const inC = outC;
      outC = boc[i] as number;
      this.downBlocks.push(
        new DownBlock3D(
          reg,
          `down_blocks.${i}`,
          {
            ...common,
            inChannels: inC,
            outChannels: outC,
            attentionHeadDim: c.attention_head_dim ?? outC,
            addDownsample: i !== boc.length - 1,
            downsamplePadding: c.downsample_padding,
          },
          type === 'AttnDownBlock3D',
        ),
      );
    });

    const last = boc[boc.length - 1] as number;
    this.midBlock =
      c.mid_block_type === null
        ? null
        : new UNetMidBlock3D(reg, 'mid_block', {
            ...temporal,
            inChannels: last,
            tembChannels: temb,
            resnetEps: c.norm_eps,
            resnetActFn: c.act_fn,
            resnetGroups: c.norm_num_groups,
            resnetTimeScaleShift: c.resnet_time_scale_shift,
            attnGroups: c.attn_norm_num_groups,
            addAttention: c.add_attention,
            attentionHeadDim: c.attention_head_dim ?? last,
            outputScaleFactor: c.mid_block_scale_factor,
          });

    const rev = [...boc].reverse();
    outC = rev[0] as number;
    c.up_block_types.forEach((type, i) => {
      const prevOutputChannel = outC;
      outC = rev[i] as number;
      const inC = rev[Math.min(i + 1, boc.length - 1)] as number;
      this.upBlocks.push(
        new UpBlock3D(
          reg,
          `up_blocks.${i}`,
          {
            ...common,
            numLayers: c.layers_per_block + 1,
            inChannels: inC,
            outChannels: outC,
            prevOutputChannel,
            attentionHeadDim: c.attention_head_dim ?? outC,
            addUpsample: i !== boc.length - 1,
          },
          type === 'AttnUpBlock3D',
        ),
      );
    });

    this.convNormOut = new GroupNorm(reg, 'conv_norm_out', c.norm_num_groups, c0, c.norm_eps);
    this.convOut = new Conv2d(reg, 'conv_out', c0, c.out_channels, 3, { padding: 1 });
  }

  /** Every spatial attention module. */
  attentionModules(): Attention[] {
    const mods: Attention[] = [];
    for (const b of this.downBlocks) mods.push(...b.attentions);
    if (this.midBlock) mods.push(...this.midBlock.attentions);
    for (const b of this.upBlocks) mods.push(...b.attentions);
    return mods;
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
export type VideoStateDictInput =
  | ReadonlyMap<string, SafetensorsTensor | tf.Tensor>
  | Readonly<Record<string, SafetensorsTensor | tf.Tensor>>;

/** What {@link VideoUNetModel.loadWeights} did. */
export interface VideoLoadWeightsReport {
  loaded: string[];
  /** Parameters not given (kept their values; strict mode throws instead). */
  missing: string[];
  /** Given tensors that are not parameters (strict mode throws instead). */
  unexpected: string[];
}

/** Options of {@link VideoUNetModel.fromConfig}. */
export interface VideoUNetFromConfigOptions {
  /** Seed or Generator of the random initialisation. */
  seed: RandomSource;
}

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
export class VideoUNetModel implements TrainableVideoDenoiser {
  readonly config: VideoUNetConfig;
  readonly info: VideoDenoiserInfo;
  readonly architecture: VideoUNetArchitecture;
  private readonly specs: ParamSpec[];
  private readonly vars = new Map<string, tf.Variable>();
  private disposed = false;
  private readonly source: ParamSource = {
    get: (name) => {
      const v = this.vars.get(name);
      if (!v) throw new WeightsError('WEIGHTS_MISSING', `parameter ${name} does not exist`, { name });
      return v;
    },
  };

  private constructor(config: VideoUNetConfig, values: (spec: ParamSpec) => Float32Array) {
    this.config = config;
    this.architecture = new VideoUNetArchitecture(config);
    this.specs = this.architecture.registry.specs;
    this.info = {
      sampleSize: config.sample_size,
      numFrames: config.num_frames,
      inChannels: config.in_channels,
      outChannels: config.out_channels,
      numClassEmbeds: config.num_class_embeds,
    };
    try {
      for (const spec of this.specs) {
        this.vars.set(
          spec.name,
          tf.tidy(() => tf.variable(tf.tensor(values(spec), nativeShape(spec), 'float32'), spec.trainable)),
        );
      }
    } catch (e) {
      for (const v of this.vars.values()) v.dispose();
      throw e;
    }
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
    const resolved = resolveVideoWeights(specs, tensors, true);
    return new VideoUNetModel(parsed, (spec) => resolved.values.get(spec.name) as Float32Array);
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

  /** Parameter declarations (torch shapes, layouts, initialisations), in state-dict order. */
  parameterSpecs(): ParamSpec[] {
    return [...this.specs];
  }

  /** Number of parameter values. */
  paramCount(): number {
    return this.specs.reduce((a, s) => a + numel(s.shape), 0);
  }

  /** Weights as variables by state-dict name (TF.js layout). */
  get variables(): ReadonlyMap<string, tf.Variable> {
    this.assertAlive();
    return this.vars;
  }

  /** The trainable variables, in state-dict order. */
  trainableVariables(): tf.Variable[] {
    this.assertAlive();
    return this.specs.filter((s) => s.trainable).map((s) => this.vars.get(s.name) as tf.Variable);
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
    const labels = this.checkLabels(classLabels, b);
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

  private checkLabels(labels: tf.Tensor1D | undefined, b: number): tf.Tensor1D | null {
    const emb = this.architecture.classEmbedding;
    if (!emb) {
      if (labels !== undefined) throw new InputError('CLASS_LABELS_UNEXPECTED', 'classLabels given, but this VideoUNetModel is unconditional (no num_class_embeds)');
      return null;
    }
    if (labels === undefined) throw new InputError('CLASS_LABELS_REQUIRED', 'this VideoUNetModel is class-conditional: predict needs classLabels [B]');
    if (!(labels instanceof tf.Tensor) || labels.rank !== 1 || labels.shape[0] !== b) {
      throw new ShapeError(`classLabels must have shape [${b}] (one per clip)`, { actual: (labels as tf.Tensor)?.shape });
    }
    if (labels.dtype !== 'int32') throw new DTypeError(`classLabels must be int32, got ${labels.dtype}`);
    const v = labels.dataSync();
    for (let i = 0; i < v.length; i++) {
      const c = v[i] as number;
      if (!(c >= 0 && c < emb.numEmbeddings)) throw new ValueRangeError(`classLabels[${i}] = ${c} is outside [0, ${emb.numEmbeddings})`, { index: i, value: c });
    }
    return labels;
  }

  /**
   * Replaces weights with torch-layout tensors (e.g. from a safetensors file). Everything is
   * validated first; variables are updated in place (`assign`), so optimizer references stay valid.
   * @throws WeightsError: WEIGHTS_MISSING / WEIGHTS_UNEXPECTED (strict), WEIGHTS_SHAPE,
   *   WEIGHTS_DTYPE, WEIGHTS_NON_FINITE.
   */
  loadWeights(tensors: VideoStateDictInput, options: { strict?: boolean } = {}): VideoLoadWeightsReport {
    this.assertAlive();
    const resolved = resolveVideoWeights(this.specs, tensors, options.strict ?? true);
    for (const spec of this.specs) {
      const data = resolved.values.get(spec.name);
      if (!data) continue;
      const v = this.vars.get(spec.name) as tf.Variable;
      tf.tidy(() => v.assign(tf.tensor(data, nativeShape(spec), 'float32')));
    }
    return resolved.report;
  }

  /** The weights in torch layout (conv [O,I,kh,kw], linear [O,I]) as float32 safetensors entries. */
  stateDict(): Map<string, SafetensorsTensor> {
    this.assertAlive();
    const out = new Map<string, SafetensorsTensor>();
    for (const spec of this.specs) {
      const t = nativeToTorch(spec.layout, this.vars.get(spec.name) as tf.Variable);
      const data = (t.dataSync() as Float32Array).slice();
      t.dispose();
      out.set(spec.name, { dtype: 'F32', shape: [...spec.shape], data });
    }
    return out;
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

  /** Frees every variable. */
  dispose(): void {
    if (this.disposed) return;
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** The config as written to `config.json`. */
  toJSON(): Record<string, unknown> {
    return videoUNetConfigToJSON(this.config);
  }

  private assertAlive(): void {
    if (this.disposed) throw new InputError('MODEL_DISPOSED', 'this VideoUNetModel was disposed');
  }
}

/** A number or a [B]/[1] tensor → float32 [B] (validated). */
export function timestepTensor(timestep: number | tf.Tensor1D, b: number): tf.Tensor1D {
  if (typeof timestep === 'number') {
    if (!Number.isFinite(timestep)) throw new NonFiniteError(`timestep must be finite, got ${timestep}`);
    return tf.fill([b], timestep, 'float32') as tf.Tensor1D;
  }
  if (!(timestep instanceof tf.Tensor) || timestep.rank > 1 || (timestep.size !== 1 && timestep.size !== b)) {
    throw new ShapeError(`timestep must be a number or a tensor of shape [${b}] or [1]`, { actual: (timestep as tf.Tensor)?.shape });
  }
  return tf.tidy(() => {
    const t = tf.cast(tf.reshape(timestep, [-1]), 'float32') as tf.Tensor1D;
    return t.size === b ? t : (tf.broadcastTo(t, [b]) as tf.Tensor1D);
  });
}

/** Resolves torch-layout tensors against the parameter table; values come back in TF.js layout. */
function resolveVideoWeights(
  specs: readonly ParamSpec[],
  tensors: VideoStateDictInput,
  strict: boolean,
): { values: Map<string, Float32Array>; report: VideoLoadWeightsReport } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const entries: Array<[string, SafetensorsTensor | tf.Tensor]> =
    tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, SafetensorsTensor | tf.Tensor>);
  const values = new Map<string, Float32Array>();
  const unexpected: string[] = [];
  for (const [key, value] of entries) {
    const spec = byName.get(key);
    if (!spec) {
      unexpected.push(key);
      continue;
    }
    let shape: number[];
    let data: Float32Array;
    if (value instanceof tf.Tensor) {
      if (value.dtype !== 'float32') throw new WeightsError('WEIGHTS_DTYPE', `tensor ${key} is ${value.dtype}; weights must be float32`, { name: key });
      shape = [...value.shape];
      data = value.dataSync() as Float32Array;
    } else if (value && typeof value === 'object' && Array.isArray(value.shape) && value.dtype === 'F32' && value.data instanceof Float32Array) {
      shape = [...value.shape];
      data = value.data;
    } else {
      throw new WeightsError('WEIGHTS_DTYPE', `tensor ${key} must be a float32 tf.Tensor or an F32 safetensors entry`, { name: key });
    }
    if (shape.length !== spec.shape.length || shape.some((d, i) => d !== spec.shape[i]) || data.length !== numel(spec.shape)) {
      throw new WeightsError('WEIGHTS_SHAPE', `tensor ${key} has shape [${shape.join(',')}], but the model expects [${spec.shape.join(',')}]`, {
        name: key,
        expected: [...spec.shape],
        actual: shape,
      });
    }
    for (let i = 0; i < data.length; i++) {
      const x = data[i] as number;
      if (x - x !== 0) throw new WeightsError('WEIGHTS_NON_FINITE', `tensor ${key} contains a non-finite value (${x}) at flat index ${i}`, { name: key, index: i });
    }
    const native = tf.tidy(() => torchToNative(spec.layout, tf.tensor(data, [...spec.shape], 'float32')));
    values.set(key, native.dataSync() as Float32Array);
    native.dispose();
  }
  const missing = specs.filter((s) => !values.has(s.name)).map((s) => s.name);
  if (strict && missing.length > 0) {
    throw new WeightsError('WEIGHTS_MISSING', `missing ${missing.length} tensor(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`, { missing });
  }
  if (strict && unexpected.length > 0) {
    throw new WeightsError('WEIGHTS_UNEXPECTED', `unexpected ${unexpected.length} tensor(s) not in the model: ${unexpected.slice(0, 5).join(', ')}`, { unexpected });
  }
  return { values, report: { loaded: [...values.keys()], missing, unexpected } };
}
