/**
 * The dense optical-flow estimator contract and the coarse-to-fine driver shared by the
 * Horn–Schunck and Lucas–Kanade estimators.
 *
 * Convention (the core `FlowField` contract, and OpenCV's `calcOpticalFlowFarneback`): the flow
 * from `frames0[i]` to `frames1[i]` is the field F with `frames1(x + F(x)) ≈ frames0(x)`, i.e. the
 * pixel at x in the first frame moves to x + F(x) in the second; (dx, dy) in pixels, x right, y down.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DTypeError,
  NonFiniteError,
  ShapeError,
  ValueRangeError,
  type FlowField,
  type ImageBatch,
  type Video,
} from '@diffmem/core';
import { readTensor } from '../validate.js';
import { gaussianBlur, gaussianPyramid, resizeFlow } from './ops.js';

/** A dense optical-flow method (weight-free or user-supplied). */
export interface FlowEstimator {
  /** Short name for reports, e.g. `'horn-schunck'`. */
  readonly name: string;
  /**
   * Dense flow from `frames0[i]` to `frames1[i]` for every i: [N,H,W,2] in pixels of the input.
   * Inputs are display-space [N,H,W,1|3] batches of one size; they are not disposed.
   */
  estimate(frames0: ImageBatch<'display'>, frames1: ImageBatch<'display'>): FlowField;
}

/** Pyramid options shared by the coarse-to-fine estimators. */
export interface PyramidConfig {
  /** Maximum number of pyramid levels (default 4); fewer are used when the image is small. */
  levels: number;
  /** Size ratio between consecutive levels (default 0.5). */
  pyramidScale: number;
  /** Coarsest level keeps at least this many pixels on its shorter side (default 8). */
  minLevelSize: number;
  /** Gaussian σ (pixels) applied to the finest level before anything else (default 1; 0 = off). */
  presmoothSigma: number;
}

/** Default {@link PyramidConfig}. */
export const DEFAULT_PYRAMID_CONFIG: Readonly<PyramidConfig> = {
  levels: 4,
  pyramidScale: 0.5,
  minLevelSize: 8,
  presmoothSigma: 1,
};

/** Throws a {@link ConfigError} for a pyramid option outside its domain. */
export function validatePyramidConfig(c: PyramidConfig, who: string): void {
  if (!Number.isInteger(c.levels) || c.levels < 1) {
    throw new ConfigError(`${who}: levels must be an integer ≥ 1, got ${String(c.levels)}`, { levels: c.levels });
  }
  if (!(c.pyramidScale > 0 && c.pyramidScale < 1)) {
    throw new ConfigError(`${who}: pyramidScale must be in (0, 1), got ${String(c.pyramidScale)}`);
  }
  if (!(Number.isInteger(c.minLevelSize) && c.minLevelSize >= 2)) {
    throw new ConfigError(`${who}: minLevelSize must be an integer ≥ 2, got ${String(c.minLevelSize)}`);
  }
  if (!(c.presmoothSigma >= 0 && Number.isFinite(c.presmoothSigma))) {
    throw new ConfigError(`${who}: presmoothSigma must be a finite number ≥ 0, got ${String(c.presmoothSigma)}`);
  }
}

/** Throws a {@link ConfigError} unless the iteration count `key` of `who` is an integer ≥ 1. */
export function validateIterationCount(value: number, key: string, who: string): void {
  if (!Number.isInteger(value) || value < 1) throw new ConfigError(`${who}: ${key} must be an integer ≥ 1, got ${value}`);
}

/** Throws a {@link ConfigError} unless a median filter size is 0, 1 (both off) or odd. */
export function validateMedianSize(size: number, who: string): void {
  if (!Number.isInteger(size) || size < 0 || (size > 1 && size % 2 === 0)) {
    throw new ConfigError(`${who}: medianSize must be 0, 1 or an odd integer, got ${size}`);
  }
}

/** Number of pyramid levels that keep the coarsest shorter side ≥ `minLevelSize`. */
export function usableLevels(height: number, width: number, c: PyramidConfig): number {
  let levels = 1;
  let side = Math.min(height, width);
  while (levels < c.levels && Math.round(side * c.pyramidScale) >= c.minLevelSize) {
    side = Math.round(side * c.pyramidScale);
    levels++;
  }
  return levels;
}

