/**
 * Anti-Memorization Guidance sampling (Chen, Liu & Xu, "Towards Memorization-Free Diffusion
 * Models", CVPR 2024) for DDIM and DDPM, unconditional, class-conditional and classifier-free
 * guided class-conditional denoisers.
 *
 * At every step the (guided) noise prediction is edited before the scheduler step (Eqs. 10–11):
 * ε̂ ← ε̂ + 1{σ_t > λ_t}·(G_spe + G_dup + G_sim), with σ_t a similarity of the predicted clean
 * sample x̂0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t (Eq. 12) to its nearest training image. Three control
 * flows are available (`AMGConfig.flow`):
 *
 * - `'paper'` (default): one σ_t (and ∇σ_t) per step on the CFG ε̂; every enabled term is gated by
 *   σ_t > λ_t and computed from that σ_t (Eqs. 10–17).
 * - `'official-sd'`: `AMG-sd/ldm/models/diffusion/ddim.py:p_sample_ddim`. σ1 on the CFG ε̂; when the
 *   term signal is positive, G_spe (not gated by λ) and G_dup (gated by σ1 > λ_t, then latched for
 *   `latchSteps` steps) rebuild ε̂ = ε_u + (s0 − s1)(ε_c − ε_u) + s2(ε_u − ε_N); σ2 and ∇σ2 are
 *   recomputed on that ε̂ and G_sim fires when σ2 > λ_t. (The code's `base_count > 20` gate — the
 *   first 21 images of an output folder are never guided — is an artifact and is not reproduced.)
 * - `'official-iddpm'`: `AMG-iddpm/improved_diffusion/gaussian_diffusion.py:p_sample`. Guidance
 *   starts only once the unguided path is found memorizing (σ > `trigger`, nL2 < 1.5); from then
 *   on G_sim fires when σ > λ_t, and after `pause.quietSteps` consecutive quiet steps the checks
 *   pause (`skip`/`countdown`). The code's globals are shared by its unguided ("ablated") and
 *   guided calls, so the countdown of 10 drops by 2 per step — a 5-step pause — which is
 *   reproduced; the unguided path is not evaluated after the trigger (it only feeds the code's
 *   report), and state is kept per sample and reset per sample (the code leaks `skip`/`countdown`
 *   across samples).
 *
 * With no guidance firing the result equals core's `DDIMPipeline`/`DDPMPipeline` for the same
 * generator bit-for-bit (same draws in the same order); similarity noise (the iDDPM variant) comes
 * from the scorer's own generator.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DDIMScheduler,
  DDPMScheduler,
  NonFiniteError,
  ShapeError,
  asImageBatch,
  optionalGenerator,
  predictX0AndEps,
  prepareConditioning,
  prepareLatents,
  type ClassConditioningOptions,
  type Conditioning,
  type Denoiser,
  type Generator,
  type ImageBatch,
  type PredictionType,
  type RandomSource,
} from '@diffmem/core';
import type { ReferenceId } from '@diffmem/metrics';
import type { SimilarityEvaluation, SimilarityScorer } from './similarity.js';
import {
  OFFICIAL_DUP_VOTE,
  deduplicationScale,
  despecificationScale,
  resolveC1,
  similarityGuidanceCoefficient,
  termSignal,
  validateSimilarityGuidance,
  voteDuplicateLabel,
  type DeduplicationTerm,
  type DespecificationTerm,
  type SimilarityGuidance,
  type TermSignal,
} from './terms.js';
import { OFFICIAL_IDDPM_TRIGGER, thresholdAt, thresholdScaleAt, validateThreshold, type ThresholdSchedule } from './thresholds.js';

const f32 = Math.fround;

/** Which official control flow to follow (see the module notes). */
export type AMGFlow = 'paper' | 'official-sd' | 'official-iddpm';

/** The official iDDPM pause: after `quietSteps` steps without guidance, stop checking for a while. */
export interface AMGPause {
  /** Consecutive steps without guidance before pausing (official `skip == 3`). */
  readonly quietSteps: number;
  /** Countdown length (official 10; it drops by 2 per step, see the module notes). */
  readonly countdown: number;
}

/** The official iDDPM pause constants. */
export const OFFICIAL_IDDPM_PAUSE: AMGPause = Object.freeze({ quietSteps: 3, countdown: 10 });

/** Everything that defines an AMG run besides the sampler settings. */
export interface AMGConfig {
  /** σ_t (see `similarity.ts`); its reference set is the training data to protect. */
  readonly similarity: SimilarityScorer;
  /** λ_t (see `thresholds.ts`). */
  readonly threshold: ThresholdSchedule;
  /** Default `'paper'`. */
  readonly flow?: AMGFlow;
  /** Dissimilarity guidance G_sim; null/undefined = off. */
  readonly sim?: SimilarityGuidance | null;
  /** Despecification guidance G_spe (CFG models only); null/undefined = off. */
  readonly spe?: DespecificationTerm | null;
  /** Label-deduplication guidance G_dup (CFG models only, needs reference labels); null/undefined = off. */
  readonly dup?: DeduplicationTerm | null;
  /** What G_spe/G_dup scale with (default `'sigma'` for cosine σ, `'margin'` for σ = −nL2). */
  readonly termSignal?: TermSignal;
  /** `'official-iddpm'`: σ above which the unguided path triggers guidance (default −1.5 for nL2, none for cosine). */
  readonly trigger?: number | null;
  /** `'official-iddpm'`: the skip/countdown pause (default {@link OFFICIAL_IDDPM_PAUSE}; null = never pause). */
  readonly pause?: AMGPause | null;
}

