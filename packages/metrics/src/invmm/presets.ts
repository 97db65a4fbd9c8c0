/**
 * InvMM settings: the constants of the official code (Maryeon/InvMM @ d299134, the `inversion.py`
 * of each model family) as named presets, and their validation.
 *
 * | preset | B | C | δ | verification | official file |
 * |---|---|---|---|---|---|
 * | `ddpm-cifar10` (default) | 32 | 50 | 1e-4 | DDIM η=0, 200 steps, 8 samples | `ddpm/inverion.py` |
 * | `ldm-faces` | 16 | 10 | 5e-4 | DDIM η=0, 50 steps, 8 samples | `latent-diffusion/inversion.py` |
 * | `sd` | 16 | 50 | 1e-3 | DDIM η=0, 50 steps, 8 samples, guidance scales 1…7 | `stable-diffusion-v{1,2}/inversion.py` |
 * | `ddpm-cpu` (not official) | 16 | 25 | 6.67e-4 | the model's DDIM (`'scheduler'`), 50 steps, 8 samples; 225 steps max | — |
 * | `cpu-quick` (not official) | 8 | 10 | 1e-4 | DDIM η=0, 20 steps, 8 samples; 100 steps max | — |
 *
 * `ddpm-cpu` is the DDPM preset on a CPU budget: the official constants except 225 optimisation
 * steps (not 2000), B = 16 (not 32), a check every 25 steps (not 50) and 50 verification DDIM steps
 * (not 200) with the model's own DDIM configuration (sampler `'scheduler'`: small CPU-trained
 * models saturate without the x̂0 clipping their `clip_sample: true` asks for); δ = 6.67e-4 (the
 * official 1e-4 × 2000/300, so λ can grow about as much as over the full run). Measured on a
 * 649k-parameter 32×32 DDPM with 10 images × 100 copies (docs/evidence.md): ≤ 60 s per image
 * with `parallel` on 2 cores, AUC 0.95 duplicated vs ordinary and vs held-out; `maxSteps: 300`
 * gives 0.99 / 1.00 at ~78 s. B = 8 is not enough (1 of 10 duplicated images replicated).
 *
 * `cpu-quick` is diffmem's reduced budget for CPU evidence runs (a small 32×32 UNet on wasm costs
 * ~0.1 CPU-s per sample-pass forward+backward): 16× fewer noise samples per step, 20× fewer
 * optimisation steps and 10× fewer sampler steps than `ddpm-cifar10`. Its scores are not
 * comparable with the paper's; images it cannot replicate may replicate under the full budget.
 *
 * Shared by all: Adam lr 0.1, 2000 steps, λ₀ = 1, ξ = 1e-3, a 100-step moving average of the
 * reconstruction loss, replication threshold β = 0.5 on SSCD (here: whatever replication test
 * the caller passes, with its own threshold). SD 3.5 (rectified flow, Euler sampler) has no preset:
 * diffmem's denoisers are DDPM-family ε/x0/v predictors.
 * @module
 */
import { ConfigError } from '@diffmem/core';

/** How the final score reduces the per-dimension KL (the official code changed it once). */
export type InvMMScoreReduction = 'mean' | 'sum';

/**
 * The verification sampler (deterministic DDIM, η = 0):
 * - `'official'`: the official code's grid `int(linspace(−1, T−1, n+1))` visited downwards,
 *   ᾱ = 1 after the last step, x̂0 **not** clipped inside the loop, the final x̂0 clamped to
 *   [−1, 1] (`GaussianDiffusionDDIMSampler` in `ddpm/diffusion.py`; the authors patched the
 *   LDM/SD `make_ddim_timesteps` to the same grid and final ᾱ = 1).
 * - `'scheduler'`: a `DDIMScheduler` built from the model's scheduler configuration (its
 *   `timestep_spacing`, `clip_sample`, `set_alpha_to_one`), i.e. what diffusers' `DDIMPipeline`
 *   would run for this model; final sample clamped to [−1, 1].
 */
export type InvMMSamplerKind = 'official' | 'scheduler';

