/**
 * Natural-motion filtering (NMF) for the motion-memorization metric: decide which flow pairs (and
 * which whole clips) carry generic rather than identifying motion, and remove global camera motion.
 *
 * The paper (Chen et al., arXiv 2410.21669) names NMF, "Natural Motion Filtering to discount
 * natural motions", but its rules are not confirmed; this module implements the reconstruction of
 * `video-memorization.md` §3 from published gates:
 *
 * 1. **Near-static motion.**
 *    - data-juicer's `video_motion_score_filter`: the motion score is the mean flow magnitude
 *      mean_p ‖F(p)‖ (Farnebäck there), kept when ≥ `min_score = 0.25` px. Here the gate is scaled
 *      to the analysis resolution: 0.25 px at a 256-px short side, i.e. `minMeanMagnitude · min(H,W)/256`.
 *    - VBench's dynamic degree (`vbench/dynamic_degree.py`): frames sampled every
 *      `round(fps/8)` frames; per pair, the mean of the top 5 % of ‖F‖; a pair moves if that
 *      exceeds `max(1, 8/fps) · 6.0 · min(H,W)/256`; the clip is dynamic when at least
 *      `round(4·count/16)` pairs move (count = number of sampled frames; Python rounding).
 * 2. **Global camera motion.** An affine field F_aff(x, y) = (a₀ + a₁x + a₂y, b₀ + b₁x + b₂y) is
 *    fitted to F by least squares; ρ = ‖F − F_aff‖ / ‖F‖ is the share of motion a camera pan,
 *    zoom or rotation cannot explain. Pairs with ρ < τ_ρ are camera-only ("natural"), and OFS is
 *    always computed on the residual F − F_aff (camera-motion compensation).
 * 3. Static clips therefore drop out of the motion metric (a defined `null` score with reason
 *    `'static'`), which is what separates content from motion memorization.
 *
 * All thresholds are the reference note's placeholders; calibrate them on your data.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, NonFiniteError, ShapeError, type FlowField } from '@diffmem/core';
import { readTensor } from './validate.js';

/** Python 3 `round` (half to even), as used by VBench and data-juicer for intervals and counts. */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function checkFlow(flow: unknown, name: string): tf.Tensor4D {
  if (!(flow instanceof tf.Tensor)) throw new ShapeError(`${name} must be a tf.Tensor`, { name });
  if (flow.rank !== 4 || flow.shape[3] !== 2 || (flow.shape as number[]).some((d) => d === 0)) {
    throw new ShapeError(`${name} must be a non-empty flow field [N,H,W,2], got [${flow.shape.join(',')}]`, {
      name,
      actual: flow.shape,
    });
  }
  if (flow.dtype !== 'float32') throw new ShapeError(`${name} must be float32, got ${flow.dtype}`, { name });
  return flow as tf.Tensor4D;
}

/** Throws a {@link NonFiniteError} if the flow holds NaN or ±Infinity (one scalar read back). */
export function assertFiniteFlow(flow: tf.Tensor, name = 'flow'): void {
  const bad = readTensor(() => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(flow)), 'float32')))[0] as number;
  if (bad > 0) {
    throw new NonFiniteError(`${name} contains ${bad} non-finite value(s) (NaN or Infinity); optical flow must be finite`, {
      name,
      count: bad,
    });
  }
}

/** Per-pair magnitude statistics of a flow field. */
export interface FlowMagnitudeStats {
  /** mean_p ‖F(p)‖ per pair (data-juicer's motion score), pixels. */
  mean: number[];
  /** Mean of the top `fraction` of ‖F(p)‖ per pair (VBench's `max_rad`, fraction 0.05), pixels. */
  topMean: number[];
}

/**
 * Mean magnitude and mean of the largest `fraction` of magnitudes (at least one pixel) of every
 * pair of `flow` [N,H,W,2]. Throws {@link NonFiniteError} on NaN/Inf flows.
 */