/**
 * Validates a pair of frame batches for flow estimation: float32 tf.Tensors [N,H,W,1|3] of one
 * shape, H,W ≥ 2, finite, inside display space [0, 1] (± 1e-3). Reads back three scalars.
 */
export function validateFramePair(frames0: tf.Tensor, frames1: tf.Tensor, who: string): void {
  for (const [t, name] of [
    [frames0, 'frames0'],
    [frames1, 'frames1'],
  ] as const) {
    if (!(t instanceof tf.Tensor)) throw new ShapeError(`${who}: ${name} must be a tf.Tensor`, { name });
    if (t.isDisposed) throw new ShapeError(`${who}: ${name} has already been disposed`, { name });
    if (t.dtype !== 'float32') throw new DTypeError(`${who}: ${name} must be float32, got ${t.dtype}`, { name });
    if (t.rank !== 4) {
      throw new ShapeError(`${who}: ${name} must be an image batch [N,H,W,C], got shape [${t.shape.join(',')}]`, {
        name,
        actual: t.shape,
      });
    }
    const [n, h, w, c] = t.shape as [number, number, number, number];
    if (n < 1 || h < 2 || w < 2 || (c !== 1 && c !== 3)) {
      throw new ShapeError(
        `${who}: ${name} must be [N≥1,H≥2,W≥2,1|3] frames, got [${t.shape.join(',')}]`,
        { name, actual: t.shape },
      );
    }
  }
  if (frames0.shape.join(',') !== frames1.shape.join(',')) {
    throw new ShapeError(
      `${who}: frames0 [${frames0.shape.join(',')}] and frames1 [${frames1.shape.join(',')}] must have the same shape (resize first)`,
      { frames0: frames0.shape, frames1: frames1.shape },
    );
  }
  for (const [t, name] of [
    [frames0, 'frames0'],
    [frames1, 'frames1'],
  ] as const) {
    const [bad, lo, hi] = readTensor(() =>
      tf.stack([tf.sum(tf.cast(tf.logicalNot(tf.isFinite(t)), 'float32')), tf.min(t), tf.max(t)]),
    ) as unknown as [number, number, number];
    if (bad > 0) {
      throw new NonFiniteError(`${who}: ${name} contains ${bad} non-finite value(s) (NaN or Infinity)`, { name, count: bad });
    }
    if (lo < -1e-3 || hi > 1 + 1e-3) {
      throw new ValueRangeError(
        `${who}: ${name} must be display-space frames in [0, 1], got values in [${lo}, ${hi}]` +
          (lo < 0 && lo >= -1 - 1e-3 ? ' (looks like model space [-1,1]: use toDisplayRange)' : hi > 1.5 ? ' (looks like 0..255 pixels: divide by 255)' : ''),
        { name, min: lo, max: hi },
      );
    }
  }
}

/** BT.601 luma [N,H,W,1] of a display batch with 1 or 3 channels (a copy when already gray). */
export function toLuma(x: tf.Tensor4D): tf.Tensor4D {
  if (x.shape[3] === 1) return tf.clone(x);
  return tf.tidy(() => tf.sum(tf.mul(x, tf.tensor1d([0.299, 0.587, 0.114])), 3, true) as tf.Tensor4D);
}

/**
 * Runs `refine` from the coarsest pyramid level to the finest: at each level the flow of the
 * coarser level is upsampled (vectors rescaled) and handed to `refine(I0, I1, init)`, which must
 * return a new flow and may not dispose its arguments. Returns the finest-level flow.
 */
export function coarseToFine(
  frames0: tf.Tensor4D,
  frames1: tf.Tensor4D,
  c: PyramidConfig,
  refine: (i0: tf.Tensor4D, i1: tf.Tensor4D, init: tf.Tensor4D, level: number) => tf.Tensor4D,
): tf.Tensor4D {
  const [n, h, w] = frames0.shape;
  const levels = usableLevels(h, w, c);
  const prep = (x: tf.Tensor4D): tf.Tensor4D => tf.tidy(() => gaussianBlur(toLuma(x), c.presmoothSigma));
  const g0 = prep(frames0);
  const g1 = prep(frames1);
  const p0 = gaussianPyramid(g0, levels, c.pyramidScale);
  const p1 = gaussianPyramid(g1, levels, c.pyramidScale);
  g0.dispose();
  g1.dispose();
  let flow: tf.Tensor4D | null = null;
  try {
    for (let l = levels - 1; l >= 0; l--) {
      const i0 = p0[l] as tf.Tensor4D;
      const i1 = p1[l] as tf.Tensor4D;
      const init: tf.Tensor4D = flow
        ? resizeFlow(flow, i0.shape[1], i0.shape[2])
        : tf.zeros([n, i0.shape[1], i0.shape[2], 2]);
      flow?.dispose();
      flow = null;
      try {
        flow = refine(i0, i1, init, l);
      } finally {
        init.dispose();
      }
    }
  } catch (e) {
    (flow as tf.Tensor4D | null)?.dispose();
    throw e;
  } finally {
    tf.dispose([...p0, ...p1]);
  }
  return flow as unknown as tf.Tensor4D;
}

