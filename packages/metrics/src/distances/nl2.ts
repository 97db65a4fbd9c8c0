/**
 * nL2: the nearest-neighbour ℓ2 distance normalised by the typical distance of a neighbourhood,
 * so that an image is "memorized" when its nearest training image is much closer than its other
 * close neighbours (Carlini et al. 2023 §5.1; AMG, Chen et al. CVPR 2024, Eq. 8).
 *
 * nL2(x̂) = ℓ2(x̂, n0) / (α · (1/k) Σ_{z∈S} ℓ2(·, z)),   σ = −nL2 (AMG's similarity score)
 *
 * where ℓ2 is the RMS distance ({@link rmsL2}), n0 the nearest training image, and S one of:
 * - `'generated-centric'` (**default**; AMG Eq. 8 and the AMG code `mem_util.mL2`): the k nearest
 *   training images **of the generated image x̂** — distances ℓ2(x̂, z); the k include n0 itself.
 * - `'reference-centric'` (Carlini et al. as encoded by LeakPro `carlini_reference_scores`): the k
 *   nearest training images **of the matched training image n0** — distances ℓ2(n0, z); by default
 *   the k include n0 itself at distance 0, as LeakPro does (`referenceIncludesSelf: false` takes k
 *   others instead).
 *
 * Defaults α = 0.5, k = 50 (both papers). Thresholds in use: AMG counts nL2 < 1.4 (and < 1.6) as
 * memorized and dedups CIFAR-10 at nL2 < 1.0; LeakPro's default ratio threshold is 1.0.
 * Degenerate denominators: 0/0 is reported as 0 (the k neighbours are exact copies), x/0 as
 * Infinity.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '@diffmem/core';
import { checkInt, checkK, checkPositive } from '../internal/checks.js';
import type { KnnResult, ReferenceId, ReferenceIndex } from '../reference_index.js';

/** Which neighbourhood normalises the distance (see the module notes). */
export type Nl2Variant = 'generated-centric' | 'reference-centric';

/** The defaults shared by AMG and Carlini et al.: α = 0.5, k = 50, AMG's generated-centric form. */
export const NL2_DEFAULTS: Readonly<{ k: number; alpha: number; variant: Nl2Variant }> = Object.freeze({
  k: 50,
  alpha: 0.5,
  variant: 'generated-centric',
});

/** AMG's memorization thresholds on nL2 (Tables 2–3: %<1.4, %<1.6) and its dedup cut (1.0). */
export const AMG_NL2_THRESHOLDS = Object.freeze({ memorized: 1.4, loose: 1.6, dedup: 1.0 });

/** Options of {@link nl2} and {@link nl2Differentiable}. */
export interface Nl2Options {
  /** Neighbourhood size (default 50). */
  k?: number;
  /** Scale of the neighbourhood mean (default 0.5). */
  alpha?: number;
  /** Default `'generated-centric'`. */
  variant?: Nl2Variant;
  /** Reference-centric only: count n0 itself among its k neighbours (default true, LeakPro). */
  referenceIncludesSelf?: boolean;
  /**
   * One reference index per query to leave out of the search (or null), e.g. the query's own
   * index when scoring the training set against itself (AMG's dedup step).
   */
  exclude?: ReadonlyArray<number | null>;
}

/** Per-query nL2 and the neighbours behind it. */
export interface Nl2Result {
  variant: Nl2Variant;
  k: number;
  alpha: number;
  /** nL2 per query (lower = more memorized). */
  nl2: number[];
  /** σ = −nL2 (AMG's similarity score). */
  sigma: number[];
  /** ℓ2(x̂, n0), RMS units of the data. */
  nearestDistance: number[];
  /** The mean neighbourhood distance (before α). */
  neighborMeanDistance: number[];
  nearestIndex: number[];
  nearestId: ReferenceId[];
  /** The k neighbours used in the denominator, by id. */
  neighborIds: ReferenceId[][];
  /** The same neighbours as reference indices. */
  neighborIndices: number[][];
}

function resolve(options: Nl2Options): { k: number; alpha: number; variant: Nl2Variant; includeSelf: boolean } {
  const variant = options.variant ?? NL2_DEFAULTS.variant;
  if (variant !== 'generated-centric' && variant !== 'reference-centric') {
    throw new ConfigError(`variant must be 'generated-centric' or 'reference-centric', got ${String(variant)}`);
  }
  return {
    k: checkInt(options.k ?? NL2_DEFAULTS.k, 'k'),
    alpha: checkPositive(options.alpha ?? NL2_DEFAULTS.alpha, 'alpha'),
    variant,
    includeSelf: options.referenceIncludesSelf ?? true,
  };
}