export function flowMagnitudeStats(flow: FlowField | tf.Tensor, fraction = 0.05): FlowMagnitudeStats {
  const f = checkFlow(flow, 'flow');
  if (!(fraction > 0 && fraction <= 1)) throw new ConfigError(`fraction must be in (0, 1], got ${fraction}`);
  assertFiniteFlow(f);
  const [n, h, w] = f.shape;
  // VBench: cut_index = int(h·w·0.05); guarded to ≥ 1 so tiny grids do not average an empty set.
  const k = Math.max(1, Math.floor(h * w * fraction));
  const out = tf.tidy(() => {
    const mag = tf.reshape(tf.sqrt(tf.sum(tf.square(f), 3)), [n, h * w]);
    const top = tf.mean(tf.topk(mag, k, false).values, 1);
    return tf.stack([tf.mean(mag, 1), top]);
  });
  const v = out.dataSync();
  out.dispose();
  return { mean: Array.from(v.subarray(0, n)), topMean: Array.from(v.subarray(n, 2 * n)) };
}

/** Result of {@link fitAffineFlow}. */
export interface AffineFlowFit {
  /**
   * Per pair, [a₀, a₁, a₂, b₀, b₁, b₂] with u = a₀ + a₁x̃ + a₂ỹ, v = b₀ + b₁x̃ + b₂ỹ and
   * (x̃, ỹ) = pixel coordinates relative to the image centre, in pixels.
   */
  params: number[][];
  /** F_aff, the fitted camera-motion field [N,H,W,2] (caller disposes). */
  affine: tf.Tensor4D;
  /** F − F_aff, the object motion [N,H,W,2] (caller disposes). */
  residual: tf.Tensor4D;
  /** ρ = ‖F − F_aff‖ / ‖F‖ per pair (0 for an all-zero flow). */
  residualRatio: number[];
}

/**
 * Least-squares affine (6-parameter) camera-motion fit of every flow field, the global model of
 * NMF rule 2: minimises Σ_p ‖F(p) − A·[1, x̃, ỹ]ᵀ‖². The normal equations share one 3×3 matrix for
 * all pairs and both components, so the fit is one [2N, P] × [P, 3] matrix product.
 */
export function fitAffineFlow(flow: FlowField | tf.Tensor): AffineFlowFit {
  const f = checkFlow(flow, 'flow');
  assertFiniteFlow(f);
  const [n, h, w] = f.shape;
  const p = h * w;
  // Design matrix X = [1, x̃, ỹ] (centred; x̃ ⊥ ỹ ⊥ 1 on a full grid, so XᵀX is diagonal, but the
  // general 3×3 inverse keeps this exact for any grid), pseudo-inverse (XᵀX)⁻¹Xᵀ in float64.
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  const xtx = [0, 0, 0, 0, 0, 0, 0, 0, 0];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const r = [1, x - cx, y - cy];
      for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) xtx[a * 3 + b] = (xtx[a * 3 + b] as number) + (r[a] as number) * (r[b] as number);
    }
  }
  const inv = invert3(xtx);
  const pinv = new Float32Array(3 * p); // [3, P]
  const design = new Float32Array(p * 3); // [P, 3]
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const r = [1, x - cx, y - cy];
      for (let a = 0; a < 3; a++) {
        design[i * 3 + a] = r[a] as number;
        let s = 0;
        for (let b = 0; b < 3; b++) s += (inv[a * 3 + b] as number) * (r[b] as number);
        pinv[a * p + i] = s;
      }
    }
  }
  const { coeffs, affine, residual, norms } = tf.tidy(() => {
    const comps = tf.reshape(tf.transpose(tf.reshape(f, [n, p, 2]), [0, 2, 1]), [2 * n, p]); // rows: u₀, v₀, u₁, …
    const coeffs = tf.matMul(comps, tf.tensor2d(pinv, [3, p]), false, true); // [2N, 3]
    const fitted = tf.matMul(coeffs, tf.tensor2d(design, [p, 3]), false, true); // [2N, P]
    const toField = (rows: tf.Tensor2D): tf.Tensor4D =>
      tf.reshape(tf.transpose(tf.reshape(rows, [n, 2, p]), [0, 2, 1]), [n, h, w, 2]) as tf.Tensor4D;
    const affine = toField(fitted as tf.Tensor2D);
    const residual = tf.sub(f, affine) as tf.Tensor4D;
    const norms = tf.stack([tf.sqrt(tf.sum(tf.square(f), [1, 2, 3])), tf.sqrt(tf.sum(tf.square(residual), [1, 2, 3]))]);
    return { coeffs, affine, residual, norms };
  });
  const c = coeffs.dataSync();
  const nv = norms.dataSync();
  coeffs.dispose();
  norms.dispose();
  const params: number[][] = [];
  const residualRatio: number[] = [];
  for (let i = 0; i < n; i++) {
    params.push([
      c[(2 * i) * 3] as number,
      c[(2 * i) * 3 + 1] as number,
      c[(2 * i) * 3 + 2] as number,
      c[(2 * i + 1) * 3] as number,
      c[(2 * i + 1) * 3 + 1] as number,
      c[(2 * i + 1) * 3 + 2] as number,
    ]);
    const total = nv[i] as number;
    residualRatio.push(total > 0 ? Math.min(1, (nv[n + i] as number) / total) : 0);
  }
  return { params, affine, residual, residualRatio };
}

