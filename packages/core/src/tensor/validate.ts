/**
 * Run-time validation and branding of tensors (see `./types.ts` for the contract).
 * Every check throws a typed error naming the tensor and what was wrong with it.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { DTypeError, NonFiniteError, ShapeError, ValueRangeError } from '../errors.js';
import {
  VALUE_RANGES,
  type ClassLabels,
  type FlowField,
  type Image,
  type ImageBatch,
  type Noise,
  type ValidationLevel,
  type ValueRange,
  type Video,
  type VideoBatch,
} from './types.js';

/** Options shared by the `as*` constructors. */
export interface ValidateOptions {
  /** Name used in error messages (default: the kind of tensor). */
  name?: string;
  /** `'shape'` (default) or `'full'` (also reads values: finiteness and range). */
  level?: ValidationLevel;
  /**
   * Slack allowed around the value range in `'full'` mode (default 1e-4), because resampling and
   * float round-off can overshoot by a few ulps.
   */
  rangeTolerance?: number;
}

/** Throws a {@link ShapeError} unless `t` has rank `rank`. */
export function assertRank(t: tf.Tensor, rank: number, name = 'tensor'): void {
  if (t.rank !== rank) {
    throw new ShapeError(`${name} must have rank ${rank}, got rank ${t.rank} (shape [${t.shape.join(',')}])`, {
      name,
      expected: rank,
      actual: t.shape,
    });
  }
}

/**
 * Throws a {@link ShapeError} unless `t.shape` matches `expected`; `null` entries match any size.
 */
export function assertShape(t: tf.Tensor, expected: ReadonlyArray<number | null>, name = 'tensor'): void {
  const ok = t.rank === expected.length && expected.every((d, i) => d === null || d === t.shape[i]);
  if (!ok) {
    const want = expected.map((d) => (d === null ? '*' : String(d))).join(',');
    throw new ShapeError(`${name} must have shape [${want}], got [${t.shape.join(',')}]`, {
      name,
      expected,
      actual: t.shape,
    });
  }
}

/** Throws a {@link DTypeError} unless `t.dtype === dtype`. */
export function assertDType(t: tf.Tensor, dtype: tf.DataType, name = 'tensor'): void {
  if (t.dtype !== dtype) {
    throw new DTypeError(`${name} must be ${dtype}, got ${t.dtype}`, { name, expected: dtype, actual: t.dtype });
  }
}

function scan(values: tf.TypedArray | Float32Array): { min: number; max: number; nonFinite: number; firstBad: number } {
  let min = Infinity;
  let max = -Infinity;
  let nonFinite = 0;
  let firstBad = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!Number.isFinite(v)) {
      if (firstBad < 0) firstBad = i;
      nonFinite++;
      continue;
    }
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max, nonFinite, firstBad };
}

/** Throws a {@link NonFiniteError} if `t` holds NaN or ±Infinity (reads the data synchronously). */
export function assertFinite(t: tf.Tensor, name = 'tensor'): void {
  const s = scan(t.dataSync() as tf.TypedArray);
  if (s.nonFinite > 0) {
    throw new NonFiniteError(
      `${name} contains ${s.nonFinite} non-finite value(s) (NaN or Infinity); first at flat index ${s.firstBad}`,
      { name, count: s.nonFinite, firstIndex: s.firstBad },
    );
  }
}

/** Throws unless every value of `t` is finite and inside `range` (± `tolerance`). */
export function assertValueRange(t: tf.Tensor, range: ValueRange, name = 'tensor', tolerance = 1e-4): void {
  const s = scan(t.dataSync() as tf.TypedArray);
  if (s.nonFinite > 0) {
    throw new NonFiniteError(
      `${name} contains ${s.nonFinite} non-finite value(s) (NaN or Infinity); first at flat index ${s.firstBad}`,
      { name, count: s.nonFinite, firstIndex: s.firstBad },
    );
  }
  const [lo, hi] = VALUE_RANGES[range];
  if (s.min < lo - tolerance || s.max > hi + tolerance) {
    throw new ValueRangeError(
      `${name} must lie in ${range} space [${lo}, ${hi}], got values in [${s.min}, ${s.max}]` +
        (range === 'model' && s.min >= 0 && s.max > 1 ? ' (looks like 0..255 pixels: divide by 255 first)' : '') +
        (range === 'model' && s.min >= 0 && s.max <= 1 ? ' (looks like display space [0,1]: use toModelRange)' : ''),
      { name, range, min: s.min, max: s.max },
    );
  }
}