/** One step of the per-step log (arrays hold one entry per sample). */
export interface AMGStepLog {
  readonly step: number;
  readonly timestep: number;
  /** λ_t (−Infinity when always on). */
  readonly lambda: number;
  /** σ_t used for the G_sim gate (σ2 in the official SD flow); NaN where not evaluated. */
  readonly sigma: number[];
  /** Official SD flow: σ1, before G_spe/G_dup; else null. */
  readonly sigmaBefore: number[] | null;
  /** nL2 = −σ for the nL2 scorers, else null. */
  readonly nl2: number[] | null;
  /** Which terms fired. */
  readonly fired: { readonly sim: boolean[]; readonly spe: boolean[]; readonly dup: boolean[] };
  /** s1 (G_spe), s2 (G_dup) and the G_sim coefficient (c3, or the mean-shift factor); 0 when off. */
  readonly scales: { readonly s1: number[]; readonly s2: number[]; readonly c3: number[] };
  /** The matched nearest reference (−1 / null where not evaluated). */
  readonly neighbourIndex: number[];
  readonly neighbourId: (ReferenceId | null)[];
  /** y_N used or available for G_dup (null when none). */
  readonly dupLabel: (number | null)[];
  /** Official iDDPM flow: the trigger and pause state after this step; else null. */
  readonly triggered: boolean[] | null;
  readonly paused: boolean[] | null;
}

/** What an AMG step callback receives (tensors are valid during the call only). */
export interface AMGStepInfo {
  readonly step: number;
  readonly numSteps: number;
  readonly timestep: number;
  readonly sample: tf.Tensor4D;
  readonly prevSample: tf.Tensor4D;
  readonly log: AMGStepLog;
}

/** Options of {@link AMGPipeline.generate}. */
export interface AMGGenerateOptions extends ClassConditioningOptions {
  readonly amg: AMGConfig;
  /** Number of images (default 1, or the batch of `latents`). */
  readonly batchSize?: number;
  /** Steps (default 50 for DDIM, 1000 for DDPM, as core's pipelines). */
  readonly numInferenceSteps?: number;
  /** DDPM only: custom descending timesteps. */
  readonly timesteps?: readonly number[];
  /** DDIM η (default 0). */
  readonly eta?: number;
  /** DDIM `use_clipped_model_output` (default false). */
  readonly useClippedModelOutput?: boolean;
  /** Seed or Generator for x_T and the per-step noise (the same stream core's pipelines use). */
  readonly generator?: RandomSource;
  /** x_T ([N,H,W,C], not disposed). */
  readonly latents?: tf.Tensor4D;
  readonly callback?: (info: AMGStepInfo) => void | Promise<void>;
}

/** The result of {@link AMGPipeline.generate}. */
export interface AMGOutput {
  /** x_0 clamped to [−1, 1] (caller disposes). */
  readonly images: ImageBatch<'model'>;
  /** One entry per step. */
  readonly log: AMGStepLog[];
  /** Per sample: steps where any term fired. */
  readonly guidedSteps: number[];
  /** Wall time of the sampling loop, ms. */
  readonly elapsedMs: number;
}

type AnyScheduler = DDIMScheduler | DDPMScheduler;

interface ResolvedConfig {
  readonly scorer: SimilarityScorer;
  readonly threshold: ThresholdSchedule;
  readonly flow: AMGFlow;
  readonly sim: SimilarityGuidance | null;
  /** G_spe with c1 resolved against s0 once the conditioning is known. */
  readonly spe: { readonly term: DespecificationTerm; c1: number } | null;
  readonly dup: { c2: number | 'official'; label: 'nearest' | { k: number; minCount: number }; latch: number } | null;
  readonly signal: TermSignal;
  readonly trigger: number | null;
  readonly pause: AMGPause | null;
}

/** Per-sample state carried across steps. */
interface SampleState {
  dupLabel: number | null;
  latch: number;
  triggered: boolean;
  skip: number;
  countdown: number;
  guided: number;
}

function coef(values: readonly number[], n: number): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from(values), [n, 1, 1, 1]);
}

/** x̂0 = (x − √(1−ᾱ)·ε)/√ᾱ with float32 coefficients (Eq. 12). */
function x0FromEps(eps: tf.Tensor4D, x: tf.Tensor4D, a: number): tf.Tensor4D {
  return tf.div(tf.sub(x, tf.mul(f32(Math.sqrt(f32(1 - a))), eps)), f32(Math.sqrt(a))) as tf.Tensor4D;
}