function invert3(m: number[]): number[] {
  const [a, b, c, d, e, f, g, h, i] = m as [number, number, number, number, number, number, number, number, number];
  const A = e * i - f * h;
  const B = -(d * i - f * g);
  const C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (Math.abs(det) < 1e-12) throw new ShapeError('affine fit needs a grid of at least 2×2 pixels');
  return [
    A / det,
    -(b * i - c * h) / det,
    (b * f - c * e) / det,
    B / det,
    (a * i - c * g) / det,
    -(a * f - c * d) / det,
    C / det,
    -(a * h - b * g) / det,
    (a * e - b * d) / det,
  ];
}

/** VBench's dynamic-degree decision for one clip. */
export interface VBenchDynamicResult {
  /** At least `requiredPairs` sampled pairs move. */
  dynamic: boolean;
  /** Pixel threshold on the top-5 % mean magnitude: max(1, 8/fps) · 6 · min(H,W)/256. */
  threshold: number;
  /** Pairs above the threshold. */
  movingPairs: number;
  /** round(4 · count / 16), count = sampled frames. */
  requiredPairs: number;
  /** The per-pair top-5 % mean magnitudes. */
  scores: number[];
  /** Frame interval used for sampling, max(1, round(fps/8)). */
  interval: number;
}

/** VBench's sampling interval for a clip at `fps`: max(1, round(fps/8)). */
export function vbenchInterval(fps: number): number {
  return Math.max(1, pyRound(fps / 8));
}

/**
 * VBench's dynamic test (`DynamicDegree.set_params` + `check_move`) on the top-5 % mean flow
 * magnitudes of consecutive sampled frames. `fps` is the clip's frame rate (VBench passes the
 * source rate, before sampling), `height`/`width` the size the flow was computed at.
 */
export function vbenchDynamic(topMeans: readonly number[], fps: number, height: number, width: number): VBenchDynamicResult {
  if (!(fps > 0 && Number.isFinite(fps))) throw new ConfigError(`fps must be a finite number > 0, got ${fps}`);
  const factor = Math.max(1, 8 / fps);
  const threshold = factor * 6.0 * (Math.min(height, width) / 256);
  const count = topMeans.length + 1;
  const requiredPairs = pyRound(4 * (count / 16));
  const movingPairs = topMeans.filter((s) => s > threshold).length;
  // check_move returns False for an empty score list; otherwise True once count ≥ count_num.
  const dynamic = topMeans.length > 0 && movingPairs >= requiredPairs;
  return { dynamic, threshold, movingPairs, requiredPairs, scores: [...topMeans], interval: vbenchInterval(fps) };
}

/** Configuration of natural-motion filtering. */
export interface NaturalMotionConfig {
  /**
   * data-juicer gate, in pixels at a 256-pixel short side (default 0.25, data-juicer's
   * `min_score`): a clip whose mean flow magnitude (mean over pairs) is below
   * `minMeanMagnitude · min(H,W)/256` is static, and so is each pair below it. `null` disables.
   */
  minMeanMagnitude: number | null;
  /** Apply VBench's dynamic-degree test to the clip (default true). */
  vbenchDynamic: boolean;
  /**
   * τ_ρ: pairs whose residual ratio ρ = ‖F − F_aff‖/‖F‖ is below this are camera-only motion
   * (default 0.3, the reference note's placeholder). `null` disables.
   */
  minResidualRatio: number | null;
}

