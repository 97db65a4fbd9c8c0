/**
 * `UNet2DModel` — a port of diffusers' pixel-space UNet (`src/diffusers/models/unets/unet_2d.py`,
 * the network of DDPM, Ho et al. 2020, and of google/ddpm-cifar10-32) to TensorFlow.js, NHWC.
 *
 * Built from a diffusers `config.json`, weights held as trainable `tf.Variable`s under diffusers'
 * state-dict names, loaded from / saved to torch layout (see `./pretrained.ts` for folders).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { DTypeError, InputError, NonFiniteError, ShapeError, ValueRangeError, WeightsError } from '../errors.js';
import { toGenerator, type RandomSource } from '../random.js';
import type { SafetensorsTensor } from '../safetensors/safetensors.js';
import { silu } from './activations.js';
import type { Attention } from './attention.js';
import { GaussianFourierProjection, TimestepEmbedding, Timesteps } from './embeddings.js';
import { Conv2d, Embedding } from './layers.js';
import {
  initialValues,
  nativeShape,
  nativeToTorch,
  numel,
  ParamRegistry,
  type ParamSource,
  type ParamSpec,
} from './modeling_utils.js';
import { GroupNorm } from './normalization.js';
import type { Denoiser, DenoiserInfo } from './types.js';
import { getDownBlock, getUpBlock, UNetMidBlock2D, type DownBlock2D, type UpBlock2D } from './unet_2d_blocks.js';
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

    const common = {
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
        getDownBlock(reg, `down_blocks.${i}`, type, {
          ...common,
          inChannels: inC,
          outChannels: outC,
          attentionHeadDim: c.attention_head_dim ?? outC,
          addDownsample: i !== boc.length - 1,
          downsamplePadding: c.downsample_padding,
          downsampleType: c.downsample_type,
        }),
      );
    });

    const last = boc[boc.length - 1] as number;
    this.midBlock =
      c.mid_block_type === null
        ? null
        : new UNetMidBlock2D(reg, 'mid_block', {
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
        getUpBlock(reg, `up_blocks.${i}`, type, {
          ...common,
          numLayers: c.layers_per_block + 1,
          inChannels: inC,
          outChannels: outC,
          prevOutputChannel,
          attentionHeadDim: c.attention_head_dim ?? outC,
          addUpsample: i !== boc.length - 1,
          upsampleType: c.upsample_type,
        }),
      );
    });

    this.convNormOut = new GroupNorm(reg, 'conv_norm_out', c.norm_num_groups, c0, c.norm_eps);
    this.convOut = new Conv2d(reg, 'conv_out', c0, c.out_channels, 3, { padding: 1 });
  }

  /** Every attention module (the ones whose legacy names diffusers renames on load). */
  attentionModules(): Attention[] {
    const mods: Attention[] = [];
    for (const b of this.downBlocks) mods.push(...b.attentions);
    if (this.midBlock) mods.push(...this.midBlock.attentions);
    for (const b of this.upBlocks) mods.push(...b.attentions);
    return mods;
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

/** Tensors accepted by {@link UNet2DModel.loadWeights}: safetensors entries or tf tensors, in torch layout. */
export type StateDictInput =
  | ReadonlyMap<string, SafetensorsTensor | tf.Tensor>
  | Readonly<Record<string, SafetensorsTensor | tf.Tensor>>;

/** Options of {@link UNet2DModel.loadWeights}. */
export interface LoadWeightsOptions {
  /**
   * `true` (default): every parameter must be given and nothing else (like torch's
   * `load_state_dict(strict=True)`). `false`: missing parameters keep their values and unexpected
   * tensors are ignored (both are reported).
   */
  strict?: boolean;
}

/** What {@link UNet2DModel.loadWeights} did. */
export interface LoadWeightsReport {
  loaded: string[];
  /** Parameters not in the input (strict mode throws instead). */
  missing: string[];
  /** Input tensors that are not parameters (strict mode throws instead). */
  unexpected: string[];
  /** Legacy attention names that were renamed, as [legacy, current]. */
  renamed: Array<[string, string]>;
}

/** Options of {@link UNet2DModel.fromConfig}. */
export interface UNet2DFromConfigOptions {
  /** Seed or Generator of the random initialisation (required: every draw is reproducible). */
  seed: RandomSource;
}

function isTensor(v: unknown): v is tf.Tensor {
  return v instanceof tf.Tensor;
}

/** Input tensors resolved against the parameter table, validated, not yet applied. */
interface ResolvedWeights {
  values: Map<string, Float32Array>;
  report: LoadWeightsReport;
}

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
export class UNet2DModel implements Denoiser {
  readonly config: UNet2DConfig;
  readonly info: DenoiserInfo;
  /** The module tree (parameter table and forward pass). */
  readonly architecture: UNet2DArchitecture;
  private readonly specs: ParamSpec[];
  private readonly vars = new Map<string, tf.Variable>();
  private readonly renames = new Map<string, string>();
  private disposed = false;
  private readonly source: ParamSource = {
    get: (name) => {
      const v = this.vars.get(name);
      if (!v) throw new WeightsError('WEIGHTS_MISSING', `parameter ${name} does not exist`, { name });
      return v;
    },
  };

  private constructor(config: UNet2DConfig, values: (spec: ParamSpec) => Float32Array) {
    this.config = config;
    this.architecture = new UNet2DArchitecture(config);
    this.specs = this.architecture.registry.specs;
    for (const attn of this.architecture.attentionModules()) for (const [legacy, cur] of attn.legacyRenames()) this.renames.set(legacy, cur);
    this.info = {
      sampleSize: config.sample_size,
      inChannels: config.in_channels,
      outChannels: config.out_channels,
      numClassEmbeds: config.class_embed_type === null ? config.num_class_embeds : null,
    };
    try {
      for (const spec of this.specs) {
        const v = tf.tidy(() => tf.variable(tf.tensor(values(spec), nativeShape(spec), 'float32'), spec.trainable));
        this.vars.set(spec.name, v);
      }
    } catch (e) {
      for (const v of this.vars.values()) v.dispose();
      throw e;
    }
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
    const resolved = resolveWeights(arch.registry.specs, legacyMap(arch), tensors, true);
    return new UNet2DModel(parsed, (spec) => toNativeOrder(spec, resolved.values.get(spec.name) as Float32Array));
  }

  /** The parameter table of a config (torch shapes), computed without allocating any tensor. */
  static parameterSpecs(config: unknown): ParamSpec[] {
    return new UNet2DArchitecture(parseUNet2DConfig(config)).registry.specs;
  }

  /** Number of parameter values (torch's `sum(p.numel() for p in model.parameters())`). */
  paramCount(): number {
    return this.specs.reduce((a, s) => a + numel(s.shape), 0);
  }

  /** Parameter declarations (names, torch shapes, layouts), in declaration order. */
  parameterSpecs(): ParamSpec[] {
    return [...this.specs];
  }

  /** The weights as variables by state-dict name (TF.js layout: conv [kh,kw,I,O], linear [I,O]). */
  get variables(): ReadonlyMap<string, tf.Variable> {
    this.assertAlive();
    return this.vars;
  }

  /** The trainable variables (for `tf.variableGrads` / optimizers); excludes fixed Fourier features. */
  trainableVariables(): tf.Variable[] {
    this.assertAlive();
    return this.specs.filter((s) => s.trainable).map((s) => this.vars.get(s.name) as tf.Variable);
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
    const labels = this.checkLabels(classLabels, n);
    return tf.tidy(() => {
      const t = this.timestepTensor(timestep, n);
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

  private checkLabels(labels: tf.Tensor1D | undefined, n: number): tf.Tensor1D | null {
    const arch = this.architecture;
    if (!arch.classEmbedding) {
      if (labels !== undefined) throw new InputError('CLASS_LABELS_UNEXPECTED', 'classLabels given, but this UNet2DModel is unconditional (no num_class_embeds)');
      return null;
    }
    if (labels === undefined) {
      throw new InputError('CLASS_LABELS_REQUIRED', 'this UNet2DModel is class-conditional: predict needs classLabels [N]');
    }
    if (!(labels instanceof tf.Tensor) || labels.rank !== 1 || labels.shape[0] !== n) {
      throw new ShapeError(`classLabels must have shape [${n}] (one per sample)`, { actual: (labels as tf.Tensor)?.shape });
    }
    if (arch.classEmbedding instanceof Embedding) {
      if (labels.dtype !== 'int32') throw new DTypeError(`classLabels must be int32, got ${labels.dtype}`);
      const k = arch.classEmbedding.numEmbeddings;
      const v = labels.dataSync();
      for (let i = 0; i < v.length; i++) {
        const c = v[i] as number;
        if (!(c >= 0 && c < k)) throw new ValueRangeError(`classLabels[${i}] = ${c} is outside [0, ${k})`, { index: i, value: c });
      }
    }
    return labels;
  }

  private timestepTensor(timestep: number | tf.Tensor1D, n: number): tf.Tensor1D {
    if (typeof timestep === 'number') {
      if (!Number.isFinite(timestep)) throw new NonFiniteError(`timestep must be finite, got ${timestep}`);
      return tf.fill([n], timestep, 'float32') as tf.Tensor1D;
    }
    if (!(timestep instanceof tf.Tensor) || timestep.rank > 1 || (timestep.size !== 1 && timestep.size !== n)) {
      throw new ShapeError(`timestep must be a number or a tensor of shape [${n}] or [1]`, { actual: (timestep as tf.Tensor)?.shape });
    }
    const t = tf.cast(tf.reshape(timestep, [-1]), 'float32') as tf.Tensor1D;
    return t.size === n ? t : (tf.broadcastTo(t, [n]) as tf.Tensor1D);
  }

  /**
   * Replaces the weights with torch-layout tensors (e.g. `readSafetensors(bytes).tensors`).
   * Names follow diffusers' state dict; legacy attention names (`query`, `key`, `value`,
   * `proj_attn`) are accepted. Everything is validated before any variable changes, and
   * variables are updated in place (`assign`), so references held by optimizers stay valid.
   * @throws WeightsError naming the offending tensor: WEIGHTS_MISSING, WEIGHTS_UNEXPECTED,
   *   WEIGHTS_SHAPE, WEIGHTS_DTYPE, WEIGHTS_NON_FINITE.
   */
  loadWeights(tensors: StateDictInput, options: LoadWeightsOptions = {}): LoadWeightsReport {
    this.assertAlive();
    const resolved = resolveWeights(this.specs, this.renames, tensors, options.strict ?? true);
    for (const spec of this.specs) {
      const data = resolved.values.get(spec.name);
      if (!data) continue;
      const v = this.vars.get(spec.name) as tf.Variable;
      tf.tidy(() => v.assign(tf.tensor(toNativeOrder(spec, data), nativeShape(spec), 'float32')));
    }
    return resolved.report;
  }

  /**
   * The weights in torch layout (conv [O,I,kh,kw], linear [O,I]) under diffusers' names, as
   * float32 safetensors entries: `writeSafetensors(model.stateDict())` is loadable by diffusers.
   */
  stateDict(): Map<string, SafetensorsTensor> {
    this.assertAlive();
    const out = new Map<string, SafetensorsTensor>();
    for (const spec of this.specs) {
      const v = this.vars.get(spec.name) as tf.Variable;
      // Read outside tf.tidy: tidy walks its return value, and a large typed array is slow to walk.
      const t = nativeToTorch(spec.layout, v);
      const data = (t.dataSync() as Float32Array).slice();
      t.dispose();
      out.set(spec.name, { dtype: 'F32', shape: [...spec.shape], data });
    }
    return out;
  }

  /** Frees every variable. The model is unusable afterwards. */
  dispose(): void {
    if (this.disposed) return;
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
    this.disposed = true;
  }

  /** Whether {@link dispose} was called. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  private assertAlive(): void {
    if (this.disposed) throw new InputError('MODEL_DISPOSED', 'this UNet2DModel was disposed');
  }
}

function legacyMap(arch: UNet2DArchitecture): Map<string, string> {
  const m = new Map<string, string>();
  for (const attn of arch.attentionModules()) for (const [legacy, cur] of attn.legacyRenames()) m.set(legacy, cur);
  return m;
}

/** Torch-layout values → TF.js-layout values for one parameter (CPU-side permutation). */
function toNativeOrder(spec: ParamSpec, data: Float32Array): Float32Array {
  if (spec.layout === 'plain') return data;
  const s = spec.shape;
  if (spec.layout === 'linear') {
    const [o, i] = s as [number, number];
    const out = new Float32Array(data.length);
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[c * o + r] = data[r * i + c] as number;
    return out;
  }
  const [o, i, kh, kw] = s as [number, number, number, number];
  const out = new Float32Array(data.length);
  // torch [o][i][y][x] → tfjs [y][x][i][o]
  for (let a = 0; a < o; a++) {
    for (let b = 0; b < i; b++) {
      const src = (a * i + b) * kh * kw;
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) out[((y * kw + x) * i + b) * o + a] = data[src + y * kw + x] as number;
      }
    }
  }
  return out;
}

function entriesOf(tensors: StateDictInput): Array<[string, SafetensorsTensor | tf.Tensor]> {
  if (tensors instanceof Map) return [...tensors.entries()];
  return Object.entries(tensors as Record<string, SafetensorsTensor | tf.Tensor>);
}

/** Matches input tensors to the parameter table and validates names, dtypes, shapes, values. */
function resolveWeights(specs: ParamSpec[], renames: ReadonlyMap<string, string>, tensors: StateDictInput, strict: boolean): ResolvedWeights {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values = new Map<string, Float32Array>();
  const renamed: Array<[string, string]> = [];
  const unexpected: string[] = [];
  const sourceOf = new Map<string, string>();
  for (const [key, value] of entriesOf(tensors)) {
    let name = key;
    if (!byName.has(key) && renames.has(key)) {
      name = renames.get(key) as string;
      renamed.push([key, name]);
    }
    const spec = byName.get(name);
    if (!spec) {
      unexpected.push(key);
      continue;
    }
    if (sourceOf.has(name)) {
      throw new WeightsError('WEIGHTS_UNEXPECTED', `tensors ${sourceOf.get(name)} and ${key} both give parameter ${name}`, { name, keys: [sourceOf.get(name), key] });
    }
    sourceOf.set(name, key);
    const { shape, data } = readValues(key, value);
    if (shape.length !== spec.shape.length || shape.some((d, i) => d !== spec.shape[i])) {
      throw new WeightsError('WEIGHTS_SHAPE', `tensor ${key} has shape [${shape.join(',')}], but the model expects [${spec.shape.join(',')}]`, {
        name: key,
        expected: [...spec.shape],
        actual: shape,
      });
    }
    const bad = firstNonFinite(data);
    if (bad >= 0) {
      throw new WeightsError('WEIGHTS_NON_FINITE', `tensor ${key} contains a non-finite value (${data[bad]}) at flat index ${bad}`, { name: key, index: bad });
    }
    values.set(name, data);
  }
  const missing = specs.filter((s) => !values.has(s.name)).map((s) => s.name);
  if (strict && missing.length > 0) {
    throw new WeightsError('WEIGHTS_MISSING', `missing ${missing.length} tensor(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`, {
      missing,
    });
  }
  if (strict && unexpected.length > 0) {
    throw new WeightsError(
      'WEIGHTS_UNEXPECTED',
      `unexpected ${unexpected.length} tensor(s) not in the model: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', …' : ''}`,
      { unexpected },
    );
  }
  return { values, report: { loaded: [...values.keys()], missing, unexpected, renamed } };
}

/** Index of the first NaN/±Inf, or −1. `v − v` is NaN exactly for those (no global lookups in the loop). */
function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (v - v !== 0) return i;
  }
  return -1;
}

function readValues(key: string, value: SafetensorsTensor | tf.Tensor): { shape: number[]; data: Float32Array } {
  if (isTensor(value)) {
    if (value.dtype !== 'float32') throw new WeightsError('WEIGHTS_DTYPE', `tensor ${key} is ${value.dtype}; weights must be float`, { name: key, dtype: value.dtype });
    return { shape: [...value.shape], data: value.dataSync() as Float32Array };
  }
  if (!value || typeof value !== 'object' || !Array.isArray(value.shape)) {
    throw new WeightsError('WEIGHTS_DTYPE', `tensor ${key} is not a tensor ({dtype, shape, data} or tf.Tensor)`, { name: key });
  }
  let data: Float32Array;
  if (value.data instanceof Float32Array && value.dtype === 'F32') data = value.data;
  else if (value.data instanceof Float64Array && value.dtype === 'F64') data = Float32Array.from(value.data);
  else {
    const src = value.sourceDtype ? ` (stored as ${value.sourceDtype})` : '';
    throw new WeightsError('WEIGHTS_DTYPE', `tensor ${key} has dtype ${value.dtype}${src}; weights must be F32, F16, BF16 or F64`, {
      name: key,
      dtype: value.dtype,
    });
  }
  if (data.length !== numel(value.shape)) {
    throw new WeightsError('WEIGHTS_SHAPE', `tensor ${key} has ${data.length} values for shape [${value.shape.join(',')}]`, { name: key });
  }
  return { shape: [...value.shape], data };
}
