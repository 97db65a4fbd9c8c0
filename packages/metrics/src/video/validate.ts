/**
 * Validation of clips handed to the video metrics: every check throws a typed error from
 * `@diffmem/core` naming the clip and the problem.
 * @module
 * @internal
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DTypeError, InputError, NonFiniteError, ShapeError, ValueRangeError } from '@diffmem/core';

/**
 * Checks a display-space clip [T,H,W,1|3] (or a single image [H,W,1|3] when `allowImage`):
 * float32, not disposed, no empty dimension, finite, inside [0, 1] (± 1e-3). Reads back three
 * scalars. Returns the clip as a rank-4 view (`[1,H,W,C]` for an image; a new tensor the caller
 * disposes when `reshaped` is true).
 */
export function checkClip(x: unknown, name: string, allowImage = false): { clip: tf.Tensor4D; reshaped: boolean } {
  if (!(x instanceof tf.Tensor)) throw new ShapeError(`${name} must be a tf.Tensor, got ${x === null ? 'null' : typeof x}`, { name });
  if (x.isDisposed) throw new InputError('DISPOSED_TENSOR', `${name} has already been disposed`, { name });
  if (x.dtype !== 'float32') throw new DTypeError(`${name} must be float32, got ${x.dtype}`, { name, actual: x.dtype });
  const rankOk = x.rank === 4 || (allowImage && x.rank === 3);
  if (!rankOk) {
    throw new ShapeError(
      `${name} must be a clip [T,H,W,C]${allowImage ? ' or an image [H,W,C]' : ''}, got shape [${x.shape.join(',')}]`,
      { name, actual: x.shape },
    );
  }
  if ((x.shape as number[]).some((d) => d === 0)) {
    throw new InputError('EMPTY_INPUT', `${name} is empty (shape [${x.shape.join(',')}])`, { name, actual: x.shape });
  }
  const c = x.shape[x.rank - 1];
  if (c !== 1 && c !== 3) throw new ShapeError(`${name} must have 1 or 3 channels, got ${c}`, { name, actual: x.shape });
  const [bad, lo, hi] = readTensor(() =>
    tf.stack([tf.sum(tf.cast(tf.logicalNot(tf.isFinite(x)), 'float32')), tf.min(x), tf.max(x)]),
  ) as unknown as [number, number, number];
  if (bad > 0) {
    throw new NonFiniteError(`${name} contains ${bad} non-finite value(s) (NaN or Infinity)`, { name, count: bad });
  }
  if (lo < -1e-3 || hi > 1 + 1e-3) {
    const hint =
      lo < 0 && lo >= -1 - 1e-3 ? ' (looks like model space [-1,1]: use toDisplayRange)' : hi > 1.5 ? ' (looks like 0..255 pixels: divide by 255)' : '';
    throw new ValueRangeError(`${name} must be display-space frames in [0, 1], got values in [${lo}, ${hi}]${hint}`, {
      name,
      min: lo,
      max: hi,
    });
  }
  if (x.rank === 3) return { clip: tf.expandDims(x, 0) as tf.Tensor4D, reshaped: true };
  return { clip: x as tf.Tensor4D, reshaped: false };
}

/** Throws a {@link ConfigError} unless `v` is undefined or a finite number > 0. */
export function checkFps(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ConfigError(`${name} must be a finite frame rate > 0, got ${String(v)}`, { name, value: v });
  }
  return v;
}

/** Throws a {@link ConfigError} unless `v` is a finite number in [lo, hi]. */
export function checkNumber(v: unknown, name: string, lo = -Infinity, hi = Infinity): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
    throw new ConfigError(`${name} must be a finite number in [${lo}, ${hi}], got ${String(v)}`, { name, value: v });
  }
  return v;
}

/** Throws a {@link ConfigError} unless `v` is an integer ≥ `min`. */
export function checkInteger(v: unknown, name: string, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ConfigError(`${name} must be an integer ≥ ${min}, got ${String(v)}`, { name, value: v });
  }
  return v;
}

/** Runs `fn` in a tidy, reads its result back and disposes it (no tensor survives). */
export function readTensor(fn: () => tf.Tensor): Float32Array {
  const t = tf.tidy(fn);
  try {
    const v = t.dataSync();
    return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
  } finally {
    t.dispose();
  }
}