/** The model output (in the scheduler's prediction type) that corresponds to ε̂ at x_t. */
function outputFromEps(eps: tf.Tensor4D, x: tf.Tensor4D, a: number, type: PredictionType): tf.Tensor4D {
  if (type === 'epsilon') return eps;
  const x0 = x0FromEps(eps, x, a);
  if (type === 'sample') return x0;
  return tf.sub(tf.mul(f32(Math.sqrt(a)), eps), tf.mul(f32(Math.sqrt(f32(1 - a))), x0)) as tf.Tensor4D;
}

/**
 * AMG sampling pipeline over any {@link Denoiser} with a DDIM or DDPM scheduler.
 *
 * ```ts
 * const index = ReferenceIndex.fromImages(trainDisplay);
 * const amg = new AMGPipeline(unet, scheduler);
 * const { images, log } = await amg.generate({
 *   batchSize: 16, numInferenceSteps: 50, generator: 0,
 *   amg: paperConfig(new PixelNl2Similarity(index), { scale: 10 }),
 * });
 * ```
 */
export class AMGPipeline {
  constructor(
    readonly unet: Denoiser,
    readonly scheduler: AnyScheduler,
  ) {
    if (!(scheduler instanceof DDIMScheduler) && !(scheduler instanceof DDPMScheduler)) {
      throw new ConfigError('AMGPipeline needs a DDIMScheduler or a DDPMScheduler');
    }
  }

  /**
   * Samples a batch with AMG. Every random draw comes from `options.generator`.
   * @throws ConfigError for inconsistent options (G_spe/G_dup without CFG conditioning, G_dup
   *   without reference labels, mean-shift with a deterministic sampler, …);
   *   NonFiniteError naming the step when σ, the guided ε̂ or the sample becomes NaN/Inf.
   */
  async generate(options: AMGGenerateOptions): Promise<AMGOutput> {
    if (!options || typeof options !== 'object') throw new ConfigError('AMGPipeline.generate needs an options object');
    const sched = this.scheduler;
    const isDDIM = sched instanceof DDIMScheduler;
    const eta = options.eta ?? 0;
    if (!isDDIM && (options.eta !== undefined || options.useClippedModelOutput !== undefined)) {
      throw new ConfigError('eta / useClippedModelOutput are DDIM options; this pipeline has a DDPMScheduler');
    }
    if (isDDIM && options.timesteps !== undefined) throw new ConfigError('custom timesteps are a DDPM option');
    const generator = optionalGenerator(options.generator);
    if ((!isDDIM || eta > 0) && generator === null) {
      throw new ConfigError(`${isDDIM ? 'DDIM with eta > 0' : 'DDPM sampling'} is stochastic: pass a generator (seed or Generator)`);
    }
    const cfg = this.resolveConfig(options.amg, isDDIM, eta);

    if (isDDIM) sched.setTimesteps(options.numInferenceSteps ?? 50);
    else if (options.timesteps !== undefined) {
      if (options.numInferenceSteps !== undefined) throw new ConfigError('pass either numInferenceSteps or timesteps, not both');
      sched.setTimesteps({ timesteps: options.timesteps });
    } else sched.setTimesteps(options.numInferenceSteps ?? 1000);

    const latents = prepareLatents(this.unet, options.batchSize, options.latents, generator);
    let x: tf.Tensor4D = latents;
    try {
      const n = latents.shape[0];
      const conditioning = prepareConditioning(this.unet, n, options);
      this.checkConditioning(cfg, conditioning);
      const states: SampleState[] = Array.from({ length: n }, () => ({
        dupLabel: null,
        latch: cfg.dup?.latch ?? 1,
        triggered: false,
        skip: 0,
        countdown: cfg.pause?.countdown ?? 0,
        guided: 0,
      }));
      const log: AMGStepLog[] = [];
      const timesteps = [...sched.timesteps];
      const start = performance.now();
      for (let k = 0; k < timesteps.length; k++) {
        const t = timesteps[k] as number;
        const current = x;
        const { prev, entry } = this.step(current, t, k, conditioning, cfg, states, generator, eta, options.useClippedModelOutput ?? false);
        log.push(entry);
        try {
          if (options.callback) {
            await options.callback({ step: k, numSteps: timesteps.length, timestep: t, sample: current, prevSample: prev, log: entry });
          }
        } catch (err) {
          prev.dispose();
          throw err;
        }
        if (current !== latents) current.dispose();
        x = prev;
      }
      const elapsedMs = performance.now() - start;
      const images = tf.tidy(() => tf.clipByValue(x, -1, 1)) as tf.Tensor4D;
      return { images: asImageBatch(images, 'model'), log, guidedSteps: states.map((s) => s.guided), elapsedMs };
    } finally {
      if (x !== latents) x.dispose();
      latents.dispose();
    }
  }

