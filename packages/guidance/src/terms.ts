/**
 * The three guidance terms of AMG (Chen, Liu & Xu, CVPR 2024, Eqs. 13–17) as scalar rules, and
 * their constants in the paper and in the official code:
 *
 * | term | paper | official SD code (`ddim.py:p_sample_ddim`, s0 = 7.5) |
 * |---|---|---|
 * | G_spe | s1 = clip(c1·σ, 0, s0−1); G = −s1(ε(x,y) − ε(x)) | c1 = 6.5/0.5 = 13, gated by σ > 0 only |
 * | G_dup | s2 = clip(c2·σ, 0, s0−s1−1); G = −s2(ε(x,y_N) − ε(x)) | c2 = (6.5 − s1)/0.3, y_N by a vote of 1000 neighbours (> 20), kept on 10 steps once triggered |
 * | G_sim | G = c3·√(1−ᾱ_t)·∇_{x_t}σ | c3 = 100·(σ − 0.3)·exp((1000 − t)/170) |
 *
 * and in the official iDDPM code G_sim is a mean shift, μ ← μ + Σ_t·∇nL2·1000·80·(thres − nL2)
 * (here μ ← μ − Σ_t·80000·(σ − λ_t)·∇σ with σ = −nL2, λ_t = −thres).
 * @module
 */
import { ConfigError } from '@diffmem/core';
import { thresholdTime } from './thresholds.js';

/** Despecification guidance G_spe (Eqs. 13–14): lower the CFG scale in proportion to σ. */
export interface DespecificationTerm {
  /**
   * c1 in s1 = clip(c1·u, 0, s0 − 1) (u = the term signal, see {@link TermSignal}). `'auto'`
   * (default) = (s0 − 1)/0.5, the official code's 6.5/0.5 = 13 at s0 = 7.5: the full reduction to
   * an effective scale of 1 at σ = 0.5 (the SSCD replication threshold).
   */
  readonly c1?: number | 'auto';
}

/** The official duplicate-caption vote, for class labels: the most common label among the k nearest references. */
export interface DuplicateLabelVote {
  readonly kind: 'vote';
  /** Neighbours consulted (official: 1000 LAION results, capped at the reference set size). */
  readonly k: number;
  /**
   * The winning label must occur more than this many times among k neighbours (official: > 20
   * of 1000). When the reference set holds fewer than k images the count scales with the
   * neighbours available (minCount·k_eff/k), so small sets keep the official 2% rule.
   */
  readonly minCount: number;
}

/** Caption (here: label) deduplication guidance G_dup (Eqs. 15–16): negative conditioning on n0's label. */
export interface DeduplicationTerm {
  /**
   * c2 in s2 = clip(c2·u, 0, s0 − s1 − 1). `'official'` (default) = (s0 − 1 − s1)/0.3: the whole
   * remaining budget at σ = 0.3.
   */
  readonly c2?: number | 'official';
  /**
   * y_N: the label of the nearest reference n0 (`'nearest'`, the paper's text) or the official
   * vote (default {@link OFFICIAL_DUP_VOTE}).
   */
  readonly label?: 'nearest' | DuplicateLabelVote;
  /**
   * Official-SD flow only: once triggered, G_dup stays on for this many consecutive steps
   * (official `g3_count`: 10). 1 = re-checked every step. Default 10.
   */
  readonly latchSteps?: number;
}

/** The official vote: 1000 neighbours, the most common label must occur more than 20 times. */
export const OFFICIAL_DUP_VOTE: DuplicateLabelVote = Object.freeze({ kind: 'vote', k: 1000, minCount: 20 });

/** G_sim as in the paper: ε̂ += c3·√(1−ᾱ_t)·∇_{x_t}σ_t with a constant c3. */
export interface PaperSimilarityGuidance {
  readonly kind: 'paper';
  readonly c3: number;
}

/**
 * G_sim as the official SD code scales it: ε̂ += √(1−ᾱ_t)·c3(t,σ)·∇σ with
 * c3 = scale·(σ − offset)·exp((timeScale − τ)/timeDecay), τ = t·timeScale/T.
 */
export interface OfficialSDSimilarityGuidance {
  readonly kind: 'official-sd';
  /** `--guidance_scale` (official default 100). */
  readonly scale: number;
  /**
   * Subtracted from σ (official 0.3, the SSCD threshold's asymptote). `'threshold'` uses λ_t, so
   * the factor (σ − λ_t) is positive whenever guidance fires — needed for σ = −nL2 ≤ 0.
   */
  readonly sigmaOffset: number | 'threshold';
  /** Official 170 (in units of τ). */
  readonly timeDecay: number;
  /** τ units spanning the diffusion (official 1000 = the DDPM index for T = 1000). */
  readonly timeScale: number;
}

/**
 * G_sim as the official iDDPM code applies it: a mean shift of the ancestral step,
 * μ ← μ − Σ_t·scale·(σ − λ_t)·∇_{x_t}σ (Sohl-Dickstein/Dhariwal–Nichol conditioning; needs a
 * stochastic sampler: DDPM, or DDIM with η > 0).
 */
export interface MeanShiftSimilarityGuidance {
  readonly kind: 'mean-shift';
  /** `classifier_scale` × 80 (official 1000 × 80). */
  readonly scale: number;
}

/** Any G_sim form. */
export type SimilarityGuidance = PaperSimilarityGuidance | OfficialSDSimilarityGuidance | MeanShiftSimilarityGuidance;

