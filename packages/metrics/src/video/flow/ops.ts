/**
 * Image-processing building blocks of the weight-free optical-flow estimators: separable filters
 * with symmetric (reflecting) borders, image derivatives, the Horn–Schunck neighbourhood average, the
 * Gaussian pyramid, flow upsampling and a small median filter. Every function returns new tensors
 * and never disposes its inputs.
 * @module
 * @internal
 */
import * as tf from '@tensorflow/tfjs-core';

/** Normalised 1-D Gaussian taps of standard deviation `sigma` (radius ⌈3σ⌉, at least 1). */
export function gaussianTaps(sigma: number): number[] {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const taps: number[] = [];
  let sum = 0;
  for (let i = -radius; i <= radius; i++) {
    const v = Math.exp(-(i * i) / (2 * sigma * sigma));
    taps.push(v);
    sum += v;
  }
  return taps.map((v) => v / sum);
}

/**
 * Pads H and W by symmetric (half-sample) reflection, `… b a | a b c …`, so a 1-pixel pad is edge
 * replication (the zero-flux boundary HS wants) and wider filters see mirrored content instead of
 * zeros. Pads wider than the image (tiny pyramid levels) fall back to repeating the edge pixel.
 */
function symmetricPad(x: tf.Tensor4D, padY: number, padX: number): tf.Tensor4D {
  const [, h, w] = x.shape;
  if (padY <= h && padX <= w) return tf.mirrorPad(x, [[0, 0], [padY, padY], [padX, padX], [0, 0]], 'symmetric');
  return tf.tidy(() => {
    const y = padY > 0 ? edgeRepeat(x, padY, 1) : x;
    return padX > 0 ? edgeRepeat(y, padX, 2) : tf.clone(y);
  });
}

function edgeRepeat(x: tf.Tensor4D, pad: number, axis: 1 | 2): tf.Tensor4D {
  return tf.tidy(() => {
    const n = x.shape[axis];
    const first = axis === 1 ? tf.slice(x, [0, 0, 0, 0], [-1, 1, -1, -1]) : tf.slice(x, [0, 0, 0, 0], [-1, -1, 1, -1]);
    const last =
      axis === 1 ? tf.slice(x, [0, n - 1, 0, 0], [-1, 1, -1, -1]) : tf.slice(x, [0, 0, n - 1, 0], [-1, -1, 1, -1]);
    const reps = axis === 1 ? [1, pad, 1, 1] : [1, 1, pad, 1];
    return tf.concat([tf.tile(first, reps), x, tf.tile(last, reps)], axis) as tf.Tensor4D;
  });
}

/**
 * Correlates every channel of `x` [N,H,W,C] with `taps` along W (`axis = 'x'`) or H (`'y'`), with
 * symmetric border reflection, keeping the size. Correlation, not convolution: `out[i] = Σ_k taps[k]·x[i+k−r]`.
 */
export function correlate1d(x: tf.Tensor4D, taps: readonly number[], axis: 'x' | 'y'): tf.Tensor4D {
  return tf.tidy(() => {
    const r = (taps.length - 1) / 2;
    const c = x.shape[3];
    const padded = axis === 'x' ? symmetricPad(x, 0, r) : symmetricPad(x, r, 0);
    const k = taps.length;
    const shape: [number, number, number, number] = axis === 'x' ? [1, k, c, 1] : [k, 1, c, 1];
    const values = new Float32Array(k * c);
    for (let i = 0; i < k; i++) for (let ch = 0; ch < c; ch++) values[i * c + ch] = taps[i] as number;
    const filter = tf.tensor4d(values, shape);
    return tf.depthwiseConv2d(padded, filter, 1, 'valid');
  });
}

/** Separable Gaussian blur of every channel (symmetric borders). `sigma ≤ 0` returns a copy. */
export function gaussianBlur(x: tf.Tensor4D, sigma: number): tf.Tensor4D {
  if (!(sigma > 0)) return tf.clone(x);
  const taps = gaussianTaps(sigma);
  return tf.tidy(() => correlate1d(correlate1d(x, taps, 'x'), taps, 'y'));
}

/**
 * Five-point central-difference derivative taps `[1, −8, 0, 8, −1]/12` (correlation form), the
 * derivative filter of Sun, Roth & Black, "Secrets of optical flow estimation" (CVPR 2010).
 */
export const DERIVATIVE_TAPS: readonly number[] = [1 / 12, -8 / 12, 0, 8 / 12, -1 / 12];

/** Spatial gradients (∂I/∂x, ∂I/∂y) of a single-channel batch [N,H,W,1]. */
export function gradients(x: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] {
  return [correlate1d(x, DERIVATIVE_TAPS, 'x'), correlate1d(x, DERIVATIVE_TAPS, 'y')];
}

/**
 * Horn & Schunck's neighbourhood average ū (Horn & Schunck 1981, eq. 9's Laplacian approximation):
 * `[[1,2,1],[2,0,2],[1,2,1]]/12` on every channel. At the border the weights of missing neighbours
 * are dropped and the rest renormalised (a zero-flux boundary), which costs one zero-padded
 * depthwise convolution and one multiply per call instead of a pad and a convolution.
 */
export class HsAverage {
  private readonly filter: tf.Tensor4D;
  private readonly inverseWeight: tf.Tensor4D;

  /** An averaging operator for [N, height, width, channels] fields. */
  constructor(height: number, width: number, channels: number) {
    const k = [1 / 12, 2 / 12, 1 / 12, 2 / 12, 0, 2 / 12, 1 / 12, 2 / 12, 1 / 12];
    const values = new Float32Array(9 * channels);
    for (let i = 0; i < 9; i++) for (let ch = 0; ch < channels; ch++) values[i * channels + ch] = k[i] as number;
    this.filter = tf.tensor4d(values, [3, 3, channels, 1]);
    this.inverseWeight = tf.tidy(() =>
      tf.reciprocal(tf.depthwiseConv2d(tf.ones([1, height, width, channels]) as tf.Tensor4D, this.filter, 1, 'same')),
    );
  }