function ratio(num: number, den: number): number {
  if (den > 0) return num / den;
  return num === 0 ? 0 : Infinity;
}

// Reference-centric denominators only depend on the training set: cache them per index.
type Neighborhood = { mean: number; ids: ReferenceId[]; indices: number[] };
const neighborhoodCache = new WeakMap<ReferenceIndex, Map<string, Map<number, Neighborhood>>>();

/**
 * Mean RMS distance from each reference `indices[i]` to its k nearest references (itself
 * included at distance 0 when `includeSelf`), with the neighbour ids. Cached per index.
 */
export function referenceNeighborMeans(
  index: ReferenceIndex,
  indices: readonly number[],
  options: { k?: number; includeSelf?: boolean } = {},
): Neighborhood[] {
  const k = checkInt(options.k ?? NL2_DEFAULTS.k, 'k');
  const includeSelf = options.includeSelf ?? true;
  checkK(k, includeSelf ? index.size : index.size - 1, 'reference set' + (includeSelf ? '' : ' minus the matched image'));
  let byKey = neighborhoodCache.get(index);
  if (!byKey) neighborhoodCache.set(index, (byKey = new Map()));
  const key = `${k}:${includeSelf}`;
  let cache = byKey.get(key);
  if (!cache) byKey.set(key, (cache = new Map()));
  const missing = [...new Set(indices.filter((i) => !cache.has(i)))];
  if (missing.length > 0) {
    const rows = index.gather(missing);
    try {
      const res = index.searchFlat(rows.dataSync() as Float32Array, missing.length, {
        k,
        metric: 'rms-l2',
        exclude: includeSelf ? undefined : missing,
      });
      missing.forEach((g, i) => {
        const v = res.values[i] as number[];
        cache.set(g, {
          mean: v.reduce((a, b) => a + b, 0) / v.length,
          ids: res.ids[i] as ReferenceId[],
          indices: res.indices[i] as number[],
        });
      });
    } finally {
      rows.dispose();
    }
  }
  return indices.map((i) => cache.get(i) as Neighborhood);
}

/**
 * nL2 of every query against the reference index (RMS ℓ2 on the index's rows, e.g. display
 * images). See the module notes for the two variants. Inputs are not disposed.
 */
export function nl2(queries: tf.Tensor, index: ReferenceIndex, options: Nl2Options = {}): Nl2Result {
  const { data, count } = index.readQueries(queries, 'queries');
  return nl2Flat(data, count, index, options);
}

function nl2Flat(data: Float32Array, count: number, index: ReferenceIndex, options: Nl2Options): Nl2Result {
  const { k, alpha, variant, includeSelf } = resolve(options);
  const out: Nl2Result = {
    variant,
    k,
    alpha,
    nl2: [],
    sigma: [],
    nearestDistance: [],
    neighborMeanDistance: [],
    nearestIndex: [],
    nearestId: [],
    neighborIds: [],
    neighborIndices: [],
  };
  if (variant === 'generated-centric') {
    const res = index.searchFlat(data, count, { k, metric: 'rms-l2', exclude: options.exclude });
    for (let i = 0; i < count; i++) {
      const v = res.values[i] as number[];
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const r = ratio(v[0] as number, alpha * mean);
      out.nl2.push(r);
      out.sigma.push(-r);
      out.nearestDistance.push(v[0] as number);
      out.neighborMeanDistance.push(mean);
      out.nearestIndex.push((res.indices[i] as number[])[0] as number);
      out.nearestId.push((res.ids[i] as ReferenceId[])[0] as ReferenceId);
      out.neighborIds.push(res.ids[i] as ReferenceId[]);
      out.neighborIndices.push(res.indices[i] as number[]);
    }
    return out;
  }
  const nn = index.searchFlat(data, count, { k: 1, metric: 'rms-l2', exclude: options.exclude });
  const n0 = nn.indices.map((r) => r[0] as number);
  const means = referenceNeighborMeans(index, n0, { k, includeSelf });
  for (let i = 0; i < count; i++) {
    const d0 = (nn.values[i] as number[])[0] as number;
    const m = means[i] as Neighborhood;
    const r = ratio(d0, alpha * m.mean);
    out.nl2.push(r);
    out.sigma.push(-r);
    out.nearestDistance.push(d0);
    out.neighborMeanDistance.push(m.mean);
    out.nearestIndex.push(n0[i] as number);
    out.nearestId.push((nn.ids[i] as ReferenceId[])[0] as ReferenceId);
    out.neighborIds.push(m.ids);
    out.neighborIndices.push(m.indices);
  }
  return out;
}

