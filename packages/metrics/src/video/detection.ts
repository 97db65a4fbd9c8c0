/**
 * Inference-time detection of content and motion memorization from a video diffusion model's
 * conditional and unconditional noise predictions, without training data.
 *
 * Chen et al. (arXiv 2410.21669) propose "detection strategies that leverage content and motion
 * magnitudes", adaptations of the image detector of Wen et al. (ICLR 2024), which flags a prompt
 * when the text-conditional noise-prediction magnitude d_t = ‖ε_θ(x_t, c) − ε_θ(x_t, ∅)‖₂ is large
 * (`noise_pred_text − noise_pred_uncond`, then `.norm(p=2)` per sample and step). The paper's video
 * formulas are not confirmed; this module implements the reconstruction of `video-memorization.md`
 * §5, with δ_t = ε_θ(x_t, c) − ε_θ(x_t, ∅) of shape [F, …] (frames first) and T₀ the early steps:
 *
 * ```
 * content magnitude  D_c = mean_{t∈T₀} ‖δ_t‖₂
 * per-frame          D_f = mean_{t∈T₀} max_f ‖δ_t[f]‖₂        (catches a single copied frame)
 * motion magnitude   D_m = mean_{t∈T₀} ‖δ_t[2:F] − δ_t[1:F−1]‖₂ (temporal difference of the guidance)
 * ```
 *
 * Flag when D > τ, with τ calibrated at a target FPR on prompts known not to be memorized
 * ({@link calibrateDetector}; AUC and TPR@1%FPR use the package's ROC helpers, Wen et al.'s
 * conventions). Norms are raw L2 norms (as Wen et al.), so scores depend on the latent size:
 * compare and calibrate at one resolution and frame count.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, NonFiniteError, ShapeError } from '@diffmem/core';
import { detectionSummary, thresholdAtFpr } from '../roc.js';
import { readTensor } from './validate.js';

/** Norms of one sampling step, per clip of the batch. */
export interface StepMagnitudes {
  /** ‖δ_t‖₂ per clip. */
  content: number[];
  /** ‖δ_t[f]‖₂ per clip and frame. */
  perFrame: number[][];
  /** ‖δ_t[1:] − δ_t[:−1]‖₂ per clip (null when the clip has one frame). */
  motion: Array<number | null>;
}

/**
 * The guidance difference δ_t = ε_θ(x_t, c) − ε_θ(x_t, ∅) of one step (a new tensor). Shapes must
 * match; frames first ([F, …] for one clip, [B, F, …] for a batch).
 */
export function guidanceDelta(conditional: tf.Tensor, unconditional: tf.Tensor): tf.Tensor {
  for (const [t, name] of [
    [conditional, 'conditional prediction'],
    [unconditional, 'unconditional prediction'],
  ] as const) {
    if (!(t instanceof tf.Tensor)) throw new ShapeError(`${name} must be a tf.Tensor`);
  }
  if (conditional.shape.join(',') !== unconditional.shape.join(',')) {
    throw new ShapeError(
      `conditional [${conditional.shape.join(',')}] and unconditional [${unconditional.shape.join(',')}] predictions must have the same shape`,
    );
  }
  return tf.sub(conditional, unconditional);
}

/**
 * Norms of one step's δ_t: `[F, …]` (one clip, rank ≥ 2) or, with `batched: true`, `[B, F, …]`.
 * One read-back; throws {@link NonFiniteError} on NaN/Inf.
 */
