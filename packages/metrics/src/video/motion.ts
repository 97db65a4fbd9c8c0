/**
 * Motion memorization of video diffusion models: OFS-k, the optical-flow similarity between a
 * generated clip and training clips, on camera-motion-compensated flow with natural-motion
 * filtering (Chen et al., arXiv 2410.21669; reconstruction of `video-memorization.md` §3).
 *
 * With flows F^G_i = flow(g_i, g_{i+1}) and F^R_j likewise, resampled to one grid, camera motion
 * removed (F − F_aff, see `natural_motion.ts`) and pooled to a small descriptor grid, the flow-field
 * cosine is
 *
 * ```
 * c(F, F') = Σ_p (u_p u'_p + v_p v'_p) / (‖F‖₂ ‖F'‖₂)
 * ```
 *
 * and c = 0 for pairs NMF excludes (static or camera-only), so natural motion contributes no
 * evidence. The paper does not say what k is; the three readings of the reference note are all
 * available:
 *
 * - `'run'` (default): the best temporally aligned run of k consecutive flows,
 *   `OFS-k = max_{a,b} (1/k) Σ_{l<k} c(F^G_{a+l}, F^R_{b+l})`;
 * - `'topk'`: the mean of the k largest pair similarities c(F^G_i, F^R_j) over all (i, j)
 *   (missing pairs count 0 when there are fewer than k);
 * - `'stride'`: k is the frame stride: flows are computed between g_i and g_{i+k} (analyse with
 *   `stride: k`) and the score is the best single pair, max_{i,j} c(F^G_i, F^R_j).
 *
 * Clips are resampled to a common analysis grid (documented resampling: any frame size is
 * accepted) and, when the analyser has an `fps`, to a common frame rate by nearest-frame selection;
 * otherwise clips with different known frame rates are refused (`FRAME_RATE_MISMATCH`).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, ShapeError, type FlowField, type Video } from '@diffmem/core';
import { resizeAntialiased } from '../embedders/preprocess.js';
import type { ReferenceId } from '../index_storage.js';
import { clipFlow, toLuma, type FlowEstimator } from './flow/estimator.js';
import { HornSchunckFlow, type HornSchunckConfig } from './flow/horn_schunck.js';
import { resizeFlow } from './flow/ops.js';
import {
  assertFiniteFlow,
  fitAffineFlow,
  flowMagnitudeStats,
  naturalMotionDecision,
  resolveNaturalMotionConfig,
  vbenchDynamic,
  vbenchInterval,
  type NaturalMotionConfig,
  type NaturalMotionDecision,
} from './natural_motion.js';
import { checkClip, checkFps, checkInteger, checkNumber, readTensor } from './validate.js';

/** A clip for motion analysis: frames [T,H,W,C] in display space, with its frame rate if known. */
export type MotionClip = Video<'display'> | tf.Tensor | { frames: Video<'display'> | tf.Tensor; fps?: number };

/** Configuration of {@link MotionAnalyzer}. */
export interface MotionAnalyzerConfig {
  /** Analysis grid [H, W]: every clip is resized (antialiased) to it before flow (default [64, 64]). */
  size: [number, number];
  /** Grid the residual flow is pooled to before the cosine (default [16, 16]: 512-d descriptors). */
  descriptorSize: [number, number];
  /** Frame distance of the flows (default 1: consecutive frames; use k for the `'stride'` reading). */
  stride: number;
  /**
   * Analysis frame rate. When set, clips that give `fps` are resampled to it by nearest-frame
   * selection (frame ⌊i·fps_clip/fps + ½⌋ for output frame i); a clip below it is refused
   * (`FRAME_RATE_TOO_LOW`: frames cannot be invented); clips without `fps` are taken to be at it.
   * When null (default), no resampling happens and profiles with different known rates cannot be
   * compared.
   */
  fps: number | null;
  /** Dense flow method (default {@link HornSchunckFlow} with {@link MOTION_FLOW_CONFIG}). */
  estimator: FlowEstimator;
  /** Natural-motion filtering (see `natural_motion.ts`). */
  naturalMotion: NaturalMotionConfig;
}

/** Why a motion score is undefined. */
export type MotionUndefinedReason =
  /** The clip has one frame: there is no flow. */
  | 'single-frame'
  /** The clip has ≤ stride frames: no frame pair at that stride. */
  | 'too-few-frames'
  /** NMF found the clip static (e.g. a memorized still image). */
  | 'static'
  /** Every flow pair is static or camera-only motion. */
  | 'natural-motion';