/**
 * Generated-centric nL2 from an existing k-NN result (RMS ℓ2 neighbours, best first), e.g. from
 * `ParallelSearcher.search(queries, { k: 50 })`: nL2 = d₀ / (α · mean(d₀ … d_{k−1})).
 */
export function nl2FromNeighbors(result: KnnResult, options: { alpha?: number } = {}): number[] {
  const alpha = checkPositive(options.alpha ?? NL2_DEFAULTS.alpha, 'alpha');
  if (result.metric !== 'rms-l2') throw new ConfigError(`nl2FromNeighbors needs an 'rms-l2' search result, got '${result.metric}'`);
  return result.values.map((v) => ratio(v[0] as number, alpha * (v.reduce((a, b) => a + b, 0) / v.length)));
}

/** Options of {@link nl2Differentiable}. */
export interface Nl2DifferentiableOptions extends Nl2Options {
  /**
   * Treat the denominator as a constant when differentiating (default true, as the AMG iDDPM
   * code does: "the denominator of nL2 is held constant when taking the gradient"). Only the
   * generated-centric denominator depends on x at all.
   */
  detachDenominator?: boolean;
  /** Added inside the square roots so the gradient stays finite at exact copies (default 1e-12). */
  eps?: number;
}

/** What {@link nl2Differentiable} returns. */
export interface Nl2DifferentiableResult {
  /** σ = −nL2 per sample, a tensor that depends differentiably on the input. Caller disposes. */
  sigma: tf.Tensor1D;
  /** nL2 values (plain numbers, as computed by {@link nl2}). */
  nl2: number[];
  nearestIds: ReferenceId[];
  nearestIndices: number[];
  /** Ids of the neighbourhood used by the denominator. */
  neighborIds: ReferenceId[][];
}

/**
 * σ = −nL2 as a differentiable function of `x0Display` (e.g. AMG's predicted clean sample x̂0 in
 * display space, [N,H,W,C]), for guidance: `tf.grad(x => nl2Differentiable(x, index).sigma.sum())`.
 *
 * The neighbour search itself is not differentiable (it runs on a detached copy); the distances
 * to the selected neighbours are recomputed with tf ops from the input so gradients flow:
 * ∂σ/∂x̂0 = −(1/(α·mean)) ∂ℓ2(x̂0, n0)/∂x̂0 when the denominator is detached. Works on the
 * wasm backend (no gather on the differentiated path).
 */
export function nl2Differentiable(x0Display: tf.Tensor, index: ReferenceIndex, options: Nl2DifferentiableOptions = {}): Nl2DifferentiableResult {
  const { k, alpha, variant } = resolve(options);
  const detach = options.detachDenominator ?? true;
  const eps = options.eps ?? 1e-12;
  const { data, count } = index.readQueries(x0Display, 'x0Display');
  const info = nl2Flat(data, count, index, options);
  const dim = index.dim;
  const needAll = variant === 'generated-centric' && !detach;
  const neighborRows = needAll ? info.neighborIndices.flat() : info.nearestIndex;
  const refs = index.gather(neighborRows);
  try {
    const sigma = tf.tidy(() => {
      const x = tf.reshape(x0Display, [count, dim]);
      if (!needAll) {
        const d0 = tf.sqrt(tf.add(tf.mean(tf.square(tf.sub(x, refs)), 1), eps));
        const den = tf.tensor1d(info.neighborMeanDistance.map((m) => alpha * m), 'float32');
        return tf.neg(tf.div(d0, den)) as tf.Tensor1D;
      }
      const xk = tf.reshape(tf.tile(tf.reshape(x, [count, 1, dim]), [1, k, 1]), [count * k, dim]);
      const d = tf.reshape(tf.sqrt(tf.add(tf.mean(tf.square(tf.sub(xk, refs)), 1), eps)), [count, k]);
      const d0 = tf.squeeze(tf.slice(d, [0, 0], [count, 1]), [1]);
      return tf.neg(tf.div(d0, tf.mul(tf.mean(d, 1), alpha))) as tf.Tensor1D;
    });
    return { sigma, nl2: info.nl2, nearestIds: info.nearestId, nearestIndices: info.nearestIndex, neighborIds: info.neighborIds };
  } finally {
    refs.dispose();
  }
}