export function stepMagnitudes(delta: tf.Tensor, options: { batched?: boolean } = {}): StepMagnitudes {
  if (!(delta instanceof tf.Tensor)) throw new ShapeError('delta must be a tf.Tensor');
  const batched = options.batched ?? false;
  const minRank = batched ? 3 : 2;
  if (delta.rank < minRank || delta.size === 0) {
    throw new ShapeError(
      `delta must be ${batched ? '[B, F, …]' : '[F, …]'} (frames first, rank ≥ ${minRank}), got [${delta.shape.join(',')}]`,
      { actual: delta.shape },
    );
  }
  const b = batched ? (delta.shape[0] as number) : 1;
  const f = delta.shape[batched ? 1 : 0] as number;
  const per = delta.size / (b * f);
  // values: [B·F] squared frame norms, then [B] squared motion norms (when F > 1), then a NaN count.
  const v = readTensor(() => {
    const x = tf.reshape(delta.dtype === 'float32' ? delta : tf.cast(delta, 'float32'), [b, f, per]);
    const frameSq = tf.reshape(tf.sum(tf.square(x), 2), [b * f]);
    const bad = tf.reshape(tf.sum(tf.cast(tf.logicalNot(tf.isFinite(x)), 'float32')), [1]);
    if (f === 1) return tf.concat([frameSq, bad]);
    const diff = tf.sub(tf.slice(x, [0, 1, 0], [b, f - 1, per]), tf.slice(x, [0, 0, 0], [b, f - 1, per]));
    return tf.concat([frameSq, tf.sum(tf.square(diff), [1, 2]), bad]);
  });
  const bad = v[v.length - 1] as number;
  if (bad > 0) throw new NonFiniteError(`delta contains ${bad} non-finite value(s) (NaN or Infinity)`, { count: bad });
  const out: StepMagnitudes = { content: [], perFrame: [], motion: [] };
  for (let i = 0; i < b; i++) {
    const frames: number[] = [];
    let total = 0;
    for (let j = 0; j < f; j++) {
      const sq = v[i * f + j] as number;
      total += sq;
      frames.push(Math.sqrt(sq));
    }
    out.content.push(Math.sqrt(total));
    out.perFrame.push(frames);
    out.motion.push(f > 1 ? Math.sqrt(v[b * f + i] as number) : null);
  }
  return out;
}

/** Detector scores per clip (averaged over the tracked steps). */
export interface VideoMagnitudeResult {
  /** D_c per clip. */
  content: number[];
  /** D_f (per-frame max) per clip. */
  perFrameMax: number[];
  /** D_m per clip; null for one-frame clips (no temporal difference), see `motionReason`. */
  motion: Array<number | null>;
  /** `'single-frame'` when the motion magnitude is undefined, else null. */
  motionReason: 'single-frame' | null;
  /** Number of steps averaged. */
  steps: number;
  /** The per-step norms, in the order tracked. */
  perStep: StepMagnitudes[];
}

/**
 * Accumulates the magnitudes of each sampling step inside a sampler loop, keeping only numbers
 * (no tensors), then averages them over the steps: call {@link track} (or {@link trackDelta}) at
 * every step of T₀ (e.g. the first 1–10 steps), then {@link result}.
 */
export class VideoMagnitudeTracker {
  private readonly steps: StepMagnitudes[] = [];
  private readonly batched: boolean;

  /** @param options.batched inputs are [B, F, …] (default false: [F, …], one clip). */
  constructor(options: { batched?: boolean } = {}) {
    this.batched = options.batched ?? false;
  }

  /** Records one step from the two noise predictions (not disposed). */
  track(conditional: tf.Tensor, unconditional: tf.Tensor): StepMagnitudes {
    const delta = guidanceDelta(conditional, unconditional);
    try {
      return this.trackDelta(delta);
    } finally {
      delta.dispose();
    }
  }

  /** Records one step from δ_t directly (not disposed). */
  trackDelta(delta: tf.Tensor): StepMagnitudes {
    const m = stepMagnitudes(delta, { batched: this.batched });
    const first = this.steps[0];
    if (first && (first.content.length !== m.content.length || (first.perFrame[0]?.length ?? 0) !== (m.perFrame[0]?.length ?? 0))) {
      throw new ShapeError('every tracked step must have the same batch size and frame count');
    }
    this.steps.push(m);
    return m;
  }

