/**
 * SolidMark scores (reference B.3): the predicted key k̂ = Σ(M ⊙ x̂)/ΣM (mean of the outpainted
 * border over all its pixels and channels, display space), the SolidMark distance
 * ℓ_SM = |k̂ − k|, (ℓ_SM, δ)-eidetic counts #{i : ℓ_SM,i < δ} at δ ∈ {0.1, 0.05, 0.005}
 * (`analyze_distances.ipynb`), the duplication study's statistics (nearest of an image's keys,
 * mean key, which key was hit; `sd/test_sd_duplication.py`) and the chance levels they must be
 * read against.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Generator, ShapeError, ValueRangeError, asImageBatch, type ImageBatch } from '@diffmem/core';
import { checkSolidMarkKeys } from './marks.js';

/** δ grid of the authors' notebook. */
export const SOLIDMARK_DELTAS: readonly number[] = Object.freeze([0.1, 0.05, 0.005]);

/** Predicted keys and how uniform each outpainted border is. */
export interface PredictedKeys {
  /** k̂ per image, display space. */
  keys: number[];
  /**
   * Standard deviation of the border pixels per image (display space). A model trained with
   * SolidMark paints a near-solid border (small std); a large value means the border is image-like
   * or noise, i.e. the model probably never learned borders (see the audit's warning flag).
   */
  borderStd: number[];
}

/**
 * k̂ = Σ(M ⊙ x̂)/ΣM per image (reference B.3 step 2), computed in float64 on the host from a
 * display-space batch [N,S,S,C] (values clamped to [0, 1], as an image would be) and a 0/1 mask
 * [1|N,S,S,C]. Also returns each border's standard deviation. Disposes nothing.
 */
export function predictKeys(images: ImageBatch<'display'>, mask: tf.Tensor4D): PredictedKeys {
  asImageBatch(images, 'display', { name: 'outpainted images' });
  const [n, h, w, c] = images.shape;
  if (!(mask instanceof tf.Tensor) || mask.rank !== 4 || (mask.shape[0] !== 1 && mask.shape[0] !== n) || mask.shape[1] !== h || mask.shape[2] !== w || mask.shape[3] !== c) {
    throw new ShapeError(`mask must be [1 or ${n},${h},${w},${c}], got [${mask?.shape?.join(',')}]`);
  }
  const px = images.dataSync();
  const m = mask.dataSync();
  const per = h * w * c;
  const perMask = mask.shape[0] === 1;
  const keys: number[] = [];
  const borderStd: number[] = [];
  for (let i = 0; i < n; i++) {
    const mo = perMask ? 0 : i * per;
    let count = 0;
    let sum = 0;
    let sumSq = 0;
    for (let j = 0; j < per; j++) {
      if ((m[mo + j] as number) > 0.5) {
        const v = Math.min(1, Math.max(0, px[i * per + j] as number));
        count++;
        sum += v;
        sumSq += v * v;
      }
    }
    if (count === 0) throw new ShapeError(`the mask of image ${i} is empty: there is no border to read a key from`);
    const mean = sum / count;
    keys.push(mean);
    borderStd.push(Math.sqrt(Math.max(0, sumSq / count - mean * mean)));
  }
  return { keys, borderStd };
}

/** ℓ_SM = |k̂ − k| (reference B.3 step 3); both in display space [0, 1]. */
export function solidMarkDistance(predictedKey: number, key: number): number {
  checkSolidMarkKeys([key], 'key');
  if (!Number.isFinite(predictedKey)) throw new ValueRangeError(`predicted key must be finite, got ${predictedKey}`);
  return Math.abs(predictedKey - key);
}

/** The nearest of an image's keys to a prediction (duplication study: which key was hit). */
export function nearestKey(predictedKey: number, keys: readonly number[]): { distance: number; keyIndex: number } {
  if (keys.length === 0) throw new ConfigError('nearestKey needs at least one key');
  let best = { distance: Infinity, keyIndex: -1 };
  keys.forEach((k, j) => {
    const d = solidMarkDistance(predictedKey, k);
    if (d < best.distance) best = { distance: d, keyIndex: j };
  });
  return best;
}