  private resolveConfig(amg: AMGConfig, isDDIM: boolean, eta: number): ResolvedConfig {
    if (!amg || typeof amg !== 'object') throw new ConfigError('options.amg (an AMGConfig) is required');
    const scorer = amg.similarity;
    if (!scorer || typeof scorer.evaluate !== 'function') throw new ConfigError('amg.similarity must be a SimilarityScorer');
    validateThreshold(amg.threshold);
    const flow = amg.flow ?? 'paper';
    if (flow !== 'paper' && flow !== 'official-sd' && flow !== 'official-iddpm') {
      throw new ConfigError(`amg.flow must be 'paper', 'official-sd' or 'official-iddpm', got ${String(flow)}`);
    }
    const sim = amg.sim ?? null;
    if (sim) {
      validateSimilarityGuidance(sim);
      if (sim.kind === 'mean-shift' && isDDIM && !(eta > 0)) {
        throw new ConfigError('mean-shift G_sim needs a stochastic sampler (DDPM, or DDIM with eta > 0): with eta = 0 the step has no variance to scale by');
      }
    }
    let dup: ResolvedConfig['dup'] = null;
    if (amg.dup) {
      const label = amg.dup.label ?? OFFICIAL_DUP_VOTE;
      if (label !== 'nearest') {
        if (!(Number.isInteger(label.k) && label.k >= 1) || !(label.minCount >= 0)) {
          throw new ConfigError(`G_dup vote needs an integer k ≥ 1 and minCount ≥ 0, got k=${label.k}, minCount=${label.minCount}`);
        }
      }
      const latch = amg.dup.latchSteps ?? 10;
      if (!(Number.isInteger(latch) && latch >= 1)) throw new ConfigError(`G_dup latchSteps must be an integer ≥ 1, got ${latch}`);
      dup = { c2: amg.dup.c2 ?? 'official', label: label === 'nearest' ? 'nearest' : { k: label.k, minCount: label.minCount }, latch };
      if (scorer.labels === null) {
        throw new ConfigError('G_dup needs the class label of every reference image: build the similarity scorer with `labels`');
      }
    }
    const signal = amg.termSignal ?? (scorer.metric === 'cosine' ? 'sigma' : 'margin');
    if (signal !== 'sigma' && signal !== 'margin') throw new ConfigError(`termSignal must be 'sigma' or 'margin', got ${String(signal)}`);
    if (amg.threshold.kind === 'always' && !amg.threshold.reference) {
      const needs = [
        signal === 'margin' && (amg.spe || amg.dup || flow === 'official-sd') ? `the 'margin' term signal` : null,
        sim && ((sim.kind === 'official-sd' && sim.sigmaOffset === 'threshold') || sim.kind === 'mean-shift') ? 'G_sim scaled by σ − λ_t' : null,
      ].filter(Boolean);
      if (needs.length > 0) {
        throw new ConfigError(`an always-on threshold needs a reference schedule for ${needs.join(' and ')}: THRESHOLDS.always(schedule)`);
      }
    }
    const trigger = amg.trigger !== undefined ? amg.trigger : scorer.metric === 'nl2' ? OFFICIAL_IDDPM_TRIGGER : null;
    const pause = amg.pause !== undefined ? amg.pause : OFFICIAL_IDDPM_PAUSE;
    if (pause && !(Number.isInteger(pause.quietSteps) && pause.quietSteps >= 1 && Number.isInteger(pause.countdown) && pause.countdown >= 1)) {
      throw new ConfigError('pause.quietSteps and pause.countdown must be integers ≥ 1');
    }
    return {
      scorer,
      threshold: amg.threshold,
      flow,
      sim,
      spe: amg.spe ? { term: amg.spe, c1: Number.NaN } : null,
      dup,
      signal,
      trigger: flow === 'official-iddpm' ? trigger : null,
      pause: flow === 'official-iddpm' ? pause : null,
    };
  }

  private checkConditioning(cfg: ResolvedConfig, c: Conditioning): void {
    if (cfg.spe || cfg.dup) {
      const which = [cfg.spe ? 'G_spe' : null, cfg.dup ? 'G_dup' : null].filter(Boolean).join(' and ');
      if (c.labels === null) {
        throw new ConfigError(`${which} act on class conditioning, but the denoiser is unconditional (numClassEmbeds is null); use G_sim only`);
      }
      if (!(c.guidanceScale > 1)) {
        throw new ConfigError(`${which} reduce classifier-free guidance: sample with guidanceScale > 1 and nullClassId (got guidanceScale ${c.guidanceScale})`);
      }
    }
    if (cfg.spe) cfg.spe.c1 = resolveC1(cfg.spe.term, c.guidanceScale);
    if (cfg.dup && cfg.scorer.labels) {
      const rows = this.unet.info.numClassEmbeds as number;
      const bad = cfg.scorer.labels.findIndex((l) => l >= rows);
      if (bad >= 0) {
        throw new ConfigError(`reference label ${cfg.scorer.labels[bad]} (reference ${bad}) is outside the model's class table [0, ${rows})`);
      }
    }
  }