/** Verification settings (A.5 of the reference document). */
export interface InvMMVerificationConfig {
  /** DDIM steps n (official: 200 for the CIFAR DDPM, 50 for LDM/SD). */
  numInferenceSteps: number;
  /** x_T samples per check (official: 8). */
  numSamples: number;
  /** See {@link InvMMSamplerKind}. Default `'official'`. */
  sampler: InvMMSamplerKind;
  /**
   * Classifier-free guidance scales tried at every check; the check passes if **any** scale
   * passes (the SD rule: `torch.any(sim.min(dim=1) >= β)` over scales 1…7). `[1]` = no guidance.
   */
  guidanceScales: readonly number[];
  /**
   * Stop a check at the first sample that fails the replication test (default true). The
   * official code samples all n and tests `min ≥ β`; since that fails iff some sample fails, the
   * decision — hence every score — is identical, only the recorded values of a failed check are
   * truncated. Saves most of the sampling of non-replicating checks. `false` = the official
   * bookkeeping (all n samples in one batch, all values recorded).
   */
  stopAtFirstFailure: boolean;
  /** Samples per sampler batch when `stopAtFirstFailure` (default 2). */
  chunkSize: number;
}

/** Every constant of the inversion (A.2–A.5). */
export interface InvMMConfig {
  /** Adam learning rate (official 0.1; torch Adam, no weight decay). */
  learningRate: number;
  /** Optimisation budget (official 2000 steps). */
  maxSteps: number;
  /** B: noise samples (and independent timesteps) per step. */
  batchSize: number;
  /** C: checkpoint period — λ rule and verification every C steps. */
  checkEvery: number;
  /** ξ: a checkpoint whose moving-average loss improved by less than ξ halves λ. */
  stallThreshold: number;
  /** δ: λ grows by δ every step that is not a stalled checkpoint. */
  lambdaIncrement: number;
  /** λ₀ (official 1). */
  lambda0: number;
  /** Window of the moving average of the reconstruction loss (official 100). */
  movingAverageWindow: number;
  /** Final score reduction: `'mean'` (default; the code since commit 47c65ed) or `'sum'` (before it, arXiv v2). */
  scoreReduction: InvMMScoreReduction;
  /** Soft-label inversion only: Gumbel-softmax temperature τ (official soft prompt: 2.0). */
  gumbelTau: number;
  verification: InvMMVerificationConfig;
}

/** Names of the built-in presets. */
export type InvMMPresetName = 'ddpm-cifar10' | 'ldm-faces' | 'sd' | 'ddpm-cpu' | 'cpu-quick';

const VERIFY_COMMON = { numSamples: 8, sampler: 'official' as const, guidanceScales: Object.freeze([1]), stopAtFirstFailure: true, chunkSize: 2 };

const COMMON = {
  learningRate: 0.1,
  maxSteps: 2000,
  stallThreshold: 1e-3,
  lambda0: 1,
  movingAverageWindow: 100,
  scoreReduction: 'mean' as const,
  gumbelTau: 2,
};

/** The official constants per model family (see the module table). */
export const INVMM_PRESETS: Readonly<Record<InvMMPresetName, Readonly<InvMMConfig>>> = Object.freeze({
  'ddpm-cifar10': Object.freeze({
    ...COMMON,
    batchSize: 32,
    checkEvery: 50,
    lambdaIncrement: 1e-4,
    verification: Object.freeze({ ...VERIFY_COMMON, numInferenceSteps: 200 }),
  }),
  'ldm-faces': Object.freeze({
    ...COMMON,
    batchSize: 16,
    checkEvery: 10,
    lambdaIncrement: 5e-4,
    verification: Object.freeze({ ...VERIFY_COMMON, numInferenceSteps: 50 }),
  }),
  sd: Object.freeze({
    ...COMMON,
    batchSize: 16,
    checkEvery: 50,
    lambdaIncrement: 1e-3,
    verification: Object.freeze({ ...VERIFY_COMMON, numInferenceSteps: 50, guidanceScales: Object.freeze([1, 2, 3, 4, 5, 6, 7]) }),
  }),
  'ddpm-cpu': Object.freeze({
    ...COMMON,
    maxSteps: 225,
    batchSize: 16,
    checkEvery: 25,
    lambdaIncrement: (1e-4 * 2000) / 300,
    verification: Object.freeze({ ...VERIFY_COMMON, numInferenceSteps: 50, sampler: 'scheduler' as const }),
  }),
  'cpu-quick': Object.freeze({
    ...COMMON,
    maxSteps: 100,
    batchSize: 8,
    checkEvery: 10,
    lambdaIncrement: 1e-4,
    verification: Object.freeze({ ...VERIFY_COMMON, numInferenceSteps: 20 }),
  }),
});

/** The default preset: the paper's DDPM (CIFAR-10) constants. */
export const DEFAULT_INVMM_PRESET: InvMMPresetName = 'ddpm-cifar10';

/** A preset name plus overrides of any field (verification fields merge one level deep). */
export interface InvMMConfigInput extends Partial<Omit<InvMMConfig, 'verification'>> {
  preset?: InvMMPresetName;
  verification?: Partial<InvMMVerificationConfig>;
}