/** The motion of one clip, ready for OFS (plain numbers; no tensors to dispose). */
export interface MotionProfile {
  /** Frames after temporal resampling. */
  frames: number;
  /** Frames handed in. */
  sourceFrames: number;
  /** Frame rate of the analysed frames (null when unknown). */
  fps: number | null;
  stride: number;
  size: readonly [number, number];
  descriptorSize: readonly [number, number];
  /** Number of flow pairs (frames − stride, or 0). */
  pairs: number;
  /** Mean flow magnitude of each pair, pixels of the analysis grid. */
  meanMagnitude: number[];
  /** ρ = ‖F − F_aff‖/‖F‖ of each pair. */
  residualRatio: number[];
  /** NMF decisions (null when the clip has no flow pair). */
  naturalMotion: NaturalMotionDecision | null;
  /** Why this clip has no motion score, or null. */
  undefinedReason: MotionUndefinedReason | null;
  /** Row-major [pairs, dim] L2-normalised residual-flow descriptors; zero rows for excluded pairs. */
  descriptors: Float32Array;
  dim: number;
  /** Name of the flow estimator. */
  estimator: string;
}

/**
 * Horn–Schunck settings of the analyser's default estimator: 2 warps × 30 iterations and a 3×3
 * median, about 2.5× faster than the estimator's own defaults for +0.06 px EPE against Farnebäck on
 * the Megamind fixture (0.80 vs 0.74 px; flow similarity needs direction, not sub-pixel accuracy).
 */
export const MOTION_FLOW_CONFIG: Readonly<Partial<HornSchunckConfig>> = Object.freeze({ warps: 2, iterations: 30, medianSize: 3 });

/** Default {@link MotionAnalyzerConfig} (the estimator is created per analyser). */
export const DEFAULT_MOTION_ANALYZER_CONFIG: Readonly<Omit<MotionAnalyzerConfig, 'estimator'>> = Object.freeze({
  size: [64, 64] as [number, number],
  descriptorSize: [16, 16] as [number, number],
  stride: 1,
  fps: null,
  naturalMotion: resolveNaturalMotionConfig(),
});

function unpackClip(clip: MotionClip): { frames: tf.Tensor; fps: number | undefined } {
  if (clip instanceof tf.Tensor) return { frames: clip, fps: undefined };
  if (clip && typeof clip === 'object' && 'frames' in clip) return { frames: clip.frames, fps: checkFps(clip.fps, 'clip fps') };
  throw new ShapeError('a motion clip must be a [T,H,W,C] tensor or { frames, fps? }');
}

/** Computes {@link MotionProfile}s: frames → flow → NMF → camera-compensated descriptors. */
export class MotionAnalyzer {
  readonly config: Readonly<MotionAnalyzerConfig>;

  constructor(config: Partial<Omit<MotionAnalyzerConfig, 'naturalMotion'>> & { naturalMotion?: Partial<NaturalMotionConfig> } = {}) {
    const c: MotionAnalyzerConfig = {
      ...DEFAULT_MOTION_ANALYZER_CONFIG,
      estimator: config.estimator ?? new HornSchunckFlow(MOTION_FLOW_CONFIG),
      ...Object.fromEntries(Object.entries(config).filter(([k, v]) => v !== undefined && k !== 'naturalMotion' && k !== 'estimator')),
      naturalMotion: resolveNaturalMotionConfig(config.naturalMotion),
    } as MotionAnalyzerConfig;
    for (const key of ['size', 'descriptorSize'] as const) {
      const v = c[key];
      if (!Array.isArray(v) || v.length !== 2 || !v.every((d) => Number.isInteger(d) && d >= 2)) {
        throw new ConfigError(`${key} must be [height, width] with integers ≥ 2, got ${JSON.stringify(v)}`);
      }
    }
    if (c.size[0] < 8 || c.size[1] < 8) throw new ConfigError(`size must be at least 8×8 for flow estimation, got ${c.size.join('×')}`);
    if (c.descriptorSize[0] > c.size[0] || c.descriptorSize[1] > c.size[1]) {
      throw new ConfigError(`descriptorSize ${c.descriptorSize.join('×')} must not exceed size ${c.size.join('×')}`);
    }
    checkInteger(c.stride, 'stride');
    if (c.fps !== null) checkFps(c.fps, 'fps');
    if (!c.estimator || typeof c.estimator.estimate !== 'function') throw new ConfigError('estimator must implement FlowEstimator');
    this.config = Object.freeze(c);
  }