  /** ū of `flow` [N,H,W,C] (a new tensor). */
  apply(flow: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => tf.mul(tf.depthwiseConv2d(flow, this.filter, 1, 'same'), this.inverseWeight));
  }

  /** Frees the operator's constant tensors. */
  dispose(): void {
    this.filter.dispose();
    this.inverseWeight.dispose();
  }
}

/** Size of the next coarser pyramid level: ⌈H·scale⌉ × ⌈W·scale⌉. */
export function coarserSize(h: number, w: number, scale: number): [number, number] {
  return [Math.max(1, Math.round(h * scale)), Math.max(1, Math.round(w * scale))];
}

/**
 * Gaussian pyramid, finest first: each level is the previous one blurred (σ = 1/(2·scale), the
 * anti-aliasing width for a `scale` reduction) and resampled bilinearly. Level 0 is a copy of `x`.
 */
export function gaussianPyramid(x: tf.Tensor4D, levels: number, scale: number): tf.Tensor4D[] {
  const out: tf.Tensor4D[] = [tf.clone(x)];
  for (let l = 1; l < levels; l++) {
    const prev = out[l - 1] as tf.Tensor4D;
    const [h, w] = coarserSize(prev.shape[1], prev.shape[2], scale);
    out.push(
      tf.tidy(() => tf.image.resizeBilinear(gaussianBlur(prev, 1 / (2 * scale)), [h, w], false, true) as tf.Tensor4D),
    );
  }
  return out;
}

/**
 * Resamples a flow field [N,h,w,2] to [N,H,W,2] and rescales the vectors by the size ratio so they
 * stay in pixels of the new grid (dx by W/w, dy by H/h).
 */
export function resizeFlow(flow: tf.Tensor4D, height: number, width: number): tf.Tensor4D {
  const [, h, w] = flow.shape;
  if (h === height && w === width) return tf.clone(flow);
  return tf.tidy(() =>
    tf.mul(
      tf.image.resizeBilinear(flow, [height, width], false, true),
      tf.tensor1d([width / w, height / h]),
    ) as tf.Tensor4D,
  );
}

/**
 * Comparators (i < j) of Batcher's odd–even merge sort for `n` inputs, restricted to those that
 * can change output `target` (the others are pruned by walking the network backwards). Inputs are
 * padded to a power of two with +∞, which never moves, so comparators touching padding are dropped.
 */
export function selectionNetwork(n: number, target: number): Array<[number, number]> {
  let size = 1;
  while (size < n) size <<= 1;
  const all: Array<[number, number]> = [];
  for (let p = 1; p < size; p <<= 1) {
    for (let k = p; k >= 1; k >>= 1) {
      for (let j = k % p; j <= size - 1 - k; j += 2 * k) {
        for (let i = 0; i <= Math.min(k - 1, size - j - k - 1); i++) {
          if (Math.floor((i + j) / (2 * p)) === Math.floor((i + j + k) / (2 * p)) && i + j + k < n) {
            all.push([i + j, i + j + k]);
          }
        }
      }
    }
  }
  const needed = new Set([target]);
  const kept: Array<[number, number]> = [];
  for (let c = all.length - 1; c >= 0; c--) {
    const [a, b] = all[c] as [number, number];
    if (needed.has(a) || needed.has(b)) {
      kept.push([a, b]);
      needed.add(a);
      needed.add(b);
    }
  }
  return kept.reverse();
}

const networks = new Map<number, Array<[number, number]>>();

/**
 * Median of every `size`×`size` neighbourhood, per channel (symmetric borders), computed with a
 * pruned min/max selection network (element-wise ops only, far faster in TF.js than `topk` over a
 * window axis). Sun et al. (2010) show a 5×5 median of the flow after each warping step removes
 * most outliers of classic methods.
 */
export function medianFilter(x: tf.Tensor4D, size: number): tf.Tensor4D {
  if (size <= 1) return tf.clone(x);
  const count = size * size;
  let network = networks.get(count);
  if (!network) {
    network = selectionNetwork(count, (count - 1) / 2);
    networks.set(count, network);
  }
  const r = Math.floor(size / 2);
  const [n, h, w, c] = x.shape;
  const padded = symmetricPad(x, r, r);
  const v: tf.Tensor4D[] = [];
  try {
    for (let dy = 0; dy < size; dy++) {
      for (let dx = 0; dx < size; dx++) v.push(tf.slice(padded, [0, dy, dx, 0], [n, h, w, c]));
    }
  } finally {
    padded.dispose();
  }
  try {
    // Each comparator replaces two window samples by their min and max; the replaced tensors are
    // freed at once so peak memory stays at about `count` images.
    for (const [i, j] of network) {
      const a = v[i] as tf.Tensor4D;
      const b = v[j] as tf.Tensor4D;
      v[i] = tf.minimum(a, b);
      v[j] = tf.maximum(a, b);
      a.dispose();
      b.dispose();
    }
    return tf.clone(v[(count - 1) / 2] as tf.Tensor4D);
  } finally {
    tf.dispose(v);
  }
}

/**
 * Replaces a running flow estimate by its `size`×`size` median (see {@link medianFilter}): returns
 * the filtered flow and disposes `flow`; `size` ≤ 1 returns `flow` itself.
 */
export function replaceByMedian(flow: tf.Tensor4D, size: number): tf.Tensor4D {
  if (size <= 1) return flow;
  const filtered = medianFilter(flow, size);
  flow.dispose();
  return filtered;
}
