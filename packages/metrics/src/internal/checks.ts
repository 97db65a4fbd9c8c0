/**
 * Small validation helpers shared by the metrics (not exported from the package).
 * Every helper throws a typed error from `@diffmem/core` naming the offending input.
 * @module
 * @internal
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DTypeError, InputError, NonFiniteError, ShapeError, ValueRangeError } from '@diffmem/core';

/** Throws a {@link ConfigError} unless `v` is an integer ≥ `min`. */
export function checkInt(v: unknown, name: string, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ConfigError(`${name} must be an integer ≥ ${min}, got ${String(v)}`, { name, value: v });
  }
  return v;
}

/** Throws a {@link ConfigError} unless `v` is a finite number > 0. */
export function checkPositive(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ConfigError(`${name} must be a finite number > 0, got ${String(v)}`, { name, value: v });
  }
  return v;
}

/** Throws a {@link ConfigError} unless `k` is an integer in [1, size]. */
export function checkK(k: unknown, size: number, what = 'reference set'): number {
  checkInt(k, 'k');
  if ((k as number) > size) {
    throw new ConfigError(`k = ${String(k)} is larger than the ${what} (${size} item(s)); use k ≤ ${size}`, {
      k,
      size,
    });
  }
  return k as number;
}

/** Throws unless `t` is a float32 tf.Tensor with no zero-sized dimension. */
export function checkTensor(t: unknown, name: string): tf.Tensor {
  if (!(t instanceof tf.Tensor)) {
    throw new ShapeError(`${name} must be a tf.Tensor, got ${t === null ? 'null' : typeof t}`, { name });
  }
  if (t.isDisposed) throw new InputError('DISPOSED_TENSOR', `${name} has already been disposed`, { name });
  if (t.dtype !== 'float32') {
    throw new DTypeError(`${name} must be float32, got ${t.dtype}`, { name, expected: 'float32', actual: t.dtype });
  }
  if (t.shape.length === 0) throw new ShapeError(`${name} must have a batch dimension, got a scalar`, { name });
  if (t.shape[0] === 0) {
    throw new InputError('EMPTY_INPUT', `${name} is empty (shape [${t.shape.join(',')}])`, { name, shape: t.shape });
  }
  if ((t.shape as number[]).some((d: number) => d === 0)) {
    throw new ShapeError(`${name} has a zero-sized dimension: [${t.shape.join(',')}]`, { name, shape: t.shape });
  }
  return t;
}

/** Throws a {@link NonFiniteError} naming the first offending row if `data` has NaN/±Inf. */
export function checkFiniteRows(data: ArrayLike<number>, rowLength: number, name: string, rowOffset = 0): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i] as number)) {
      let bad = 0;
      for (let j = i; j < data.length; j++) if (!Number.isFinite(data[j] as number)) bad++;
      const row = Math.floor(i / rowLength) + rowOffset;
      throw new NonFiniteError(
        `${name} contains ${bad} non-finite value(s) (NaN or Infinity); first in item ${row} (flat index ${i})`,
        { name, item: row, count: bad },
      );
    }
  }
}

/** Throws a {@link ValueRangeError} if display images leave [0, 1] (± tol). */
export function checkDisplayRange(data: ArrayLike<number>, name: string, tol = 1e-3): void {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min < -tol || max > 1 + tol) {
    const hint = min >= -1 - tol && min < -tol ? ' (looks like model space [-1,1]: use toDisplayRange)' : max > 1.5 ? ' (looks like 0..255 pixels: divide by 255)' : '';
    throw new ValueRangeError(`${name} must be display-space images in [0, 1], got values in [${min}, ${max}]${hint}`, {
      name,
      min,
      max,
    });
  }
}

/** Product of a shape's dimensions. */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Reads a tensor into a Float32Array (copy-free when the backend returns one). */
export function readFloat32(t: tf.Tensor): Float32Array {
  const d = t.dataSync();
  return d instanceof Float32Array ? d : Float32Array.from(d as ArrayLike<number>);
}

/** Converts labels given as booleans or 0/1 numbers to booleans, validating lengths. */
export function toBoolLabels(labels: ArrayLike<boolean | number>, n: number, name = 'labels'): boolean[] {
  if (labels.length !== n) {
    throw new ShapeError(`${name} has ${labels.length} entries but there are ${n} scores`, { name, expected: n, actual: labels.length });
  }
  const out: boolean[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = labels[i];
    if (v === true || v === 1) out[i] = true;
    else if (v === false || v === 0) out[i] = false;
    else throw new ConfigError(`${name}[${i}] must be a boolean or 0/1, got ${String(v)}`, { name, index: i });
  }
  return out;
}

/** Validates a numeric score array (finite, non-empty) and returns it as Float64Array. */
export function toScores(scores: ArrayLike<number>, name = 'scores'): Float64Array {
  if (scores.length === 0) throw new InputError('EMPTY_INPUT', `${name} is empty`, { name });
  const out = new Float64Array(scores.length);
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i] as number;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new NonFiniteError(`${name}[${i}] is not a finite number (${String(v)})`, { name, index: i });
    }
    out[i] = v;
  }
  return out;
}