  /** One AMG step: returns x_{t_prev} (new tensor) and the log entry. */
  private step(
    x: tf.Tensor4D,
    t: number,
    k: number,
    cond: Conditioning,
    cfg: ResolvedConfig,
    states: SampleState[],
    generator: Generator | null,
    eta: number,
    useClipped: boolean,
  ): { prev: tf.Tensor4D; entry: AMGStepLog } {
    const sched = this.scheduler;
    const T = sched.config.numTrainTimesteps;
    const a = sched.alphaProd(t);
    const lambda = thresholdAt(cfg.threshold, t, T); // the gate σ > λ_t
    const lambdaScale = thresholdScaleAt(cfg.threshold, t, T); // λ_t inside margins and G_sim factors
    const n = x.shape[0];
    const c = x.shape[3];
    const ctx = { timestep: t, numTrainTimesteps: T, alphaProd: a, sample: x };
    const predictionType = sched.config.predictionType;
    const s0 = cond.guidanceScale;
    const cfgOn = cond.labels !== null && s0 !== 1;
    const nan = (): number[] => new Array<number>(n).fill(Number.NaN);
    const zeros = (): number[] => new Array<number>(n).fill(0);
    const falses = (): boolean[] => new Array<boolean>(n).fill(false);
    const fired = { sim: falses(), spe: falses(), dup: falses() };
    const scales = { s1: zeros(), s2: zeros(), c3: zeros() };
    let sigma = nan();
    let sigmaBefore: number[] | null = null;
    let nl2Out: number[] | null = null;
    const neighbourIndex = new Array<number>(n).fill(-1);
    const neighbourId = new Array<ReferenceId | null>(n).fill(null);
    const dupLabelOut = new Array<number | null>(n).fill(null);
    let triggeredOut: boolean[] | null = null;
    let pausedOut: boolean[] | null = null;
    const label = `AMG ${sched instanceof DDIMScheduler ? 'DDIM' : 'DDPM'} sampling`;

    const out = tf.tidy(() => {
      // 1. Model evaluation: ε_u, ε_c and the (CFG-)guided ε̂, plus learned-variance channels.
      const toEps = (m: tf.Tensor4D): tf.Tensor4D => {
        const head = m.shape[3] > c ? (tf.slice(m, [0, 0, 0, 0], [-1, -1, -1, c]) as tf.Tensor4D) : m;
        return predictX0AndEps(head, x, a, predictionType).eps;
      };
      let epsU: tf.Tensor4D | null = null;
      let epsC: tf.Tensor4D | null = null;
      let eps: tf.Tensor4D;
      let extra: tf.Tensor4D | null = null;
      const raw = (() => {
        if (cond.labels === null) return [this.unet.predict(x, t)];
        const y = tf.tensor1d(cond.labels as number[], 'int32');
        if (!cfgOn) return [this.unet.predict(x, t, y)];
        const both = this.unet.predict(tf.concat([x, x], 0), t, tf.concat([y, tf.fill([n], cond.nullClassId, 'int32') as tf.Tensor1D]));
        return tf.split(both, 2, 0) as [tf.Tensor4D, tf.Tensor4D];
      })();
      const main = raw[0] as tf.Tensor4D;
      if (main.rank !== 4 || main.shape[0] !== n || main.shape[1] !== x.shape[1] || main.shape[2] !== x.shape[2] || main.shape[3] < c) {
        throw new ShapeError(`${label}: the denoiser returned [${main.shape.join(',')}] for a sample of [${x.shape.join(',')}]`);
      }
      if (main.shape[3] > c) extra = tf.slice(main, [0, 0, 0, c], [-1, -1, -1, -1]) as tf.Tensor4D;
      if (raw.length === 2) {
        epsC = toEps(main);
        epsU = toEps(raw[1] as tf.Tensor4D);
        eps = tf.add(epsU, tf.mul(s0, tf.sub(epsC, epsU))) as tf.Tensor4D;
      } else {
        eps = toEps(main);
      }
      // A non-finite model output must stop here, before it reaches the similarity search.
      if (!Number.isFinite(tf.sum(tf.mul(eps, 0)).dataSync()[0] as number)) {
        throw new NonFiniteError(`${label}: the model output became non-finite (NaN or Infinity) at step ${k} (timestep ${t})`, {
          step: k,
          timestep: t,
          tensor: 'model output',
        });
      }

      const scorerInput = (e: tf.Tensor4D): tf.Tensor4D => (cfg.scorer.input === 'x0' ? x0FromEps(e, x, a) : x);
      const chain = cfg.scorer.input === 'x0' ? 1 / f32(Math.sqrt(a)) : 1; // ∂x̂0/∂x_t with ε̂ held constant
      const voteK = cfg.dup && cfg.dup.label !== 'nearest' ? cfg.dup.label.k : undefined;
      const evaluate = (e: tf.Tensor4D, grad: boolean, vote: boolean): SimilarityEvaluation => {
        const r = cfg.scorer.evaluate(scorerInput(e), ctx, { grad, ...(vote && voteK !== undefined ? { voteK } : {}) });
        const badAt = r.sigma.findIndex((v) => !Number.isFinite(v));
        if (badAt >= 0) {
          r.grad?.dispose();
          throw new NonFiniteError(`${label}: the similarity σ of sample ${badAt} is ${r.sigma[badAt]} at step ${k} (timestep ${t})`, {
            step: k,
            timestep: t,
            tensor: 'similarity',
            sample: badAt,
          });
        }
        r.sigma.forEach((_, i) => {
          neighbourIndex[i] = r.nearestIndex[i] as number;
          neighbourId[i] = r.nearestId[i] as ReferenceId;
        });
        return r;
      };
      /** y_N per sample from an evaluation (nearest label or the vote); null when none. */
      const dupLabels = (r: SimilarityEvaluation): (number | null)[] => {
        const labels = cfg.scorer.labels as Int32Array;
        const rule = cfg.dup?.label;
        return r.sigma.map((_, i) => {
          if (rule === 'nearest') return labels[r.nearestIndex[i] as number] as number;
          if (!rule || !r.voteIndices) return null;
          const nb = r.voteIndices[i] as number[];
          // The official rule is "> 20 of 1000 results"; with fewer references the count scales.
          return voteDuplicateLabel(nb, labels, (rule.minCount * nb.length) / rule.k);
        });
      };
      /** ε(x, y_N) for the samples with s2 > 0 (one extra batched call), ε_u elsewhere. */
      const epsOfDupLabels = (labels: (number | null)[], active: boolean[]): tf.Tensor4D => {
        const idx = active.map((v, i) => (v ? i : -1)).filter((i) => i >= 0);
        const sub = tf.gather(x, tf.tensor1d(idx, 'int32')) as tf.Tensor4D;
        const m = this.unet.predict(sub, t, tf.tensor1d(idx.map((i) => labels[i] as number), 'int32'));
        const head = m.shape[3] > c ? (tf.slice(m, [0, 0, 0, 0], [-1, -1, -1, c]) as tf.Tensor4D) : m;
        const e = predictX0AndEps(head, sub, a, predictionType).eps;
        const map = active.map((v, i) => (v ? n + idx.indexOf(i) : i));
        return tf.gather(tf.concat([epsU as tf.Tensor4D, e], 0), tf.tensor1d(map, 'int32')) as tf.Tensor4D;
      };
      /** ε_u + (s0 − s1)(ε_c − ε_u) + s2(ε_u − ε_N) — the official SD form of G_spe + G_dup. */
      const despecified = (s1: number[], s2: number[], epsN: tf.Tensor4D | null): tf.Tensor4D => {
        const u = epsU as tf.Tensor4D;
        let e = tf.add(u, tf.mul(coef(s1.map((v) => s0 - v), n), tf.sub(epsC as tf.Tensor4D, u)));
        if (epsN) e = tf.add(e, tf.mul(coef(s2, n), tf.sub(u, epsN)));
        return e as tf.Tensor4D;
      };

      let simGrad: tf.Tensor4D | null = null; // ∂σ/∂x_t
      const wantGrad = cfg.sim !== null;
      const gradOf = (r: SimilarityEvaluation): tf.Tensor4D | null => (r.grad ? (tf.mul(r.grad, chain) as tf.Tensor4D) : null);
      const record = (r: SimilarityEvaluation): void => {
        sigma = [...r.sigma];
        nl2Out = r.nl2;
        simGrad = gradOf(r);
      };

      if (cfg.flow === 'official-sd') {
        const speOrDup = cfg.spe !== null || cfg.dup !== null;
        const r1 = evaluate(eps, wantGrad && !speOrDup, cfg.dup !== null);
        if (cfg.dup) {
          dupLabels(r1).forEach((l, i) => {
            if (l !== null) (states[i] as SampleState).dupLabel = l; // sticky, as the code's global dup_caption
          });
        }
        // The whole block is gated by σ1 > 0 in the code (u > 0 here).
        const open = r1.sigma.map((s) => termSignal(cfg.signal, s, lambdaScale) > 0);
        let r2 = r1;
        if (speOrDup && open.some(Boolean)) {
          sigmaBefore = [...r1.sigma];
          const active = falses();
          r1.sigma.forEach((s, i) => {
            if (!open[i]) return;
            const st = states[i] as SampleState;
            const u = termSignal(cfg.signal, s, lambdaScale);
            if (cfg.spe) {
              scales.s1[i] = despecificationScale(u, s0, cfg.spe.c1);
              fired.spe[i] = (scales.s1[i] as number) > 0;
            }
            if (cfg.dup) {
              const L = cfg.dup.latch;
              const hit = st.dupLabel !== null && s > lambda;
              if (hit || st.latch !== L) {
                // g3_count: reset on a hit, count down, wrap to L at 0.
                if (hit) st.latch = L;
                st.latch -= 1;
                if (st.latch === 0) st.latch = L;
                scales.s2[i] = deduplicationScale(u, s0, scales.s1[i] as number, cfg.dup.c2);
                active[i] = (scales.s2[i] as number) > 0 && st.dupLabel !== null;
                fired.dup[i] = active[i] as boolean;
              }
            }
          });
          const epsN = active.some(Boolean) ? epsOfDupLabels(states.map((st) => st.dupLabel), active) : null;
          const rebuilt = despecified(scales.s1, scales.s2.map((v, i) => (active[i] ? v : 0)), epsN);
          // Samples whose gate stayed closed keep the CFG ε̂ exactly.
          eps = tf.where(tf.reshape(tf.tensor1d(open, 'bool'), [n, 1, 1, 1]), rebuilt, eps) as tf.Tensor4D;
          if (wantGrad) r2 = evaluate(eps, true, false);
        }
        record(r2);
        if (cfg.sim) {
          r2.sigma.forEach((s, i) => {
            if (open[i] && s > lambda) {
              fired.sim[i] = true;
              scales.c3[i] = similarityGuidanceCoefficient(cfg.sim as SimilarityGuidance, s, lambdaScale, t, T);
            }
          });
        }
        states.forEach((st, i) => (dupLabelOut[i] = st.dupLabel));
      } else {
        // 'paper' and 'official-iddpm': one evaluation of σ (and ∇σ) on the CFG ε̂.
        const check = new Array<boolean>(n).fill(true); // samples whose gates are tested this step
        if (cfg.flow === 'official-iddpm') {
          const Q = cfg.pause ? cfg.pause.quietSteps : Infinity;
          const C = cfg.pause ? cfg.pause.countdown : 0;
          const pausedNow = (st: SampleState): boolean => st.skip === Q && st.countdown !== 0;
          const ablatedChecks = states.map((st) => {
            // The unguided ("ablated") call, which shares skip/countdown with the guided call.
            if (pausedNow(st)) {
              st.countdown -= 1;
              return false;
            }
            if (st.countdown === 0) {
              st.countdown = C;
              st.skip = 0;
            }
            return true;
          });
          if (cfg.trigger === null) states.forEach((st) => (st.triggered = true));
          const needTrigger = states.map((st, i) => !st.triggered && (ablatedChecks[i] as boolean));
          const willCheck = states.map((st) => st.triggered && !pausedNow(st));
          let r: SimilarityEvaluation | null = null;
          if (needTrigger.some(Boolean) || willCheck.some(Boolean)) r = evaluate(eps, wantGrad, cfg.dup !== null);
          if (r) {
            const rs = r.sigma;
            needTrigger.forEach((need, i) => {
              if (need && (rs[i] as number) > (cfg.trigger as number)) (states[i] as SampleState).triggered = true;
            });
          }
          states.forEach((st, i) => {
            check[i] = false;
            if (!st.triggered) return;
            if (pausedNow(st)) {
              st.countdown -= 1; // the guided call during a pause: a plain step
              return;
            }
            if (st.countdown === 0) {
              st.countdown = C;
              st.skip = 0;
            }
            check[i] = r !== null;
          });
          if (r) {
            record(r);
            this.applyGates(r, check, lambda, lambdaScale, t, T, cfg, states, fired, scales, dupLabelOut, dupLabels(r), s0, true);
          }
          triggeredOut = states.map((st) => st.triggered);
          pausedOut = states.map((st) => st.triggered && pausedNow(st));
        } else {
          const r = evaluate(eps, wantGrad, cfg.dup !== null);
          record(r);
          this.applyGates(r, check, lambda, lambdaScale, t, T, cfg, states, fired, scales, dupLabelOut, cfg.dup ? dupLabels(r) : null, s0, false);
        }
        const rebuild = fired.spe.map((v, i) => v || (fired.dup[i] as boolean));
        if (rebuild.some(Boolean)) {
          const epsN = fired.dup.some(Boolean) ? epsOfDupLabels(dupLabelOut, fired.dup) : null;
          const rebuilt = despecified(scales.s1, scales.s2, epsN);
          eps = tf.where(tf.reshape(tf.tensor1d(rebuild, 'bool'), [n, 1, 1, 1]), rebuilt, eps) as tf.Tensor4D;
        }
      }

      // 3. G_sim as an ε̂ edit: ε̂ += c3·√(1−ᾱ_t)·∇_{x_t}σ (paper / official SD scaling).
      let meanShift: tf.Tensor4D | null = null;
      if (cfg.sim && simGrad && fired.sim.some(Boolean)) {
        const k3 = scales.c3.map((v, i) => (fired.sim[i] ? v : 0));
        if (cfg.sim.kind === 'mean-shift') {
          // μ ← μ − Σ_t·scale·(σ − λ_t)·∇σ (official iDDPM `condition_mean`).
          const variance = this.stepVariance(t, extra, eta);
          meanShift = tf.mul(tf.neg(coef(k3, n)), tf.mul(variance, simGrad)) as tf.Tensor4D;
        } else {
          eps = tf.add(eps, tf.mul(coef(k3.map((v) => v * f32(Math.sqrt(f32(1 - a)))), n), simGrad)) as tf.Tensor4D;
        }
      }

      // 4. Scheduler step on the edited ε̂ (converted back to the model's prediction type).
      let modelOut = outputFromEps(eps, x, a, predictionType);
      if (extra) modelOut = tf.concat([modelOut, extra], 3) as tf.Tensor4D;
      const stepped =
        sched instanceof DDIMScheduler
          ? sched.step(modelOut, t, x, { eta, useClippedModelOutput: useClipped, ...(eta > 0 && generator ? { generator } : {}) })
          : sched.step(modelOut, t, x, { generator: generator as Generator });
      let prev = stepped.prevSample;
      if (meanShift) prev = tf.add(prev, meanShift) as tf.Tensor4D;
      // sum(v·0) is NaN iff v holds NaN/±Inf.
      const flags = tf.stack([tf.sum(tf.mul(eps, 0)), tf.sum(tf.mul(prev, 0))]).dataSync();
      const what = !Number.isFinite(flags[0] as number) ? 'guided noise prediction ε̂' : !Number.isFinite(flags[1] as number) ? 'sample' : null;
      if (what) {
        throw new NonFiniteError(`${label}: the ${what} became non-finite (NaN or Infinity) at step ${k} (timestep ${t})`, {
          step: k,
          timestep: t,
          tensor: what,
        });
      }
      return prev;
    });

    states.forEach((st, i) => {
      if (fired.sim[i] || fired.spe[i] || fired.dup[i]) st.guided += 1;
    });
    const entry: AMGStepLog = {
      step: k,
      timestep: t,
      lambda,
      sigma,
      sigmaBefore,
      nl2: nl2Out,
      fired,
      scales,
      neighbourIndex,
      neighbourId,
      dupLabel: dupLabelOut,
      triggered: triggeredOut,
      paused: pausedOut,
    };
    return { prev: out, entry };
  }