function check(t: tf.Tensor, rank: number, kind: string, opts: ValidateOptions, range?: ValueRange): void {
  const name = opts.name ?? kind;
  if (!(t instanceof tf.Tensor)) {
    throw new ShapeError(`${name} must be a tf.Tensor, got ${t === null ? 'null' : typeof t}`, { name });
  }
  assertRank(t, rank, name);
  assertDType(t, 'float32', name);
  if (t.shape.some((d) => d === 0)) {
    throw new ShapeError(`${name} must not be empty, got shape [${t.shape.join(',')}]`, { name, actual: t.shape });
  }
  if (opts.level === 'full') {
    if (range) assertValueRange(t, range, name, opts.rangeTolerance ?? 1e-4);
    else assertFinite(t, name);
  }
}

/** Validates and brands an NHWC float32 image batch with values in `range`. */
export function asImageBatch<R extends ValueRange>(t: tf.Tensor, range: R, opts: ValidateOptions = {}): ImageBatch<R> {
  check(t, 4, 'image batch [N,H,W,C]', opts, range);
  return t as ImageBatch<R>;
}

/** Validates and brands an HWC float32 image with values in `range`. */
export function asImage<R extends ValueRange>(t: tf.Tensor, range: R, opts: ValidateOptions = {}): Image<R> {
  check(t, 3, 'image [H,W,C]', opts, range);
  return t as Image<R>;
}

/** Validates and brands a THWC float32 video clip with values in `range`. */
export function asVideo<R extends ValueRange>(t: tf.Tensor, range: R, opts: ValidateOptions = {}): Video<R> {
  check(t, 4, 'video [T,H,W,C]', opts, range);
  return t as Video<R>;
}

/** Validates and brands a BTHWC float32 batch of video clips with values in `range`. */
export function asVideoBatch<R extends ValueRange>(
  t: tf.Tensor,
  range: R,
  opts: ValidateOptions = {},
): VideoBatch<R> {
  check(t, 5, 'video batch [B,T,H,W,C]', opts, range);
  return t as VideoBatch<R>;
}

/** Validates and brands an [N,H,W,2] flow field (finite in `'full'` mode). */
export function asFlowField(t: tf.Tensor, opts: ValidateOptions = {}): FlowField {
  check(t, 4, 'flow field [N,H,W,2]', opts);
  if (t.shape[3] !== 2) {
    throw new ShapeError(`${opts.name ?? 'flow field'} must have 2 channels (dx, dy), got ${t.shape[3]}`, {
      actual: t.shape,
    });
  }
  return t as FlowField;
}

/** Validates and brands unbounded NHWC float32 samples (noise, x_t, latents). */
export function asNoise(t: tf.Tensor, opts: ValidateOptions = {}): Noise {
  check(t, 4, 'noise [N,H,W,C]', opts);
  return t as Noise;
}

/**
 * Validates and brands class labels: [N] int32 in [0, numClasses). Reads the data (labels are small).
 */
export function asClassLabels(t: tf.Tensor, numClasses: number, name = 'class labels'): ClassLabels {
  assertRank(t, 1, name);
  assertDType(t, 'int32', name);
  const v = t.dataSync();
  for (let i = 0; i < v.length; i++) {
    const c = v[i] as number;
    if (!(c >= 0 && c < numClasses)) {
      throw new ValueRangeError(`${name}[${i}] = ${c} is outside [0, ${numClasses})`, { name, index: i, value: c });
    }
  }
  return t as ClassLabels;
}