/**
 * A coarse-to-fine estimator (Horn–Schunck, Lucas–Kanade): checks the frames and runs
 * {@link coarseToFine} with the method's own per-level refinement. Subclasses validate their
 * config (pyramid options with {@link validatePyramidConfig}) before calling `super`.
 */
export abstract class CoarseToFineFlow<C extends PyramidConfig> implements FlowEstimator {
  abstract readonly name: string;
  readonly config: Readonly<C>;

  /** `who` names the class in errors. */
  protected constructor(
    config: C,
    private readonly who: string,
  ) {
    this.config = Object.freeze(config);
  }

  estimate(frames0: ImageBatch<'display'>, frames1: ImageBatch<'display'>): FlowField {
    validateFramePair(frames0, frames1, this.who);
    return coarseToFine(frames0, frames1, this.config, (i0, i1, init) => this.refineLevel(i0, i1, init)) as FlowField;
  }

  /** The flow at one level, refined from `init` (a new tensor; the arguments are not disposed). */
  protected abstract refineLevel(i0: tf.Tensor4D, i1: tf.Tensor4D, init: tf.Tensor4D): tf.Tensor4D;
}

/** Options of {@link clipFlow}. */
export interface ClipFlowOptions {
  /** Frame distance k: flows F_i = flow(frame_i, frame_{i+k}) (default 1, consecutive frames). */
  stride?: number;
  /** Pairs estimated per call to the estimator, to bound memory (default 32). */
  batchSize?: number;
}

/**
 * Flows of a clip between frames `stride` apart: [T−stride, H, W, 2] (`F_i` from frame i to frame
 * i + stride). A clip with ≤ `stride` frames has no pairs and raises a {@link ShapeError}.
 */
export function clipFlow(video: Video<'display'>, estimator: FlowEstimator, options: ClipFlowOptions = {}): FlowField {
  const stride = options.stride ?? 1;
  const batchSize = options.batchSize ?? 32;
  if (!Number.isInteger(stride) || stride < 1) throw new ConfigError(`clipFlow: stride must be an integer ≥ 1, got ${stride}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new ConfigError(`clipFlow: batchSize must be an integer ≥ 1, got ${batchSize}`);
  }
  if (!(video instanceof tf.Tensor) || video.rank !== 4) {
    throw new ShapeError(`clipFlow: video must be a [T,H,W,C] tensor, got ${video instanceof tf.Tensor ? `[${video.shape.join(',')}]` : typeof video}`);
  }
  const t = video.shape[0];
  if (t <= stride) {
    throw new ShapeError(
      `clipFlow: a clip with ${t} frame(s) has no frame pair at stride ${stride}; optical flow needs at least ${stride + 1} frames`,
      { frames: t, stride },
    );
  }
  const pairs = t - stride;
  const parts: tf.Tensor4D[] = [];
  try {
    for (let s = 0; s < pairs; s += batchSize) {
      const m = Math.min(batchSize, pairs - s);
      const a = tf.slice(video, [s, 0, 0, 0], [m, -1, -1, -1]) as unknown as ImageBatch<'display'>;
      const b = tf.slice(video, [s + stride, 0, 0, 0], [m, -1, -1, -1]) as unknown as ImageBatch<'display'>;
      try {
        parts.push(estimator.estimate(a, b));
      } finally {
        a.dispose();
        b.dispose();
      }
    }
  } catch (e) {
    tf.dispose(parts);
    throw e;
  }
  if (parts.length === 1) return parts[0] as FlowField;
  const out = tf.concat(parts, 0) as FlowField;
  tf.dispose(parts);
  return out;
}
