/**
 * Parameters of ported PyTorch modules: their declaration (name, torch shape, layout, default
 * initialisation), the torch ↔ TF.js layout conversion, and diffusers' state-dict key fixes
 * (`modeling_utils.py::_fix_state_dict_keys_on_load`).
 *
 * Modules declare parameters into a {@link ParamRegistry} when they are built; building allocates
 * nothing, so the full parameter table of a model (e.g. google/ddpm-cifar10-32: 328 tensors,
 * 35,746,307 values) is known without touching memory. A model then allocates one `tf.Variable`
 * per declared parameter, and modules read them at forward time through a {@link ParamSource}.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { Generator } from '../random.js';

/**
 * How a torch tensor maps to the TF.js one:
 * - `conv2d`: torch `[O, I, kh, kw]` ↔ TF.js `[kh, kw, I, O]` (NHWC filters);
 * - `linear`: torch `[O, I]` ↔ TF.js `[I, O]` (so `y = x · W`);
 * - `plain`: same shape (biases, norms, embedding tables).
 */
export type ParamLayout = 'conv2d' | 'linear' | 'plain';

/** PyTorch default initialisation of a parameter. */
export type ParamInit =
  /** U(−bound, bound): `kaiming_uniform_(a=√5)` weights and the matching biases, bound = 1/√fan_in. */
  | { kind: 'uniform'; bound: number }
  | { kind: 'constant'; value: number }
  /** N(0, std²): `nn.Embedding` (std 1) and `GaussianFourierProjection` (std = scale). */
  | { kind: 'normal'; std: number };

/** One declared parameter. */
export interface ParamSpec {
  /** diffusers state-dict key, e.g. `down_blocks.1.attentions.0.to_q.weight`. */
  readonly name: string;
  /** Shape in the torch state dict. */
  readonly shape: readonly number[];
  readonly layout: ParamLayout;
  readonly init: ParamInit;
  /** `false` for buffers-like parameters torch creates with `requires_grad=False`. */
  readonly trainable: boolean;
}

/** Collects parameter declarations while modules are built. */
export class ParamRegistry {
  private readonly byName = new Map<string, ParamSpec>();

  /** Declares a parameter; names must be unique. Returns the name. */
  add(spec: ParamSpec): string {
    if (this.byName.has(spec.name)) throw new ConfigError(`parameter ${spec.name} declared twice`, { name: spec.name });
    this.byName.set(spec.name, spec);
    return spec.name;
  }

  /** Declarations in order (the order torch's `state_dict()` lists them). */
  get specs(): ParamSpec[] {
    return [...this.byName.values()];
  }
}

/** Read access to parameter values (TF.js layout) by state-dict name. */
export interface ParamSource {
  get(name: string): tf.Tensor;
}

/** Joins a module path and a child name the way torch names submodules. */
export function joinName(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

/** The TF.js shape of a parameter. */
export function nativeShape(spec: Pick<ParamSpec, 'shape' | 'layout'>): number[] {
  const s = spec.shape;
  if (spec.layout === 'conv2d') return [s[2] as number, s[3] as number, s[1] as number, s[0] as number];
  if (spec.layout === 'linear') return [s[1] as number, s[0] as number];
  return [...s];
}

/** Torch-layout tensor → TF.js layout (a new tensor; the input is not disposed). */
export function torchToNative(layout: ParamLayout, t: tf.Tensor): tf.Tensor {
  if (layout === 'conv2d') return tf.transpose(t, [2, 3, 1, 0]);
  if (layout === 'linear') return tf.transpose(t, [1, 0]);
  return t.clone();
}

/** TF.js-layout tensor → torch layout (a new tensor; the input is not disposed). */
export function nativeToTorch(layout: ParamLayout, t: tf.Tensor): tf.Tensor {
  if (layout === 'conv2d') return tf.transpose(t, [3, 2, 0, 1]);
  if (layout === 'linear') return tf.transpose(t, [1, 0]);
  return t.clone();
}

/** Number of values of a shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Draws a parameter's initial values (TF.js layout) from `gen`. */
export function initialValues(spec: ParamSpec, gen: Generator): Float32Array {
  const n = numel(spec.shape);
  const init = spec.init;
  if (init.kind === 'constant') return new Float32Array(n).fill(init.value);
  if (init.kind === 'normal') {
    const v = gen.normalArray(n);
    if (init.std !== 1) for (let i = 0; i < n; i++) v[i] = (v[i] as number) * init.std;
    return v;
  }
  // Entries are i.i.d., so drawing directly in TF.js layout gives the same distribution. One
  // 32-bit draw per value (24 bits, a float32's precision) halves the cost for 35 M-value models.
  const v = new Float32Array(n);
  const scale = (2 * init.bound) / 16777216;
  const b = init.bound;
  for (let i = 0; i < n; i++) v[i] = (gen.nextUint32() >>> 8) * scale - b;
  return v;
}

/**
 * Legacy attention parameter names → current ones for one attention module at `path`
 * (diffusers renamed `query/key/value/proj_attn` to `to_q/to_k/to_v/to_out.0`; group_norm kept).
 */
export function legacyAttentionRenames(path: string): Array<[legacy: string, current: string]> {
  const pairs: Array<[string, string]> = [
    ['query', 'to_q'],
    ['key', 'to_k'],
    ['value', 'to_v'],
    ['proj_attn', 'to_out.0'],
  ];
  const out: Array<[string, string]> = [];
  for (const [old, cur] of pairs) {
    for (const kind of ['weight', 'bias']) out.push([`${path}.${old}.${kind}`, `${path}.${cur}.${kind}`]);
  }
  return out;
}

/** PyTorch's default bound for `nn.Conv2d` / `nn.Linear` weights and biases: 1/√fan_in. */
export function torchDefaultBound(fanIn: number): number {
  return 1 / Math.sqrt(fanIn);
}