/** The official SD G_sim: c3 = 100·(σ − 0.3)·exp((1000 − t)/170). */
export const OFFICIAL_SD_SIM: OfficialSDSimilarityGuidance = Object.freeze({
  kind: 'official-sd',
  scale: 100,
  sigmaOffset: 0.3,
  timeDecay: 170,
  timeScale: 1000,
});

/** The official iDDPM G_sim: mean shift with classifier_scale 1000 × 80. */
export const OFFICIAL_IDDPM_SIM: MeanShiftSimilarityGuidance = Object.freeze({ kind: 'mean-shift', scale: 1000 * 80 });

/**
 * What the strengths of G_spe/G_dup are proportional to:
 * - `'sigma'`: u = σ_t (paper Eqs. 14, 16; meaningful for cosine σ ≥ 0),
 * - `'margin'`: u = σ_t − λ_t, the excess over the threshold — a diffmem choice for σ = −nL2,
 *   which is ≤ 0 so c·σ would never be positive.
 */
export type TermSignal = 'sigma' | 'margin';

/** The term signal u for one sample. */
export function termSignal(signal: TermSignal, sigma: number, lambda: number): number {
  return signal === 'sigma' ? sigma : sigma - lambda;
}

/** c1 resolved against the CFG scale s0. */
export function resolveC1(term: DespecificationTerm, s0: number): number {
  const c1 = term.c1 ?? 'auto';
  if (c1 === 'auto') return (s0 - 1) / 0.5;
  if (!(c1 >= 0) || !Number.isFinite(c1)) throw new ConfigError(`G_spe c1 must be a finite number ≥ 0 or 'auto', got ${String(c1)}`);
  return c1;
}

/** s1 = max(min(c1·u, s0 − 1), 0) (Eq. 14): the effective CFG scale s0 − s1 stays ≥ 1. */
export function despecificationScale(u: number, s0: number, c1: number): number {
  return Math.max(Math.min(c1 * u, s0 - 1), 0);
}

/**
 * s2 = max(min(c2·u, s0 − s1 − 1), 0) (Eq. 16); c2 `'official'` = (s0 − 1 − s1)/0.3. The cap keeps
 * the total CFG reduction s1 + s2 ≤ s0 − 1.
 */
export function deduplicationScale(u: number, s0: number, s1: number, c2: number | 'official'): number {
  const budget = s0 - s1 - 1;
  const c = c2 === 'official' ? budget / 0.3 : c2;
  if (!(c >= 0) || !Number.isFinite(c)) throw new ConfigError(`G_dup c2 must be a finite number ≥ 0 or 'official', got ${String(c2)}`);
  return Math.max(Math.min(c * u, budget), 0);
}

/**
 * The coefficient k of G_sim for one sample: ε̂ += k·√(1−ᾱ_t)·∇σ for `paper`/`official-sd`, or
 * μ −= Σ_t·k·∇σ for `mean-shift`.
 */
export function similarityGuidanceCoefficient(
  g: SimilarityGuidance,
  sigma: number,
  lambda: number,
  timestep: number,
  numTrainTimesteps: number,
): number {
  switch (g.kind) {
    case 'paper':
      return g.c3;
    case 'official-sd': {
      const tau = thresholdTime(timestep, numTrainTimesteps, g.timeScale);
      const offset = g.sigmaOffset === 'threshold' ? lambda : g.sigmaOffset;
      return g.scale * (sigma - offset) * Math.exp((g.timeScale - tau) / g.timeDecay);
    }
    case 'mean-shift':
      return g.scale * (sigma - lambda);
  }
}

/** Throws ConfigError for malformed term options. */
export function validateSimilarityGuidance(g: SimilarityGuidance): void {
  const finite = (v: unknown, name: string): void => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`G_sim ${name} must be a finite number, got ${String(v)}`);
  };
  switch (g?.kind) {
    case 'paper':
      finite(g.c3, 'c3');
      return;
    case 'official-sd':
      finite(g.scale, 'scale');
      if (g.sigmaOffset !== 'threshold') finite(g.sigmaOffset, 'sigmaOffset');
      finite(g.timeDecay, 'timeDecay');
      finite(g.timeScale, 'timeScale');
      if (!(g.timeDecay > 0 && g.timeScale > 0)) throw new ConfigError('G_sim timeDecay and timeScale must be > 0');
      return;
    case 'mean-shift':
      finite(g.scale, 'scale');
      return;
    default:
      throw new ConfigError(`unknown G_sim kind ${JSON.stringify((g as { kind?: unknown })?.kind)} (paper, official-sd, mean-shift)`);
  }
}

/**
 * The official duplicate-caption rule for labels: the most common label among `neighbourIndices`
 * (ties: the one met first, like Python's `Counter.most_common`) if it occurs more than
 * `minCount` times, else null.
 */
export function voteDuplicateLabel(neighbourIndices: readonly number[], labels: Int32Array, minCount: number): number | null {
  const counts = new Map<number, number>();
  for (const i of neighbourIndices) {
    const l = labels[i] as number;
    counts.set(l, (counts.get(l) ?? 0) + 1);
  }
  let best: number | null = null;
  let bestCount = 0;
  for (const [l, c] of counts) {
    if (c > bestCount) {
      best = l;
      bestCount = c;
    }
  }
  return best !== null && bestCount > minCount ? best : null;
}
