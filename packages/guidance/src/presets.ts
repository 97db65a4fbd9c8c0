/**
 * Ready-made {@link AMGConfig}s: the two official code paths with their constants, and the paper's
 * formulation with the official time-dependent G_sim scaling.
 *
 * | preset | flow | λ_t | G_sim | G_spe / G_dup |
 * |---|---|---|---|---|
 * | `officialSD` | official SD `p_sample_ddim` | asy(0.3, 0.4, 0.005) on cosine | 100·(σ−0.3)·e^{(1000−t)/170} | c1 = (s0−1)/0.5, c2 = (s0−1−s1)/0.3, vote 1000/>20, latch 10 (CFG only) |
 * | `officialIDDPM` | official iDDPM `p_sample` (trigger nL2 < 1.5, pause 3/10) | nL2 < 1.95 − 0.45e^{−0.025τ} | mean shift, 1000·80·(σ−λ) | — |
 * | `paper` | Eqs. 10–17, all terms gated by σ > λ | as the official code for the metric | official SD scaling, `scale` (default 100) | as `officialSD` (CFG only) |
 *
 * For σ = −nL2 the SD constants are carried over with λ_t from the iDDPM code, the G_sim offset
 * at λ_t (so the factor σ − λ_t is positive when guidance fires) and G_spe/G_dup scaled by the
 * margin σ − λ_t (see `TermSignal`). "Main" and "Strong" in the paper differ only in the G_sim
 * scale.
 * @module
 */
import type { AMGConfig } from './amg_pipeline.js';
import { OFFICIAL_IDDPM_PAUSE } from './amg_pipeline.js';
import type { SimilarityScorer } from './similarity.js';
import { OFFICIAL_DUP_VOTE, OFFICIAL_IDDPM_SIM, OFFICIAL_SD_SIM } from './terms.js';
import { OFFICIAL_IDDPM_THRESHOLD, OFFICIAL_IDDPM_TRIGGER, OFFICIAL_SD_THRESHOLD } from './thresholds.js';

/** Options shared by the presets. */
export interface AMGPresetOptions {
  /**
   * Add G_spe and (when the scorer knows the reference labels) G_dup — for classifier-free
   * guided class-conditional sampling. Default false (G_sim only, the paper's setting for
   * unconditional and class-conditional models without CFG).
   */
  cfg?: boolean;
  /** G_sim scale (official `--guidance_scale` 100). */
  scale?: number;
}

function termsFor(similarity: SimilarityScorer, cfg: boolean): Pick<AMGConfig, 'spe' | 'dup' | 'termSignal'> {
  return {
    spe: cfg ? { c1: 'auto' } : null,
    dup: cfg && similarity.labels !== null ? { c2: 'official', label: OFFICIAL_DUP_VOTE, latchSteps: 10 } : null,
    termSignal: similarity.metric === 'cosine' ? 'sigma' : 'margin',
  };
}

/** The official Stable Diffusion control flow and constants (`AMG-sd`). */
export function officialSDConfig(similarity: SimilarityScorer, options: AMGPresetOptions = {}): AMGConfig {
  const cosine = similarity.metric === 'cosine';
  return {
    similarity,
    flow: 'official-sd',
    threshold: cosine ? OFFICIAL_SD_THRESHOLD : OFFICIAL_IDDPM_THRESHOLD,
    sim: { ...OFFICIAL_SD_SIM, scale: options.scale ?? OFFICIAL_SD_SIM.scale, sigmaOffset: cosine ? OFFICIAL_SD_SIM.sigmaOffset : 'threshold' },
    ...termsFor(similarity, options.cfg ?? false),
  };
}

/**
 * The official iDDPM control flow and constants (`AMG-iddpm`; DDPM sampler). Use it with
 * `NoisedTrainingNl2Similarity` for the code's x_t-vs-noised-training comparison.
 */
export function officialIDDPMConfig(similarity: SimilarityScorer, options: Pick<AMGPresetOptions, 'scale'> = {}): AMGConfig {
  return {
    similarity,
    flow: 'official-iddpm',
    threshold: OFFICIAL_IDDPM_THRESHOLD,
    sim: { ...OFFICIAL_IDDPM_SIM, scale: options.scale ?? OFFICIAL_IDDPM_SIM.scale },
    trigger: similarity.metric === 'nl2' ? OFFICIAL_IDDPM_TRIGGER : null,
    pause: OFFICIAL_IDDPM_PAUSE,
  };
}

/** The paper's formulation (Eqs. 10–17) with the official time-dependent G_sim scaling. */
export function paperConfig(similarity: SimilarityScorer, options: AMGPresetOptions = {}): AMGConfig {
  return { ...officialSDConfig(similarity, options), flow: 'paper' };
}

/** The presets by name. */
export const AMG_PRESETS = Object.freeze({
  officialSD: officialSDConfig,
  officialIDDPM: officialIDDPMConfig,
  paper: paperConfig,
});