/** |k̂ − mean(keys)| (duplication study: distance to the mean key). */
export function meanKeyDistance(predictedKey: number, keys: readonly number[]): number {
  if (keys.length === 0) throw new ConfigError('meanKeyDistance needs at least one key');
  checkSolidMarkKeys(keys, 'keys');
  return Math.abs(predictedKey - keys.reduce((a, b) => a + b, 0) / keys.length);
}

function checkDelta(delta: number): void {
  if (!(Number.isFinite(delta) && delta > 0 && delta <= 1)) throw new ConfigError(`δ must be in (0, 1], got ${delta}`);
}

/** (ℓ_SM, δ)-eidetic memorizations: #{i : ℓ_SM,i < δ} (strict, as in the authors' notebook). */
export function eideticCount(distances: readonly number[], delta: number): number {
  checkDelta(delta);
  let n = 0;
  for (const d of distances) if (d < delta) n++;
  return n;
}

/**
 * Chance rate of a hit when k̂ is independent of the keys and uniform on [0, 1]: with one key,
 * P(|k̂ − k| < δ) = 2δ − δ² (≈ 19%, 9.75%, 1% at δ = 0.1, 0.05, 0.005). With m independent keys
 * (a duplicated image with a fresh key per copy, scored by its nearest key),
 * P = ∫₀¹ 1 − (1 − q(x))^m dx with q(x) = |[x − δ, x + δ] ∩ [0, 1]| — which grows with m, so a
 * rising nearest-key count over duplication levels is expected even at chance (reference B.6).
 */
export function chanceRate(delta: number, numKeys = 1): number {
  checkDelta(delta);
  if (!Number.isInteger(numKeys) || numKeys < 1) throw new ConfigError(`numKeys must be a positive integer, got ${numKeys}`);
  const m = numKeys;
  if (m === 1) return 2 * delta - delta * delta;
  if (delta <= 0.5) {
    // middle (1 − 2δ)(1 − (1 − 2δ)^m) + two ends 2δ − 2((1 − δ)^{m+1} − (1 − 2δ)^{m+1})/(m + 1)
    const mid = (1 - 2 * delta) * (1 - (1 - 2 * delta) ** m);
    const ends = 2 * delta - (2 * ((1 - delta) ** (m + 1) - (1 - 2 * delta) ** (m + 1))) / (m + 1);
    return mid + ends;
  }
  const steps = 20000; // midpoint rule; q is piecewise linear, the integrand smooth on each piece
  let s = 0;
  for (let i = 0; i < steps; i++) {
    const x = (i + 0.5) / steps;
    const q = Math.min(1, x + delta) - Math.max(0, x - delta);
    s += 1 - (1 - q) ** m;
  }
  return s / steps;
}

/**
 * P(some key lies within δ of some prediction | the predictions), when the image's `numKeys`
 * keys are i.i.d. U[0, 1) and independent of the model: 1 − (1 − L)^m, L = |∪_r [k̂_r − δ, k̂_r + δ] ∩ [0, 1]|.
 * Summed over images this is the exact expected chance count given what the model painted
 * (a model that always paints 0.5 has L = 2δ; one that always paints 0 has L = δ).
 */
export function chanceHitProbability(predictedKeys: readonly number[], numKeys: number, delta: number): number {
  checkDelta(delta);
  if (predictedKeys.length === 0) throw new ConfigError('chanceHitProbability needs at least one prediction');
  const iv = predictedKeys
    .map((p) => [Math.max(0, p - delta), Math.min(1, p + delta)] as [number, number])
    .filter(([a, b]) => b > a)
    .sort((a, b) => a[0] - b[0]);
  let L = 0;
  let cur: [number, number] | null = null;
  for (const [a, b] of iv) {
    if (cur && a <= cur[1]) cur[1] = Math.max(cur[1], b);
    else {
      if (cur) L += cur[1] - cur[0];
      cur = [a, b];
    }
  }
  if (cur) L += cur[1] - cur[0];
  return 1 - (1 - L) ** numKeys;
}