/** Default {@link NaturalMotionConfig}. */
export const DEFAULT_NATURAL_MOTION_CONFIG: Readonly<NaturalMotionConfig> = Object.freeze({
  minMeanMagnitude: 0.25,
  vbenchDynamic: true,
  minResidualRatio: 0.3,
});

/** Validates and completes a partial {@link NaturalMotionConfig}. */
export function resolveNaturalMotionConfig(c: Partial<NaturalMotionConfig> = {}): NaturalMotionConfig {
  const r = { ...DEFAULT_NATURAL_MOTION_CONFIG, ...c };
  if (r.minMeanMagnitude !== null && !(r.minMeanMagnitude >= 0 && Number.isFinite(r.minMeanMagnitude))) {
    throw new ConfigError(`minMeanMagnitude must be a finite number ≥ 0 or null, got ${String(r.minMeanMagnitude)}`);
  }
  if (r.minResidualRatio !== null && !(r.minResidualRatio >= 0 && r.minResidualRatio <= 1)) {
    throw new ConfigError(`minResidualRatio must be in [0, 1] or null, got ${String(r.minResidualRatio)}`);
  }
  if (typeof r.vbenchDynamic !== 'boolean') throw new ConfigError('vbenchDynamic must be a boolean');
  return r;
}

/** Why a flow pair is excluded from motion similarity. */
export type PairStatus = 'moving' | 'static' | 'camera';

/** The clip-level and pair-level NMF decisions. */
export interface NaturalMotionDecision {
  /** The clip is static (drops out of motion memorization). */
  static: boolean;
  /**
   * Which rules called it static: `'mean-magnitude'` (data-juicer gate), `'vbench-dynamic'`, or
   * `'zero-flow'` (no motion at all, e.g. identical or all-black frames, even with the gates off).
   */
  staticBy: Array<'mean-magnitude' | 'vbench-dynamic' | 'zero-flow'>;
  /** mean over pairs of the mean flow magnitude (pixels of the analysis grid). */
  meanMagnitude: number;
  /** The data-juicer gate in pixels at this resolution (null when disabled). */
  magnitudeGate: number | null;
  /** Per pair: moving, static (below the magnitude gate) or camera-only (ρ < τ_ρ). */
  pairStatus: PairStatus[];
  /** VBench's test (null when disabled or not computable). */
  vbench: VBenchDynamicResult | null;
}

/**
 * Applies the NMF rules to per-pair statistics: `meanMagnitudes` and `residualRatios` of the flows
 * used for OFS, and the VBench result (or null) of the clip. `height`/`width` are the flow grid.
 */
export function naturalMotionDecision(
  meanMagnitudes: readonly number[],
  residualRatios: readonly number[],
  vbench: VBenchDynamicResult | null,
  height: number,
  width: number,
  config: NaturalMotionConfig,
): NaturalMotionDecision {
  if (meanMagnitudes.length !== residualRatios.length) {
    throw new ShapeError(`got ${meanMagnitudes.length} magnitudes but ${residualRatios.length} residual ratios`);
  }
  const gate = config.minMeanMagnitude === null ? null : config.minMeanMagnitude * (Math.min(height, width) / 256);
  const mean = meanMagnitudes.length ? meanMagnitudes.reduce((a, b) => a + b, 0) / meanMagnitudes.length : 0;
  const staticBy: NaturalMotionDecision['staticBy'] = [];
  if (gate !== null && mean < gate) staticBy.push('mean-magnitude');
  if (config.vbenchDynamic && vbench && !vbench.dynamic) staticBy.push('vbench-dynamic');
  if (mean === 0) staticBy.push('zero-flow');
  const pairStatus: PairStatus[] = meanMagnitudes.map((m, i) => {
    if (gate !== null && m < gate) return 'static';
    if (m === 0) return 'static';
    if (config.minResidualRatio !== null && (residualRatios[i] as number) < config.minResidualRatio) return 'camera';
    return 'moving';
  });
  return {
    static: staticBy.length > 0,
    staticBy,
    meanMagnitude: mean,
    magnitudeGate: gate,
    pairStatus,
    vbench: config.vbenchDynamic ? vbench : null,
  };
}