  /** Gating of the paper/iDDPM flows: every enabled term fires when σ > λ (for samples in `check`). */
  private applyGates(
    r: SimilarityEvaluation,
    check: boolean[],
    lambda: number,
    lambdaScale: number,
    t: number,
    T: number,
    cfg: ResolvedConfig,
    states: SampleState[],
    fired: { sim: boolean[]; spe: boolean[]; dup: boolean[] },
    scales: { s1: number[]; s2: number[]; c3: number[] },
    dupLabelOut: (number | null)[],
    yN: (number | null)[] | null,
    s0: number,
    countSkips: boolean,
  ): void {
    r.sigma.forEach((s, i) => {
      if (!check[i]) return;
      const st = states[i] as SampleState;
      const on = s > lambda;
      if (countSkips) {
        if (on) st.skip = 0;
        else st.skip += 1;
      }
      if (!on) return;
      const u = termSignal(cfg.signal, s, lambdaScale);
      if (cfg.spe) {
        scales.s1[i] = despecificationScale(u, s0, cfg.spe.c1);
        fired.spe[i] = (scales.s1[i] as number) > 0;
      }
      if (cfg.dup && yN && yN[i] !== null) {
        scales.s2[i] = deduplicationScale(u, s0, scales.s1[i] as number, cfg.dup.c2);
        fired.dup[i] = (scales.s2[i] as number) > 0;
        dupLabelOut[i] = yN[i] as number;
        st.dupLabel = yN[i] as number;
      }
      if (cfg.sim) {
        scales.c3[i] = similarityGuidanceCoefficient(cfg.sim, s, lambdaScale, t, T);
        fired.sim[i] = true;
      }
    });
  }