  /** Descriptor length: 2 · descriptor height · descriptor width. */
  get dim(): number {
    return 2 * this.config.descriptorSize[0] * this.config.descriptorSize[1];
  }

  /**
   * Profiles a clip. A clip with fewer than stride + 1 frames (e.g. a single frame or a training
   * image) gets a profile with no pairs and `undefinedReason` `'single-frame'`/`'too-few-frames'`.
   */
  analyze(clip: MotionClip): MotionProfile {
    const { frames, fps: clipFps } = unpackClip(clip);
    const { clip: x } = checkClip(frames, 'clip');
    const c = this.config;
    const indices = this.resampleIndices(x.shape[0], clipFps);
    const fps = c.fps ?? clipFps ?? null;
    const t = indices.length;
    if (t <= c.stride) return this.emptyProfile(t, x.shape[0], fps, t === 1 ? 'single-frame' : 'too-few-frames');
    const gray = tf.tidy(() => {
      const picked = indices.length === x.shape[0] ? x : tf.gather(x, tf.tensor1d(indices, 'int32'));
      return tf.clipByValue(resizeAntialiased(toLuma(picked as tf.Tensor4D), c.size[0], c.size[1]), 0, 1) as tf.Tensor4D;
    });
    let flows: FlowField | null = null;
    try {
      flows = clipFlow(gray as Video<'display'>, c.estimator, { stride: c.stride });
      const vbenchTop = c.naturalMotion.vbenchDynamic ? this.vbenchScores(gray, flows, fps ?? 8) : null;
      return this.profileFromGridFlows(flows, vbenchTop, t, x.shape[0], fps);
    } finally {
      gray.dispose();
      flows?.dispose();
    }
  }

  /**
   * Profiles precomputed flows [P,H,W,2] (e.g. RAFT at the source resolution): they are resampled
   * to the analysis grid (vectors rescaled). The VBench test, when enabled, is applied to these
   * flows as given (supply flows at VBench's ~8 fps sampling for the exact test). NaN/Inf flows
   * raise `NonFiniteError` (from `@diffmem/core`).
   */
  analyzeFlows(flow: FlowField | tf.Tensor, options: { fps?: number } = {}): MotionProfile {
    if (!(flow instanceof tf.Tensor) || flow.rank !== 4 || flow.shape[3] !== 2 || flow.shape[0] === 0) {
      throw new ShapeError(`flow must be a non-empty [P,H,W,2] tensor, got ${flow instanceof tf.Tensor ? `[${flow.shape.join(',')}]` : typeof flow}`);
    }
    assertFiniteFlow(flow);
    const fps = checkFps(options.fps, 'fps') ?? this.config.fps ?? null;
    const grid = resizeFlow(flow as tf.Tensor4D, this.config.size[0], this.config.size[1]);
    try {
      const vbenchTop = this.config.naturalMotion.vbenchDynamic ? flowMagnitudeStats(grid).topMean : null;
      const frames = flow.shape[0] + this.config.stride;
      return this.profileFromGridFlows(grid as FlowField, vbenchTop, frames, frames, fps);
    } finally {
      grid.dispose();
    }
  }

  private resampleIndices(t: number, clipFps: number | undefined): number[] {
    const target = this.config.fps;
    const all = Array.from({ length: t }, (_, i) => i);
    if (target === null || clipFps === undefined || Math.abs(clipFps - target) < 1e-6 * target) return all;
    if (clipFps < target - 1e-6 * target) {
      throw new InputError(
        'FRAME_RATE_TOO_LOW',
        `clip is at ${clipFps} fps, below the analysis rate of ${target} fps; frames cannot be invented (use a lower MotionAnalyzer fps)`,
        { clipFps, target },
      );
    }
    const out: number[] = [];
    for (let i = 0; ; i++) {
      const j = Math.floor((i * clipFps) / target + 0.5);
      if (j >= t) break;
      out.push(j);
    }
    return out;
  }