// Whether any prediction lies within δ of any key (strict).
function anyHit(predictedKeys: readonly number[], keys: readonly number[], delta: number): boolean {
  for (const p of predictedKeys) for (const k of keys) if (Math.abs(p - k) < delta) return true;
  return false;
}

/**
 * A random cyclic permutation of [0, n) (Sattolo's algorithm): no element stays in place, so a
 * shuffled-key control never scores an image against its own key.
 */
export function cyclicPermutation(n: number, g: Generator): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = g.randint(i);
    [p[i], p[j]] = [p[j] as number, p[i] as number];
  }
  return p;
}

/** Options of {@link shuffledKeyCounts}. */
export interface ShuffledKeyOptions {
  seed: number;
  /** Number of permutations averaged (default 200). */
  permutations?: number;
  /** Group index of each image (counts are returned per group); default: one group. */
  groups?: readonly number[];
  numGroups?: number;
}

/**
 * The shuffled-key control: the same predictions scored against a permutation of the keys.
 * All keys of all images are pooled and dealt back by a cyclic permutation, each image receiving
 * as many keys as it had; an image counts at δ when any of its predictions is within δ of any of
 * its dealt keys. Returns, per group and δ, the mean and standard deviation of the count over
 * `permutations` draws — the empirical chance level for exactly this set of predictions and key
 * structure (duplication groups included).
 */
export function shuffledKeyCounts(
  predictedKeys: ReadonlyArray<readonly number[]>,
  keys: ReadonlyArray<readonly number[]>,
  deltas: readonly number[],
  o: ShuffledKeyOptions,
): { mean: number[][]; sd: number[][]; permutations: number } {
  const n = predictedKeys.length;
  if (keys.length !== n) throw new ShapeError(`got keys for ${keys.length} images and predictions for ${n}`);
  deltas.forEach(checkDelta);
  const P = o.permutations ?? 200;
  if (!Number.isInteger(P) || P < 1) throw new ConfigError(`permutations must be a positive integer, got ${P}`);
  const groups = o.groups ?? new Array<number>(n).fill(0);
  const G = o.numGroups ?? 1;
  if (groups.length !== n) throw new ShapeError(`got ${groups.length} group ids for ${n} images`);
  const pool = keys.flat();
  const offsets: number[] = [];
  let off = 0;
  for (const k of keys) {
    offsets.push(off);
    off += k.length;
  }
  for (const gi of groups) {
    if (!Number.isInteger(gi) || gi < 0 || gi >= G) throw new ConfigError(`group id ${gi} is outside [0, ${G})`);
  }
  const D = deltas.length;
  // Flat [G·D] accumulators.
  const sum = new Float64Array(G * D);
  const sumSq = new Float64Array(G * D);
  const counts = new Float64Array(G * D);
  const g = new Generator(o.seed);
  for (let p = 0; p < P; p++) {
    const perm = pool.length > 1 ? cyclicPermutation(pool.length, g) : [0];
    counts.fill(0);
    for (let i = 0; i < n; i++) {
      const dealt = (keys[i] as readonly number[]).map((_, j) => pool[perm[(offsets[i] as number) + j] as number] as number);
      const base = (groups[i] as number) * D;
      deltas.forEach((d, di) => {
        if (anyHit(predictedKeys[i] as readonly number[], dealt, d)) counts[base + di] = (counts[base + di] as number) + 1;
      });
    }
    for (let j = 0; j < G * D; j++) {
      const c = counts[j] as number;
      sum[j] = (sum[j] as number) + c;
      sumSq[j] = (sumSq[j] as number) + c * c;
    }
  }
  const mean = Array.from({ length: G }, (_, gi) => Array.from({ length: D }, (_, di) => (sum[gi * D + di] as number) / P));
  const sd = Array.from({ length: G }, (_, gi) =>
    Array.from({ length: D }, (_, di) => {
      const mu = (mean[gi] as number[])[di] as number;
      const s = sumSq[gi * D + di] as number;
      return P > 1 ? Math.sqrt(Math.max(0, (s - P * mu * mu) / (P - 1))) : 0;
    }),
  );
  return { mean, sd, permutations: P };
}