  /** Σ_t of the step (for mean-shift G_sim): the scheduler's variance, or the model's learned one. */
  private stepVariance(t: number, extra: tf.Tensor4D | null, eta: number): number | tf.Tensor {
    const sched = this.scheduler;
    if (sched instanceof DDIMScheduler) {
      const std = f32(eta * f32(Math.sqrt(sched.getVariance(t, sched.previousTimestep(t)))));
      return f32(std * std);
    }
    switch (sched.config.varianceType) {
      case 'fixed_small':
      case 'fixed_large':
        return sched.getVariance(t);
      case 'fixed_small_log': {
        const std = sched.getVariance(t); // diffusers returns a standard deviation here
        return f32(std * std);
      }
      case 'fixed_large_log':
        return f32(Math.exp(sched.getVariance(t)));
      case 'learned':
        if (!extra) throw new ConfigError('variance_type "learned" needs a model output with variance channels');
        return extra;
      case 'learned_range': {
        if (!extra) throw new ConfigError('variance_type "learned_range" needs a model output with variance channels');
        const minLog = f32(Math.log(sched.getVariance(t, 'fixed_small')));
        const maxLog = f32(Math.log(sched.getVariance(t, 'fixed_large')));
        const frac = tf.div(tf.add(extra, 1), 2);
        return tf.exp(tf.add(tf.mul(frac, maxLog), tf.mul(tf.sub(1, frac), minLog)));
      }
    }
  }
}