  /** VBench's per-pair top-5 % magnitudes on frames sampled every round(fps/8) frames. */
  private vbenchScores(gray: tf.Tensor4D, flows: FlowField, fps: number): number[] {
    const interval = vbenchInterval(fps);
    const t = gray.shape[0];
    const sampled: number[] = [];
    for (let i = 0; i < t; i += interval) sampled.push(i);
    if (sampled.length < 2) return [];
    if (interval === this.config.stride) {
      // The stride-k flows already contain VBench's pairs (0,k), (k,2k), …
      const subset = tf.tidy(() => tf.gather(flows, tf.tensor1d(sampled.slice(0, -1), 'int32')));
      try {
        return flowMagnitudeStats(subset as tf.Tensor4D).topMean;
      } finally {
        subset.dispose();
      }
    }
    const frames = tf.tidy(() => tf.gather(gray, tf.tensor1d(sampled, 'int32')));
    let f: FlowField | null = null;
    try {
      f = clipFlow(frames as unknown as Video<'display'>, this.config.estimator, { stride: 1 });
      return flowMagnitudeStats(f).topMean;
    } finally {
      frames.dispose();
      f?.dispose();
    }
  }

  private emptyProfile(frames: number, sourceFrames: number, fps: number | null, reason: MotionUndefinedReason): MotionProfile {
    const c = this.config;
    return {
      frames,
      sourceFrames,
      fps,
      stride: c.stride,
      size: c.size,
      descriptorSize: c.descriptorSize,
      pairs: 0,
      meanMagnitude: [],
      residualRatio: [],
      naturalMotion: null,
      undefinedReason: reason,
      descriptors: new Float32Array(0),
      dim: this.dim,
      estimator: c.estimator.name,
    };
  }

  private profileFromGridFlows(
    flows: FlowField,
    vbenchTop: number[] | null,
    frames: number,
    sourceFrames: number,
    fps: number | null,
  ): MotionProfile {
    const c = this.config;
    const [h, w] = c.size;
    const stats = flowMagnitudeStats(flows);
    const fit = fitAffineFlow(flows);
    const vb = vbenchTop === null ? null : vbenchDynamic(vbenchTop, fps ?? 8, h, w);
    const nmf = naturalMotionDecision(stats.mean, fit.residualRatio, vb, h, w, c.naturalMotion);
    const pairs = flows.shape[0];
    const keep = nmf.pairStatus.map((s) => (!nmf.static && s === 'moving' ? 1 : 0));
    let descriptors: Float32Array;
    try {
      const [dh, dw] = c.descriptorSize;
      descriptors = readTensor(() => {
        const pooled = tf.reshape(resizeAntialiased(fit.residual, dh, dw), [pairs, 2 * dh * dw]);
        const norm = tf.norm(pooled, 2, 1, true);
        // Zero-norm residuals (no object motion) stay zero rows: their cosine is defined as 0.
        const unit = tf.div(pooled, tf.maximum(norm, 1e-12));
        return tf.mul(unit, tf.tensor2d(keep, [pairs, 1]));
      });
    } finally {
      fit.affine.dispose();
      fit.residual.dispose();
    }
    let undefinedReason: MotionUndefinedReason | null = null;
    if (nmf.static) undefinedReason = 'static';
    else if (keep.every((k) => k === 0)) undefinedReason = 'natural-motion';
    return {
      frames,
      sourceFrames,
      fps,
      stride: c.stride,
      size: c.size,
      descriptorSize: c.descriptorSize,
      pairs,
      meanMagnitude: stats.mean,
      residualRatio: fit.residualRatio,
      naturalMotion: nmf,
      undefinedReason,
      descriptors,
      dim: this.dim,
      estimator: c.estimator.name,
    };
  }
}

/** The three readings of "k" in OFS-k. */
export type OfsReading = 'run' | 'topk' | 'stride';

/** Options of {@link ofs} and {@link MotionReferenceIndex.score}. */
export interface OfsOptions {
  /** Which reading of k (default `'run'`). */
  reading?: OfsReading;
  /** k (default 4 for `'run'`/`'topk'`; for `'stride'` it must equal the profiles' stride). */
  k?: number;
}

/** Why an OFS value is undefined. */
export type OfsUndefinedReason = MotionUndefinedReason | 'too-short';