  /** Number of steps recorded. */
  get count(): number {
    return this.steps.length;
  }

  /** The averaged scores (throws `InputError('NO_STEPS')` before the first step). */
  result(): VideoMagnitudeResult {
    return summarize(this.steps);
  }
}

function summarize(steps: StepMagnitudes[]): VideoMagnitudeResult {
  const first = steps[0];
  if (!first) throw new InputError('NO_STEPS', 'no sampling step was tracked: pass at least one δ_t');
  const b = first.content.length;
  const mean = (get: (s: StepMagnitudes) => number): number => steps.reduce((a, s) => a + get(s), 0) / steps.length;
  const singleFrame = first.motion[0] === null;
  return {
    content: Array.from({ length: b }, (_, i) => mean((s) => s.content[i] as number)),
    perFrameMax: Array.from({ length: b }, (_, i) => mean((s) => Math.max(...(s.perFrame[i] as number[])))),
    motion: Array.from({ length: b }, (_, i) => (singleFrame ? null : mean((s) => s.motion[i] as number))),
    motionReason: singleFrame ? 'single-frame' : null,
    steps: steps.length,
    perStep: steps,
  };
}

/**
 * D_c, D_f and D_m of a list of per-step guidance differences δ_t (frames first; `batched` for
 * [B, F, …]). Inputs are not disposed.
 */
export function videoMagnitudes(deltas: readonly tf.Tensor[], options: { batched?: boolean } = {}): VideoMagnitudeResult {
  if (!Array.isArray(deltas)) throw new ShapeError('deltas must be an array of per-step tensors δ_t');
  const tracker = new VideoMagnitudeTracker(options);
  for (const d of deltas) tracker.trackDelta(d);
  return tracker.result();
}

/** Result of {@link calibrateDetector}. */
export interface DetectorCalibration {
  /** Area under the ROC curve (positives = memorized). */
  auc: number;
  /** Largest TPR with FPR < 1 % (Wen et al.'s TPR@1%FPR). */
  tprAt1pctFpr: number;
  /** Best balanced accuracy. */
  accuracy: number;
  /** Flag when score > threshold; chosen on the negatives for `targetFpr`. */
  threshold: number;
  targetFpr: number;
  /** FPR of that threshold on the calibration negatives. */
  achievedFpr: number;
  /** TPR of that threshold on the positives. */
  tprAtThreshold: number;
}

/**
 * AUC, TPR@1%FPR and a decision threshold at `targetFpr` (default 0.01) from detector scores of
 * known memorized (positives) and known non-memorized (negatives) prompts or clips. Works for any
 * score where larger means "more likely memorized" (D_c, D_f, D_m, GSSCD, OFS).
 */
export function calibrateDetector(
  positives: ArrayLike<number>,
  negatives: ArrayLike<number>,
  targetFpr = 0.01,
): DetectorCalibration {
  if (positives.length === 0 || negatives.length === 0) {
    throw new InputError('ROC_ONE_CLASS', `calibration needs positives and negatives, got ${positives.length} and ${negatives.length}`);
  }
  if (!(targetFpr >= 0 && targetFpr < 1)) throw new ConfigError(`targetFpr must be in [0, 1), got ${targetFpr}`);
  const scores = [...Array.from(positives), ...Array.from(negatives)];
  const labels = scores.map((_, i) => i < positives.length);
  const summary = detectionSummary(scores, labels);
  const { threshold, fpr } = thresholdAtFpr(negatives, targetFpr);
  const tp = Array.from(positives).filter((s) => s > threshold).length;
  return {
    auc: summary.auc,
    tprAt1pctFpr: summary.tprAt1pctFpr,
    accuracy: summary.accuracy,
    threshold,
    targetFpr,
    achievedFpr: fpr,
    tprAtThreshold: tp / positives.length,
  };
}