function posInt(v: unknown, key: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new ConfigError(`InvMM option ${key} must be a positive integer, got ${String(v)}`, { key, value: v });
  }
  return v;
}

function bool(v: unknown, key: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(`InvMM option ${key} must be true or false, got ${String(v)}`, { key, value: v });
  return v;
}

function nonNeg(v: unknown, key: string, strict = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (strict && v === 0)) {
    throw new ConfigError(`InvMM option ${key} must be a finite number ${strict ? '> 0' : '≥ 0'}, got ${String(v)}`, { key, value: v });
  }
  return v;
}

const CONFIG_KEYS = new Set(['preset', ...Object.keys(INVMM_PRESETS['ddpm-cifar10'])]);
const VERIFY_KEYS = new Set(Object.keys(INVMM_PRESETS['ddpm-cifar10'].verification));

/**
 * Resolves a preset plus overrides into a validated {@link InvMMConfig}.
 * @throws ConfigError naming the offending option (unknown keys included, so typos never fall
 *   back silently to a default).
 */
export function resolveInvMMConfig(input: InvMMConfigInput = {}): InvMMConfig {
  if (input === null || typeof input !== 'object') throw new ConfigError('InvMM options must be an object');
  for (const k of Object.keys(input)) {
    if (!CONFIG_KEYS.has(k)) throw new ConfigError(`unknown InvMM option "${k}"; known: ${[...CONFIG_KEYS].join(', ')}`, { key: k });
  }
  const name = input.preset ?? DEFAULT_INVMM_PRESET;
  const base = INVMM_PRESETS[name];
  if (!base) throw new ConfigError(`unknown InvMM preset "${String(name)}"; known: ${Object.keys(INVMM_PRESETS).join(', ')}`, { key: 'preset' });
  const v = input.verification ?? {};
  for (const k of Object.keys(v)) {
    if (!VERIFY_KEYS.has(k)) throw new ConfigError(`unknown InvMM verification option "${k}"; known: ${[...VERIFY_KEYS].join(', ')}`, { key: k });
  }
  const pick = <K extends keyof InvMMConfig>(k: K): InvMMConfig[K] => (input[k as keyof InvMMConfigInput] ?? base[k]) as InvMMConfig[K];
  const scoreReduction = pick('scoreReduction');
  if (scoreReduction !== 'mean' && scoreReduction !== 'sum') {
    throw new ConfigError(`InvMM option scoreReduction must be 'mean' or 'sum', got ${String(scoreReduction)}`, { key: 'scoreReduction' });
  }
  const sampler = v.sampler ?? base.verification.sampler;
  if (sampler !== 'official' && sampler !== 'scheduler') {
    throw new ConfigError(`InvMM verification.sampler must be 'official' or 'scheduler', got ${String(sampler)}`, { key: 'verification.sampler' });
  }
  const scales = v.guidanceScales ?? base.verification.guidanceScales;
  if (!Array.isArray(scales) || scales.length === 0 || scales.some((s) => typeof s !== 'number' || !Number.isFinite(s))) {
    throw new ConfigError('InvMM verification.guidanceScales must be a non-empty array of finite numbers', { key: 'verification.guidanceScales' });
  }
  return {
    learningRate: nonNeg(pick('learningRate'), 'learningRate', true),
    maxSteps: posInt(pick('maxSteps'), 'maxSteps'),
    batchSize: posInt(pick('batchSize'), 'batchSize'),
    checkEvery: posInt(pick('checkEvery'), 'checkEvery'),
    stallThreshold: nonNeg(pick('stallThreshold'), 'stallThreshold'),
    lambdaIncrement: nonNeg(pick('lambdaIncrement'), 'lambdaIncrement'),
    lambda0: nonNeg(pick('lambda0'), 'lambda0'),
    movingAverageWindow: posInt(pick('movingAverageWindow'), 'movingAverageWindow'),
    scoreReduction,
    gumbelTau: nonNeg(pick('gumbelTau'), 'gumbelTau', true),
    verification: {
      numInferenceSteps: posInt(v.numInferenceSteps ?? base.verification.numInferenceSteps, 'verification.numInferenceSteps'),
      numSamples: posInt(v.numSamples ?? base.verification.numSamples, 'verification.numSamples'),
      sampler,
      guidanceScales: [...scales],
      stopAtFirstFailure: bool(v.stopAtFirstFailure ?? base.verification.stopAtFirstFailure, 'verification.stopAtFirstFailure'),
      chunkSize: posInt(v.chunkSize ?? base.verification.chunkSize, 'verification.chunkSize'),
    },
  };
}