/** OFS between two profiles. */
export interface OfsResult {
  /** The similarity in [−1, 1], or null when undefined (see `reason`). */
  score: number | null;
  reason: OfsUndefinedReason | null;
  /** Which clip made it undefined. */
  side: 'generated' | 'reference' | null;
  reading: OfsReading;
  k: number;
  /**
   * Where the best match is: the first generated and reference flow pair of the best run
   * (`'run'`), of the best pair (`'stride'`), or of the best of the top-k pairs (`'topk'`).
   */
  generatedPair: number;
  referencePair: number;
}

function checkCompatible(a: MotionProfile, b: MotionProfile): void {
  if (a.dim !== b.dim || a.size[0] !== b.size[0] || a.size[1] !== b.size[1] || a.descriptorSize.join() !== b.descriptorSize.join()) {
    throw new ConfigError('motion profiles come from analysers with different grids; analyse both clips with one MotionAnalyzer');
  }
  if (a.stride !== b.stride) throw new ConfigError(`motion profiles have different strides (${a.stride} and ${b.stride})`);
  if (a.fps !== null && b.fps !== null && Math.abs(a.fps - b.fps) > 1e-6 * Math.max(a.fps, b.fps)) {
    throw new InputError(
      'FRAME_RATE_MISMATCH',
      `clips were analysed at different frame rates (${a.fps} and ${b.fps} fps); give the MotionAnalyzer an fps to resample both`,
      { generated: a.fps, reference: b.fps },
    );
  }
}

function resolveOfsOptions(options: OfsOptions, stride: number): { reading: OfsReading; k: number } {
  const reading = options.reading ?? 'run';
  if (reading !== 'run' && reading !== 'topk' && reading !== 'stride') {
    throw new ConfigError(`reading must be 'run', 'topk' or 'stride', got ${String(reading)}`);
  }
  const k = checkInteger(options.k ?? (reading === 'stride' ? stride : 4), 'k');
  if (reading === 'stride' && k !== stride) {
    throw new ConfigError(`the 'stride' reading needs profiles analysed with stride k = ${k} (they have stride ${stride})`, { k, stride });
  }
  return { reading, k };
}

/**
 * Applies a reading to a pair-similarity matrix c [P, Q] (row-major).
 * Returns null for `'run'` when either clip has fewer than k pairs.
 */
export function ofsFromSimilarities(
  c: ArrayLike<number>,
  p: number,
  q: number,
  reading: OfsReading,
  k: number,
): { score: number; generatedPair: number; referencePair: number } | null {
  if (reading === 'run') {
    if (p < k || q < k) return null;
    let best = -Infinity;
    let ba = 0;
    let bb = 0;
    for (let a = 0; a + k <= p; a++) {
      for (let b = 0; b + k <= q; b++) {
        let s = 0;
        for (let l = 0; l < k; l++) s += c[(a + l) * q + b + l] as number;
        if (s > best) {
          best = s;
          ba = a;
          bb = b;
        }
      }
    }
    return { score: best / k, generatedPair: ba, referencePair: bb };
  }
  if (reading === 'stride') {
    let best = -Infinity;
    let bi = 0;
    for (let i = 0; i < p * q; i++) {
      if ((c[i] as number) > best) {
        best = c[i] as number;
        bi = i;
      }
    }
    return { score: best, generatedPair: Math.floor(bi / q), referencePair: bi % q };
  }
  // topk: mean of the k largest entries; fewer than k entries → the missing ones count 0.
  const order = Array.from({ length: p * q }, (_, i) => i).sort((x, y) => (c[y] as number) - (c[x] as number));
  let s = 0;
  const m = Math.min(k, order.length);
  for (let i = 0; i < m; i++) s += c[order[i] as number] as number;
  const top = order[0] as number;
  return { score: s / k, generatedPair: Math.floor(top / q), referencePair: top % q };
}

function pairSimilarities(g: MotionProfile, r: MotionProfile): Float32Array {
  const out = new Float32Array(g.pairs * r.pairs);
  const d = g.dim;
  for (let i = 0; i < g.pairs; i++) {
    for (let j = 0; j < r.pairs; j++) {
      let s = 0;
      for (let e = 0; e < d; e++) s += (g.descriptors[i * d + e] as number) * (r.descriptors[j * d + e] as number);
      out[i * r.pairs + j] = s;
    }
  }
  return out;
}

