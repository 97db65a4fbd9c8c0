/**
 * `ModelWithWeights` — what every diffmem model that holds its weights shares (the part of
 * diffusers' `ModelMixin` that is not the forward pass): one trainable `tf.Variable` per declared
 * parameter under its state-dict name, strict torch-layout loading (`load_state_dict`), the
 * torch-layout state dict, parameter counting and disposal. `UNet2DModel` and `VideoUNetModel`
 * extend it; their architectures declare the parameters (see `./modeling_utils.ts`).
 *
 * Also the input checks their `predict` methods share (timesteps, class labels).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { DTypeError, InputError, NonFiniteError, ShapeError, ValueRangeError, WeightsError } from '../errors.js';
import type { RandomSource } from '../random.js';
import type { SafetensorsTensor } from '../safetensors/safetensors.js';
import type { TimestepEmbedding } from './embeddings.js';
import { Embedding } from './layers.js';
import { nativeShape, nativeToTorch, numel, type ParamRegistry, type ParamSource, type ParamSpec } from './modeling_utils.js';

/** Tensors accepted by {@link ModelWithWeights.loadWeights}: safetensors entries or tf tensors, in torch layout. */
export type StateDictInput =
  | ReadonlyMap<string, SafetensorsTensor | tf.Tensor>
  | Readonly<Record<string, SafetensorsTensor | tf.Tensor>>;

/** Options of {@link ModelWithWeights.loadWeights}. */
export interface LoadWeightsOptions {
  /**
   * `true` (default): every parameter must be given and nothing else (like torch's
   * `load_state_dict(strict=True)`). `false`: missing parameters keep their values and unexpected
   * tensors are ignored (both are reported).
   */
  strict?: boolean;
}

/** What {@link ModelWithWeights.loadWeights} did. */
export interface LoadWeightsReport {
  loaded: string[];
  /** Parameters not in the input (strict mode throws instead). */
  missing: string[];
  /** Input tensors that are not parameters (strict mode throws instead). */
  unexpected: string[];
  /** Legacy attention names that were renamed, as [legacy, current]. */
  renamed: Array<[string, string]>;
}

/** Options of a model's `fromConfig` (random initialisation). */
export interface ModelInitOptions {
  /** Seed or Generator of the random initialisation (required: every draw is reproducible). */
  seed: RandomSource;
}

/** A module tree that declares its parameters into a registry (allocating nothing). */
export interface ParamArchitecture {
  readonly registry: ParamRegistry;
}

/** Initial TF.js-layout values of one parameter. */
export type ParamValues = (spec: ParamSpec) => Float32Array;

/**
 * The weights of a model: one `tf.Variable` (TF.js layout) per parameter its architecture declares,
 * loaded from and saved to torch layout under diffusers' state-dict names.
 */
export abstract class ModelWithWeights<A extends ParamArchitecture> {
  /** The module tree (parameter table and forward pass). */
  readonly architecture: A;
  private readonly specs: ParamSpec[];
  private readonly vars = new Map<string, tf.Variable>();
  private disposed = false;
  /** What the architecture's `forward` reads the weights through. */
  protected readonly source: ParamSource = {
    get: (name) => {
      const v = this.vars.get(name);
      if (!v) throw new WeightsError('WEIGHTS_MISSING', `parameter ${name} does not exist`, { name });
      return v;
    },
  };