/** OFS-k between a generated and a reference profile (see the module documentation). */
export function ofs(generated: MotionProfile, reference: MotionProfile, options: OfsOptions = {}): OfsResult {
  checkCompatible(generated, reference);
  const { reading, k } = resolveOfsOptions(options, generated.stride);
  const undefinedResult = (reason: OfsUndefinedReason, side: 'generated' | 'reference'): OfsResult => ({
    score: null,
    reason,
    side,
    reading,
    k,
    generatedPair: -1,
    referencePair: -1,
  });
  if (generated.undefinedReason) return undefinedResult(generated.undefinedReason, 'generated');
  if (reference.undefinedReason) return undefinedResult(reference.undefinedReason, 'reference');
  const c = pairSimilarities(generated, reference);
  const r = ofsFromSimilarities(c, generated.pairs, reference.pairs, reading, k);
  if (!r) return undefinedResult('too-short', generated.pairs < k ? 'generated' : 'reference');
  return { score: r.score, reason: null, side: null, reading, k, generatedPair: r.generatedPair, referencePair: r.referencePair };
}

/** One reference's OFS in a {@link MotionReferenceIndex} query. */
export interface ClipMotionScore {
  referenceId: ReferenceId;
  ofs: number;
  generatedPair: number;
  referencePair: number;
}

/** Options of {@link MotionReferenceIndex.score}. */
export interface MotionScoreOptions extends OfsOptions {
  /**
   * τ_m: flag motion memorization when the score is ≥ this (default 0.5, a placeholder: the
   * paper's value is not confirmed; calibrate with {@link thresholdAtFpr}).
   */
  threshold?: number;
  /** References reported in `topClips` (default 5). */
  topK?: number;
}

/** Result of {@link MotionReferenceIndex.score}. */
export interface MotionScoreResult {
  /** max over references of OFS-k, or null (see `reason`). */
  score: number | null;
  /**
   * Why there is no score: the generated clip's {@link MotionUndefinedReason}, `'too-short'`
   * (fewer than k pairs for the run reading), or `'no-motion-references'` (no reference with
   * defined motion and enough pairs).
   */
  reason: OfsUndefinedReason | 'no-motion-references' | null;
  /** score ≥ threshold (false when the score is null). */
  memorized: boolean;
  threshold: number;
  /** The best reference and alignment (null when there is no score). */
  match: ClipMotionScore | null;
  topClips: ClipMotionScore[];
  /** References with a defined motion profile that were compared. */
  comparedReferences: number;
  /** References skipped: static, natural motion only, too few frames/pairs. */
  skippedReferences: number;
  /** The generated clip's profile (its NMF decisions explain a null score). */
  generated: MotionProfile;
  reading: OfsReading;
  k: number;
}

interface StoredMotionRef {
  id: ReferenceId;
  profile: MotionProfile;
  /** First descriptor row in the matrix. */
  start: number;
}

/**
 * Motion profiles of training clips, with their residual-flow descriptors in one matrix so a query
 * is one matrix product ([P, D] × [D, rows]) followed by the OFS reading per reference.
 */
export class MotionReferenceIndex {
  readonly analyzer: MotionAnalyzer;
  private readonly refs: StoredMotionRef[] = [];
  private readonly byId = new Set<ReferenceId>();
  private rows = 0;
  private chunks: Float32Array[] = [];
  private matrix: tf.Tensor2D | null = null;
  private disposed = false;

  constructor(analyzer: MotionAnalyzer) {
    if (!(analyzer instanceof MotionAnalyzer)) throw new ConfigError('MotionReferenceIndex needs a MotionAnalyzer');
    this.analyzer = analyzer;
  }

  /** Number of references. */
  get size(): number {
    return this.refs.length;
  }

  /** References and their profiles, in insertion order. */
  get references(): ReadonlyArray<{ id: ReferenceId; profile: MotionProfile }> {
    return this.refs;
  }

  /**
   * Adds a training clip (analysed with the index's analyser) or a profile made by an analyser
   * with the same grid; returns the profile. Clips without defined motion are kept (and reported
   * as skipped by queries).
   */
  add(id: ReferenceId, clip: MotionClip | MotionProfile): MotionProfile {
    if (this.disposed) throw new InputError('INDEX_DISPOSED', 'this MotionReferenceIndex has been disposed');
    if (typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id))) {
      throw new ConfigError(`reference id must be a string or a finite number, got ${String(id)}`);
    }
    if (this.byId.has(id)) throw new ConfigError(`reference id ${JSON.stringify(id)} is already in the index`, { id });
    const profile = isProfile(clip) ? clip : this.analyzer.analyze(clip);
    if (isProfile(clip)) checkCompatible(this.emptyLike(), { ...profile, fps: null });
    this.byId.add(id);
    this.refs.push({ id, profile, start: this.rows });
    this.rows += profile.pairs;
    if (profile.pairs > 0) this.chunks.push(profile.descriptors);
    this.matrix?.dispose();
    this.matrix = null;
    return profile;
  }

  /** Frees the descriptor matrix; the index cannot be used afterwards. */
  dispose(): void {
    this.matrix?.dispose();
    this.matrix = null;
    this.chunks = [];
    this.disposed = true;
  }

  /**
   * Motion memorization score of a generated clip: max over references of OFS-k, with the best
   * reference and alignment. Undefined motion gives `score: null` and a reason, never NaN.
   */
  score(generated: MotionClip | MotionProfile, options: MotionScoreOptions = {}): MotionScoreResult {
    if (this.disposed) throw new InputError('INDEX_DISPOSED', 'this MotionReferenceIndex has been disposed');
    const g = isProfile(generated) ? generated : this.analyzer.analyze(generated);
    const { reading, k } = resolveOfsOptions(options, g.stride);
    const threshold = checkNumber(options.threshold ?? 0.5, 'threshold', -1, 1);
    const topK = checkInteger(options.topK ?? 5, 'topK');
    const base = { threshold, generated: g, reading, k, topClips: [] as ClipMotionScore[], match: null, memorized: false };
    const candidates = this.refs.filter((r) => r.profile.undefinedReason === null);
    for (const r of candidates) checkCompatible(g, r.profile);
    if (g.undefinedReason) {
      return { ...base, score: null, reason: g.undefinedReason, comparedReferences: 0, skippedReferences: this.refs.length };
    }
    if (reading === 'run' && g.pairs < k) {
      return { ...base, score: null, reason: 'too-short', comparedReferences: 0, skippedReferences: this.refs.length };
    }
    const scored: ClipMotionScore[] = [];
    if (candidates.length > 0) {
      const sim = this.similarities(g); // [P, rows]
      const p = g.pairs;
      for (const r of candidates) {
        const q = r.profile.pairs;
        const block = new Float32Array(p * q);
        for (let i = 0; i < p; i++) block.set(sim.subarray(i * this.rows + r.start, i * this.rows + r.start + q), i * q);
        const res = ofsFromSimilarities(block, p, q, reading, k);
        if (res) scored.push({ referenceId: r.id, ofs: res.score, generatedPair: res.generatedPair, referencePair: res.referencePair });
      }
    }
    scored.sort((a, b) => b.ofs - a.ofs);
    const best = scored[0];
    if (!best) {
      return { ...base, score: null, reason: 'no-motion-references', comparedReferences: 0, skippedReferences: this.refs.length };
    }
    return {
      ...base,
      score: best.ofs,
      reason: null,
      memorized: best.ofs >= threshold,
      match: best,
      topClips: scored.slice(0, topK),
      comparedReferences: scored.length,
      skippedReferences: this.refs.length - scored.length,
    };
  }

  private similarities(g: MotionProfile): Float32Array {
    if (!this.matrix) {
      const all = new Float32Array(this.rows * this.analyzer.dim);
      let off = 0;
      for (const ch of this.chunks) {
        all.set(ch, off);
        off += ch.length;
      }
      this.matrix = tf.tensor2d(all, [this.rows, this.analyzer.dim]);
    }
    const m = this.matrix;
    return readTensor(() => tf.matMul(tf.tensor2d(g.descriptors, [g.pairs, g.dim]), m, false, true));
  }

  private emptyLike(): MotionProfile {
    const c = this.analyzer.config;
    return {
      frames: 0,
      sourceFrames: 0,
      fps: null,
      stride: c.stride,
      size: c.size,
      descriptorSize: c.descriptorSize,
      pairs: 0,
      meanMagnitude: [],
      residualRatio: [],
      naturalMotion: null,
      undefinedReason: null,
      descriptors: new Float32Array(0),
      dim: this.analyzer.dim,
      estimator: c.estimator.name,
    };
  }
}

function isProfile(x: unknown): x is MotionProfile {
  return !!x && typeof x === 'object' && !(x instanceof tf.Tensor) && (x as MotionProfile).descriptors instanceof Float32Array;
}