  /**
   * Allocates one variable per declared parameter with `values(spec)` (freeing them all if one
   * fails). `renames` maps legacy state-dict names to current ones for {@link loadWeights};
   * `modelName` names the class in errors.
   */
  protected constructor(
    architecture: A,
    values: ParamValues,
    private readonly modelName: string,
    private readonly renames: ReadonlyMap<string, string> = new Map(),
  ) {
    this.architecture = architecture;
    this.specs = architecture.registry.specs;
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

  /** Number of parameter values (torch's `sum(p.numel() for p in model.parameters())`). */
  paramCount(): number {
    return this.specs.reduce((a, s) => a + numel(s.shape), 0);
  }

  /** Parameter declarations (names, torch shapes, layouts, initialisations), in state-dict order. */
  parameterSpecs(): ParamSpec[] {
    return [...this.specs];
  }

  /** The weights as variables by state-dict name (TF.js layout: conv [kh,kw,I,O], linear [I,O]). */
  get variables(): ReadonlyMap<string, tf.Variable> {
    this.assertAlive();
    return this.vars;
  }

  /** The trainable variables in state-dict order (for `tf.variableGrads` / optimizers); excludes fixed Fourier features. */
  trainableVariables(): tf.Variable[] {
    this.assertAlive();
    return this.specs.filter((s) => s.trainable).map((s) => this.vars.get(s.name) as tf.Variable);
  }

  /**
   * Replaces the weights with torch-layout tensors (e.g. `readSafetensors(bytes).tensors`).
   * Names follow diffusers' state dict (legacy names the model declares, such as UNet2DModel's
   * attention `query`/`key`/`value`/`proj_attn`, are accepted). Everything is validated before any
   * variable changes, and variables are updated in place (`assign`), so references held by
   * optimizers stay valid.
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

  /** @throws InputError MODEL_DISPOSED after {@link dispose}. */
  protected assertAlive(): void {
    if (this.disposed) throw new InputError('MODEL_DISPOSED', `this ${this.modelName} was disposed`);
  }
}

/**
 * The initial values of a model built from torch-layout weights (strict: names, shapes and
 * finiteness are checked before anything is allocated), for a {@link ModelWithWeights} constructor.
 * @throws WeightsError naming the offending tensor.
 */
export function valuesFromStateDict(specs: readonly ParamSpec[], renames: ReadonlyMap<string, string>, tensors: StateDictInput): ParamValues {
  const resolved = resolveWeights(specs, renames, tensors, true);
  return (spec) => toNativeOrder(spec, resolved.values.get(spec.name) as Float32Array);
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

/** Input tensors resolved against the parameter table (torch layout), validated, not yet applied. */
interface ResolvedWeights {
  values: Map<string, Float32Array>;
  report: LoadWeightsReport;
}

/** Matches input tensors to the parameter table and validates names, dtypes, shapes, values. */
function resolveWeights(specs: readonly ParamSpec[], renames: ReadonlyMap<string, string>, tensors: StateDictInput, strict: boolean): ResolvedWeights {
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
  if (value instanceof tf.Tensor) {
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

// ---------------------------------------------------------------------------------------------
// Inputs of `predict` shared by the image and video UNets.
// ---------------------------------------------------------------------------------------------

/**
 * A timestep argument — one number for the batch, or a [n] / [1] tensor — as float32 [n]
 * (validated; a new tensor).
 * @throws NonFiniteError for a non-finite number, ShapeError for a tensor of another shape.
 */
export function timestepTensor(timestep: number | tf.Tensor1D, n: number): tf.Tensor1D {
  if (typeof timestep === 'number') {
    if (!Number.isFinite(timestep)) throw new NonFiniteError(`timestep must be finite, got ${timestep}`);
    return tf.fill([n], timestep, 'float32') as tf.Tensor1D;
  }
  if (!(timestep instanceof tf.Tensor) || timestep.rank > 1 || (timestep.size !== 1 && timestep.size !== n)) {
    throw new ShapeError(`timestep must be a number or a tensor of shape [${n}] or [1]`, { actual: (timestep as tf.Tensor)?.shape });
  }
  return tf.tidy(() => {
    const t = tf.cast(tf.reshape(timestep, [-1]), 'float32') as tf.Tensor1D;
    return t.size === n ? t : (tf.broadcastTo(t, [n]) as tf.Tensor1D);
  });
}

/** How {@link checkClassLabels} names the model and its batch in errors. */
export interface ClassLabelsContext {
  /** The model class, e.g. `UNet2DModel`. */
  model: string;
  /** The batch size symbol, e.g. `N`. */
  batch: string;
  /** What one batch entry is, e.g. `sample`. */
  item: string;
}

/**
 * Validates the `classLabels` argument of `predict` against the model's class embedding (none:
 * labels must be absent; a table: int32 ids in [0, rows); a timestep embedding: any [n] values).
 * @throws InputError (labels missing / unexpected), ShapeError, DTypeError, ValueRangeError.
 */
export function checkClassLabels(
  labels: tf.Tensor1D | undefined,
  n: number,
  classEmbedding: Embedding | TimestepEmbedding | null,
  who: ClassLabelsContext,
): tf.Tensor1D | null {
  if (!classEmbedding) {
    if (labels !== undefined) throw new InputError('CLASS_LABELS_UNEXPECTED', `classLabels given, but this ${who.model} is unconditional (no num_class_embeds)`);
    return null;
  }
  if (labels === undefined) {
    throw new InputError('CLASS_LABELS_REQUIRED', `this ${who.model} is class-conditional: predict needs classLabels [${who.batch}]`);
  }
  if (!(labels instanceof tf.Tensor) || labels.rank !== 1 || labels.shape[0] !== n) {
    throw new ShapeError(`classLabels must have shape [${n}] (one per ${who.item})`, { actual: (labels as tf.Tensor)?.shape });
  }
  if (classEmbedding instanceof Embedding) {
    if (labels.dtype !== 'int32') throw new DTypeError(`classLabels must be int32, got ${labels.dtype}`);
    const k = classEmbedding.numEmbeddings;
    const v = labels.dataSync();
    for (let i = 0; i < v.length; i++) {
      const c = v[i] as number;
      if (!(c >= 0 && c < k)) throw new ValueRangeError(`classLabels[${i}] = ${c} is outside [0, ${k})`, { index: i, value: c });
    }
  }
  return labels;
}
